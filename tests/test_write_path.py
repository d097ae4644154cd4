"""A commit-now write to a page the session holds clean skips the read before the commit. These tests pin down
that this shortcut changes nothing a caller can see: when another writer moved the page, the cache is revalidated
first and the write lands on the newest version (no lost update), a caller-supplied base_version newer than the
session's copy still commits, and the journal holds the same rows as the checked way would write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawvm_mcp.engine import ClawVMEngine, EngineConfig
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)


class CountingStore:
    """The real store, counting which methods the engine calls."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.store, name)


async def _two_engines(db: Path) -> tuple[ClawVMEngine, ClawVMEngine, CountingStore]:
    """Two engines on one file, as two server processes would be, both holding page notes/a at v1."""
    counting = CountingStore(await SQLiteStore.open(db))
    first = ClawVMEngine(counting)  # type: ignore[arg-type]
    await first.session_start("s")
    created = await first.write("s", WriteRequest("create", "notes/a", PROV, "evidence", "first line"))
    assert (created.status, created.version) == ("committed", 1)
    second = ClawVMEngine(await SQLiteStore.open(db))
    await second.session_start("s")
    return first, second, counting


async def test_clean_page_commit_now_is_one_store_call_after_one_look(db_path: Path) -> None:
    """When nothing moved elsewhere, a commit-now write costs the revalidation look and the commit: two trips."""
    first, second, counting = await _two_engines(db_path)
    await first.write("s", WriteRequest("append", "notes/a", PROV, content="second line"))  # sees second's start
    counting.calls.clear()
    out = await first.write("s", WriteRequest("append", "notes/a", PROV, content="third line"))
    assert (out.status, out.version) == ("committed", 3)
    assert counting.calls == ["data_version", "try_commit"]
    await first.store.close()
    await second.store.close()


async def test_append_from_a_stale_copy_lands_on_the_newest_version(db_path: Path) -> None:
    first, second, counting = await _two_engines(db_path)
    moved = await second.write("s", WriteRequest("append", "notes/a", PROV, content="from the other writer"))
    assert (moved.status, moved.version) == ("committed", 2)
    counting.calls.clear()
    out = await first.write("s", WriteRequest("append", "notes/a", PROV, content="from this writer"))
    assert (out.status, out.version) == ("committed", 3)
    # the other writer's commit is seen before the write: its page is read back, then one commit lands
    assert counting.calls[0] == "data_version" and "pages_since" in counting.calls
    assert counting.calls[-1] == "try_commit" and counting.calls.count("try_commit") == 1
    page = await second.store.get_page("s:s", "notes/a")
    assert page is not None and page.version == 3
    assert page.content.splitlines() == ["first line", "from the other writer", "from this writer"]
    journal = await first.store.journal("s", 50)
    assert [(e.op, e.status, e.version) for e in journal] == [
        ("create", "committed", 1),
        ("append", "committed", 2),
        ("append", "committed", 3),
    ]
    await first.store.close()
    await second.store.close()


async def test_set_with_a_base_newer_than_the_session_copy_commits(db_path: Path) -> None:
    first, second, _ = await _two_engines(db_path)
    await second.write("s", WriteRequest("append", "notes/a", PROV, content="moved"))
    out = await first.write("s", WriteRequest("set", "notes/a", PROV, content="replaced", base_version=2))
    assert (out.status, out.version) == ("committed", 3), out.reasons
    stale = await first.write("s", WriteRequest("set", "notes/a", PROV, content="again", base_version=2))
    assert stale.status == "rejected" and stale.reasons[0].code == "DESTRUCTIVE_OP"
    page = await second.store.get_page("s:s", "notes/a")
    assert page is not None and (page.version, page.content) == (3, "replaced")
    await first.store.close()
    await second.store.close()


async def test_a_create_far_below_the_page_limit_counts_no_table(db_path: Path) -> None:
    """Every create used to count the session's pages in the store (17 ms at 10,000 pages): the revalidated
    cache bounds the count, so the table is counted only near the limit, and the limit still holds."""
    counting = CountingStore(await SQLiteStore.open(db_path))
    engine = ClawVMEngine(counting, config=EngineConfig(max_pages_per_session=3))  # type: ignore[arg-type]
    await engine.session_start("s")
    counting.calls.clear()
    first = await engine.write("s", WriteRequest("create", "notes/a", PROV, "evidence", "one"))
    assert first.status == "committed" and "count_pages" not in counting.calls
    await engine.write("s", WriteRequest("create", "notes/b", PROV, "evidence", "two"))
    third = await engine.write("s", WriteRequest("create", "notes/c", PROV, "evidence", "three"))
    assert third.status == "committed" and "count_pages" not in counting.calls
    fourth = await engine.write("s", WriteRequest("create", "notes/d", PROV, "evidence", "four"))
    assert fourth.status == "rejected" and "count_pages" in counting.calls
    assert [r.detail for r in fourth.reasons] == ["session page limit of 3 reached"]
    await counting.store.close()
