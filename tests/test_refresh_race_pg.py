"""Regression, found by the SQLite nemesis (tests/test_nemesis.py): a staged ``set`` acknowledged to one process was
marked committed by another process's ``commit: now`` append, at the same version as that append, while the page
never got the set's text (two committed journal rows at one version, an acknowledged write lost).

How: process A's cache revalidation read the session's staged rows, found a page A held staged but the store no
longer did (another process's flush had committed it), and rebuilt that page from the store; between those two
reads process B staged a new row on it, so the rebuilt view showed B's row. The pages changed since A's last sync
were then read, and that page, not among the staged pages of the *first* read, was installed clean over the view,
leaving A's cache with a staged row its page did not show. A's next ``commit: now`` write on the page merged onto
the clean page and settled the staged row with it.

The interleaving is forced here: A's store runs B's write just before A's second read of the staged rows. On
SQLite always, on PostgreSQL when ``CLAWVM_TEST_PG`` names a server (tests/conftest.py ``store_db``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import open_store
from clawvm_mcp.store.base import JournalEntry, Store
from tests.support import dbview

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)
S, PAGE = "race-s", "conv/1"


class Interleaved:
    """A's store: B's write runs before the ``at``-th read of the staged rows (after ``arm``), as if B's process
    got in between A's two reads."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls = 0
        self.at = 0
        self.between: Callable[[], Awaitable[Any]] | None = None

    def arm(self, at: int, between: Callable[[], Awaitable[Any]]) -> None:
        self.calls, self.at, self.between = 0, at, between

    async def pending(self, session_id: str) -> list[JournalEntry]:
        self.calls += 1
        if self.between is not None and self.calls == self.at:
            between, self.between = self.between, None
            await between()
        return await self.inner.pending(session_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_staged_row_seen_between_two_reads_is_never_settled_without_its_text(
    store_db: str | Path,
) -> None:
    await dbview.prepare(store_db)
    a_store, b_store = await open_store(store_db), await open_store(store_db)
    try:
        spy = Interleaved(a_store)
        a = ClawVMEngine(spy)  # type: ignore[arg-type]  # the Store protocol, every call but one passed through
        b = ClawVMEngine(b_store)
        await a.session_start(S, project_id="p")
        await b.session_start(S, project_id="p")
        await a.write(S, WriteRequest("create", PAGE, PROV, "conversation", "one"))
        staged = await a.write(S, WriteRequest("append", PAGE, PROV, content="two", commit="boundary"))
        assert staged.status == "staged"
        await b.lifecycle(S, "flush")  # B commits A's staged append: v2, nothing pending
        base = (await b.read(S, PAGE)).page
        assert base is not None and base.version == 2

        async def b_stages_a_set() -> None:
            result = await b.write(
                S, WriteRequest("set", PAGE, PROV, content="three", base_version=2, commit="boundary")
            )
            assert result.status == "staged", result

        spy.arm(2, b_stages_a_set)  # A's refresh: 1st read finds nothing pending, B stages, 2nd read (the rebuild)
        appended = await a.write(S, WriteRequest("append", PAGE, PROV, content="four"))
        assert appended.status == "committed", appended
        assert spy.between is None, "the interleaving never happened: the test did not test it"
        await b.lifecycle(S, "flush")  # whatever is still staged settles now, committed or refused with reasons
    finally:
        await a_store.close()
        await b_store.close()

    rows = [r for r in await dbview.journal(store_db, S) if r["page_id"] == PAGE]
    committed = sorted((r for r in rows if r["status"] == "committed"), key=lambda r: (r["version"], r["txn_id"]))
    replay: list[str] = []  # a commit settles the staged rows it carries at its own version: all of them applied
    for row in committed:
        lines = str(row["request"]["content"]).splitlines()
        replay = lines if row["op"] in ("create", "set") else [*replay, *lines]
    (page,) = [p for p in await dbview.pages(store_db, f"s:{S}") if p["page_id"] == PAGE]
    text = page["body"]["content"].splitlines()
    assert text == replay, f"the page is not its committed journal rows: {text} vs {committed}"
    the_set = next(r for r in rows if r["op"] == "set")
    assert the_set["status"] == "committed" or (the_set["status"] == "rejected" and the_set["reasons"]), the_set
    assert "four" in text
    assert await dbview.integrity(store_db) == "ok"
