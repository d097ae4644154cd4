"""SQLiteStore.commit as one statement: the compare-and-swap, the journal rows and the txn ids it hands back must
be exactly those of the old BEGIN ... COMMIT sequence, and a single-page commit must be one trip to the thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from clawvm_mcp.canonical import dumps
from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Page, Provenance
from clawvm_mcp.store import SQLiteStore, StoreError
from clawvm_mcp.store import sqlite as sqlite_store
from clawvm_mcp.store.base import Committed, Conflict, JournalEntry, PageCommit, page_to_json

PROV = Provenance("user", "ext:test", 0)
NS = "s:s"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[True, False], ids=["returning", "no-returning"])
def returning(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of learning the new journal row's txn_id: RETURNING, and the extra SELECT of SQLite < 3.35."""
    monkeypatch.setattr(sqlite_store, "RETURNING", request.param)
    return bool(request.param)


@pytest.fixture
async def store(tmp_path: Path, returning: bool) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "commit.db")
    engine = ClawVMEngine(s)
    await engine.session_start("s")
    for pid in ("pref/a", "pref/b"):
        await engine.write("s", WriteRequest("create", pid, PROV, "preference", "k: v1", scope="session"))
    yield s
    await s.close()


async def page(store: SQLiteStore, page_id: str) -> Page:
    p = await store.get_page(NS, page_id)
    assert p is not None
    return p


def entry(page_id: str, op: str = "set", status: Any = "staged") -> JournalEntry:
    return JournalEntry("s", NS, page_id, op, status, "now", {"op": op, "page_id": page_id}, 3)


def raw(store: SQLiteStore, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(store.path)) as conn:
        return [tuple(r) for r in conn.execute(sql, params)]


def page_row(store: SQLiteStore, page_id: str) -> list[tuple[Any, ...]]:
    return raw(store, "SELECT * FROM pages WHERE namespace = ? AND page_id = ?", (NS, page_id))


def journal(store: SQLiteStore) -> list[tuple[Any, ...]]:
    return raw(store, "SELECT txn_id, page_id, status, version, reasons FROM journal ORDER BY txn_id")


@pytest.mark.anyio
async def test_stale_commit_is_a_conflict_and_leaves_page_and_journal_byte_for_byte(store: SQLiteStore) -> None:
    """If the one-statement commit lost its compare-and-swap, the stale body would land here. A conflict writes
    nothing at all: the staged row stays staged (it belongs to its session, and the next try replays it)."""
    stale = await page(store, "pref/a")
    staged = await store.stage(entry("pref/a", "append"))
    fresh = replace(await page(store, "pref/a"), content="k: v2", version=2)
    assert (await store.commit([PageCommit(NS, fresh, 1, (), entry("pref/a"))]))[1] == []  # now at v2
    before_row, before_journal = page_row(store, "pref/a"), journal(store)

    new = entry("pref/a")
    attempt = replace(stale, content="k: lost?", version=2)
    committed, conflicts = await store.commit([PageCommit(NS, attempt, 1, (staged,), new)])

    assert (committed, conflicts) == ([], [Conflict("pref/a", 2)])
    assert page_row(store, "pref/a") == before_row
    assert journal(store) == before_journal
    assert [r[2] for r in before_journal if r[0] == staged] == ["staged"]


@pytest.mark.anyio
async def test_commit_settles_staged_rows_and_returns_the_new_rows_txn_id(store: SQLiteStore) -> None:
    a = await store.stage(entry("pref/a", "append"))
    b = await store.stage(entry("pref/a", "append"))
    p = replace(await page(store, "pref/a"), content="k: v2", version=2)
    committed, conflicts = await store.commit([PageCommit(NS, p, 1, (a, b), entry("pref/a"))])
    new_txn = b + 1
    assert conflicts == [] and committed == [Committed("pref/a", 2, (a, b, new_txn), new_txn)]
    assert [r for r in journal(store) if r[0] >= a] == [
        (a, "pref/a", "committed", 2, "[]"),
        (b, "pref/a", "committed", 2, "[]"),
        (new_txn, "pref/a", "committed", 2, "[]"),
    ]
    stored = await page(store, "pref/a")
    assert (stored.version, stored.content) == (2, "k: v2")
    assert page_row(store, "pref/a")[0][6] == dumps(page_to_json(p))


@pytest.mark.anyio
async def test_a_row_settled_elsewhere_makes_the_commit_a_conflict(store: SQLiteStore) -> None:
    """Exactly once: a staged row another process settled (committed, rejected or lost) is never settled again,
    and the commit that tried writes nothing, so its caller re-reads instead of making a second version."""
    a = await store.stage(entry("pref/a", "append"))
    settled = await store.stage(entry("pref/a", "append"))
    await store.mark([settled], "lost", [{"code": "FLUSH_MISS", "detail": "x"}])
    before_row, before_journal = page_row(store, "pref/a"), journal(store)
    p = replace(await page(store, "pref/a"), content="k: v2", version=2)
    committed, conflicts = await store.commit([PageCommit(NS, p, 1, (a, settled), entry("pref/a"))])
    assert (committed, conflicts) == ([], [Conflict("pref/a", 1)])
    assert page_row(store, "pref/a") == before_row and journal(store) == before_journal


@pytest.mark.anyio
async def test_a_flush_with_one_stale_page_commits_the_others_in_one_transaction(store: SQLiteStore) -> None:
    a, b = await page(store, "pref/a"), await page(store, "pref/b")
    sa, sb = await store.stage(entry("pref/a", "append")), await store.stage(entry("pref/b", "append"))
    moved = replace(await page(store, "pref/b"), content="k: elsewhere", version=2)
    await store.commit([PageCommit(NS, moved, 1)])  # pref/b is at v2 under the flush
    a, b = replace(a, content="k: a2", version=2), replace(b, content="k: b-stale", version=2)
    committed, conflicts = await store.commit([PageCommit(NS, a, 1, (sa,)), PageCommit(NS, b, 1, (sb,))])
    assert committed == [Committed("pref/a", 2, (sa,))] and conflicts == [Conflict("pref/b", 2)]
    statuses = {r[0]: (r[2], r[3]) for r in journal(store)}
    assert statuses[sa] == ("committed", 2) and statuses[sb] == ("staged", None)  # b's row waits for a replay
    assert (await page(store, "pref/a")).content == "k: a2"
    assert (await page(store, "pref/b")).content == "k: elsewhere"


@pytest.mark.anyio
async def test_single_page_commit_is_one_trip_to_the_connection_thread(store: SQLiteStore, returning: bool) -> None:
    p = replace(await page(store, "pref/a"), content="k: v2", version=2)
    calls: list[str] = []
    conn = store._conn  # the store's own connection; only its public methods are wrapped

    def counting(name: str) -> Any:
        method = getattr(conn, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)

        return counted

    for name in ("execute", "execute_fetchall", "execute_insert", "executemany", "executescript"):
        setattr(conn, name, counting(name))
    await store.commit([PageCommit(NS, p, 1, (), entry("pref/a"))])
    assert len(calls) == (1 if returning else 4)  # without RETURNING: BEGIN, the statement, SELECT max, COMMIT


@pytest.mark.anyio
async def test_single_page_commit_waits_for_another_processs_write_lock(store: SQLiteStore) -> None:
    other = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        p = replace(await page(store, "pref/a"), content="k: after the lock", version=2)
        (done,), conflicts = await store.commit([PageCommit(NS, p, 1, (), entry("pref/a"))])
        assert conflicts == [] and done.version == 2 and done.txn_ids == (done.entry_txn_id,)
    finally:
        release.join()
        other.close()
    assert (await page(store, "pref/a")).content == "k: after the lock"


@pytest.mark.anyio
async def test_a_sqlite_without_json_functions_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit trigger needs json_each; a build without it must fail when the store opens, with a reason."""
    monkeypatch.setattr(sqlite_store, "JSON_PROBE", "SELECT count(*) FROM json_each_missing('[1]')")
    with pytest.raises(StoreError, match="lacks the JSON functions"):
        await SQLiteStore.open(tmp_path / "m.db")
