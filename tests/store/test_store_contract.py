"""The Store contract (store/base.py) on every store: SQLite always, PostgreSQL when CLAWVM_TEST_PG names a server.

Each test opens real stores through ``open_store`` on a fresh database (a SQLite file, or a new PostgreSQL
database) and checks what the protocol promises: claims that two callers cannot both win, compare-and-swap commits
that settle staged rows exactly once, counters that add up across processes, the change sequence, BM25 ranking
equal to the in-memory reference, and failures named StoreBusy. Two stores on one database stand for two processes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.faults import FaultEvent
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Page, Provenance
from clawvm_mcp.store import Store, StoreError, open_store
from clawvm_mcp.store.base import (
    Conflict,
    JournalEntry,
    PageCommit,
    Rejection,
    SessionCounters,
    StoreBusy,
    ToolCall,
)
from clawvm_mcp.store.memory import MemoryStore
from clawvm_mcp.store.search import query_terms

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)
NS = "s:s"
Opener = Callable[..., Awaitable[Store]]


@pytest.fixture
async def opener(store_db: str | Path) -> AsyncIterator[Opener]:
    """Open any number of stores on the test's database (each one a separate connection, as a process has); all
    are closed when the test ends."""
    opened: list[Store] = []

    async def open_one(timeout: float | None = None) -> Store:
        store = await open_store(store_db, timeout)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


async def seeded(opener: Opener, pages: tuple[str, ...] = ("pref/a", "pref/b")) -> Store:
    """A store whose session "s" holds committed preference pages at v1, written through the engine."""
    store = await opener()
    engine = ClawVMEngine(store)
    await engine.session_start("s")
    for pid in pages:
        result = await engine.write("s", WriteRequest("create", pid, PROV, "preference", "k: v1", scope="session"))
        assert result.status == "committed", result
    return store


async def page(store: Store, page_id: str) -> Page:
    p = await store.get_page(NS, page_id)
    assert p is not None
    return p


def entry(page_id: str, op: str = "set", status: Any = "staged", session: str = "s") -> JournalEntry:
    return JournalEntry(session, NS, page_id, op, status, "boundary", {"op": op, "page_id": page_id}, 3)


async def bumped(store: Store, page_id: str, content: str) -> Page:
    p = await page(store, page_id)
    return replace(p, content=content, version=p.version + 1)


# ---------------------------------------------------------------------------------------------- sessions


async def test_claim_creates_resumes_and_refuses_another_principal_or_project(opener: Opener) -> None:
    store = await opener()
    created = await store.claim_session("s1", "alice", "proj", 900)
    assert created is not None and created[1] is True and created[0].budget == 900
    assert await store.claim_session("s1", "bob", "proj", None) is None
    assert await store.claim_session("s1", "alice", "other", None) is None
    ended = await store.save_session(replace(created[0], ended=True), SessionCounters())
    assert ended.ended
    resumed = await store.claim_session("s1", "alice", "default", None)
    assert resumed is not None and resumed[1] is False
    assert not resumed[0].ended and resumed[0].budget == 900 and resumed[0].project_id == "proj"
    again = await store.claim_session("s1", "alice", "proj", 1200)
    assert again is not None and again[0].budget == 1200


async def test_two_processes_racing_for_one_session_id_never_both_own_it(opener: Opener) -> None:
    a, b = await opener(), await opener()
    for i in range(15):
        results: dict[str, Any] = {}

        async def claim(name: str, store: Store, sid: str = f"race{i}", results: dict[str, Any] = results) -> None:
            results[name] = await store.claim_session(sid, name, "default", None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim, "alice", a)
            tg.start_soon(claim, "bob", b)
        owners = [name for name, r in results.items() if r is not None]
        assert len(owners) == 1, results
        assert results[owners[0]][1] is True
        stored = await a.get_session(f"race{i}")
        assert stored is not None and stored.principal == owners[0]


async def test_counters_add_across_processes_and_the_turn_never_goes_back(opener: Opener) -> None:
    a, b = await opener(), await opener()
    claimed = await a.claim_session("s", "p", "default", None)
    assert claimed is not None
    rec = claimed[0]
    one = await a.save_session(replace(rec, turn=7), SessionCounters(hits=2, boundaries=1))
    two = await b.save_session(replace(rec, turn=3), SessionCounters(hits=5, duplicate_signature=1))
    assert two.turn == 7
    assert two.counters == SessionCounters(hits=7, duplicate_signature=1, physical_insufficiency=0, boundaries=1)
    assert two.seq > one.seq > rec.seq
    with pytest.raises(StoreError):
        await a.save_session(replace(rec, session_id="missing"), SessionCounters())


async def test_live_sessions_lists_a_principals_open_sessions_by_prefix(opener: Opener) -> None:
    store = await opener()
    for sid, who in [("ab1", "p"), ("ab2", "p"), ("ab3", "q"), ("b1", "p"), ("ab0", "p")]:
        assert await store.claim_session(sid, who, "default", None) is not None
    rec = await store.get_session("ab0")
    assert rec is not None
    await store.save_session(replace(rec, ended=True), SessionCounters())
    assert await store.live_sessions("p", "ab", 10) == ["ab1", "ab2"]
    assert await store.live_sessions("p", "", 2) == ["ab1", "ab2"]
    assert await store.live_sessions("p", "", 10) == ["ab1", "ab2", "b1"]


# ---------------------------------------------------------------------------------------------- journal and commit


async def test_stage_pending_mark_and_journal(opener: Opener) -> None:
    store = await seeded(opener)
    t1 = await store.stage(entry("pref/a"))
    t2 = await store.stage(entry("pref/b", "append", "validated"))
    assert t2 > t1
    assert [e.txn_id for e in await store.pending("s")] == [t1, t2]
    await store.mark([t1], "lost", [{"code": "X", "detail": "y"}])
    await store.mark([t1], "rejected", [])  # a settled row is history: never rewritten
    assert [e.txn_id for e in await store.pending("s")] == [t2]
    rows = {e.txn_id: e for e in await store.journal("s", 100)}
    assert rows[t1].status == "lost" and rows[t1].reasons == [{"code": "X", "detail": "y"}]
    assert rows[t2].request == {"op": "append", "page_id": "pref/b"}
    last = await store.journal("s", 1)
    assert [e.txn_id for e in last] == [t2]
    counts = await store.journal_counts("s")
    assert counts["lost"] == 1 and counts["validated"] == 1 and counts["committed"] == 2


async def test_commit_settles_staged_rows_and_writes_the_new_row(opener: Opener) -> None:
    store = await seeded(opener)
    staged = await store.stage(entry("pref/a", "append"))
    new = await bumped(store, "pref/a", "k: v2")
    done, conflicts = await store.commit([PageCommit(NS, new, 1, (staged,), entry("pref/a"))])
    assert conflicts == []
    assert len(done) == 1 and done[0].version == 2
    assert done[0].entry_txn_id is not None and done[0].txn_ids == (staged, done[0].entry_txn_id)
    rows = {e.txn_id: e for e in await store.journal("s", 100)}
    assert rows[staged].status == "committed" and rows[staged].version == 2
    assert rows[done[0].entry_txn_id].status == "committed" and rows[done[0].entry_txn_id].version == 2
    assert (await page(store, "pref/a")).content == "k: v2"
    assert await store.pending("s") == []


async def test_a_stale_commit_is_a_conflict_that_changes_nothing(opener: Opener) -> None:
    store = await seeded(opener)
    stale = await bumped(store, "pref/a", "k: stale")
    first = await bumped(store, "pref/a", "k: first")
    assert (await store.commit([PageCommit(NS, first, 1)]))[1] == []
    staged = await store.stage(entry("pref/a"))
    before_journal = await store.journal("s", 100)
    seq = await store.change_seq()
    done, conflicts = await store.commit([PageCommit(NS, stale, 1, (staged,), entry("pref/a"))])
    assert done == [] and conflicts == [Conflict("pref/a", 2)]
    assert (await page(store, "pref/a")).content == "k: first"
    assert await store.journal("s", 100) == before_journal
    assert await store.change_seq() >= seq
    assert await store.try_commit(PageCommit(NS, stale, 1)) is None


async def test_a_row_settled_by_another_process_makes_the_commit_a_conflict(opener: Opener) -> None:
    a = await seeded(opener)
    b = await opener()
    staged = await a.stage(entry("pref/a", "append"))
    new = await bumped(a, "pref/a", "k: v2")
    await b.mark([staged], "rejected", [{"code": "R", "detail": "elsewhere"}])
    done, conflicts = await a.commit([PageCommit(NS, new, 1, (staged,))])
    assert done == [] and conflicts == [Conflict("pref/a", 1)]
    assert (await page(a, "pref/a")).version == 1


async def test_a_flush_commits_the_fresh_pages_and_reports_the_stale_one(opener: Opener) -> None:
    store = await seeded(opener)
    stale = await bumped(store, "pref/a", "k: stale")
    await store.commit([PageCommit(NS, await bumped(store, "pref/a", "k: moved"), 1)])
    fresh = await bumped(store, "pref/b", "k: b2")
    done, conflicts = await store.commit([PageCommit(NS, stale, 1), PageCommit(NS, fresh, 1)])
    assert [d.page_id for d in done] == ["pref/b"] and conflicts == [Conflict("pref/a", 2)]
    assert (await page(store, "pref/b")).content == "k: b2"
    with pytest.raises(ValueError):
        await store.commit([PageCommit(NS, replace(fresh, version=5), 2)])


async def test_racing_commits_of_one_page_settle_its_staged_row_exactly_once(opener: Opener) -> None:
    a = await seeded(opener)
    b = await opener()
    for round_ in range(8):
        staged = await a.stage(entry("pref/a", "append"))
        base = await page(a, "pref/a")
        outcomes: list[tuple[str, Any]] = []

        async def commit(
            name: str, store: Store, base: Page = base, staged: int = staged, n: int = round_, out: Any = outcomes
        ) -> None:
            new = replace(base, content=f"k: {name}{n}", version=base.version + 1)
            out.append((name, await store.commit([PageCommit(NS, new, base.version, (staged,))])))

        async with anyio.create_task_group() as tg:
            tg.start_soon(commit, "a", a)
            tg.start_soon(commit, "b", b)
        winners = [name for name, (done, _) in outcomes if done]
        assert len(winners) == 1, outcomes
        loser = next(c for _, (_, c) in outcomes if c)
        assert loser == [Conflict("pref/a", base.version + 1)]
        assert (await page(b, "pref/a")).content == f"k: {winners[0]}{round_}"
        rows = {e.txn_id: e for e in await b.journal("s", 1000)}
        assert rows[staged].status == "committed" and rows[staged].version == base.version + 1


async def test_rejections_are_checked_first_against_the_version_before_the_flush(opener: Opener) -> None:
    store = await seeded(opener)
    bad = await store.stage(entry("pref/a"))
    good = await store.stage(entry("pref/a", "append"))
    new = await bumped(store, "pref/a", "k: v2")
    reasons = ({"code": "FLOOR", "detail": "no"},)
    done, conflicts = await store.commit(
        [PageCommit(NS, new, 1, (good,))], [Rejection(NS, "pref/a", 1, (bad,), reasons)]
    )
    assert conflicts == [] and done[0].version == 2
    rows = {e.txn_id: e for e in await store.journal("s", 100)}
    assert rows[bad].status == "rejected" and rows[bad].reasons == list(reasons)
    assert rows[good].status == "committed"
    late = await store.stage(entry("pref/a"))
    _, conflicts = await store.commit([], [Rejection(NS, "pref/a", 1, (late,), reasons)])
    assert conflicts == [Conflict("pref/a", 2)]
    assert [e.txn_id for e in await store.pending("s")] == [late]


# ---------------------------------------------------------------------------------------------- change sequence


async def test_every_change_moves_the_sequence_and_the_sessions_seq(opener: Opener) -> None:
    store = await seeded(opener)
    other = await opener()

    async def session_seq() -> int:
        rec = await store.get_session("s")
        assert rec is not None
        return rec.seq

    for change in (
        lambda: other.stage(entry("pref/a")),
        lambda: other.add_tool_call(ToolCall("s", "c1", "sig", "grep", "{}", "ev/x", 1, False)),
        lambda: other.add_tool_call(ToolCall("s", "c1", "sig", "grep", "{}", "ev/x", 1, True)),
        lambda: other.add_faults("s", [FaultEvent("refault", 2, "pref/a", "d")]),
    ):
        seq, sess, version = await store.change_seq(), await session_seq(), await store.data_version()
        await change()
        assert await store.change_seq() > seq
        assert await session_seq() > sess
        assert await store.data_version() != version
    pending = await store.pending("s")
    seq = await store.change_seq()
    await other.mark([pending[0].txn_id], "lost", [])
    assert await store.change_seq() > seq
    calls = await store.tool_calls("s")
    assert calls == [ToolCall("s", "c1", "sig", "grep", "{}", "ev/x", 1, True)]
    assert await store.faults("s") == [FaultEvent("refault", 2, "pref/a", "d")]


async def test_pages_since_returns_what_moved_tombstones_included(opener: Opener) -> None:
    store = await seeded(opener)
    seq = await store.change_seq()
    assert await store.pages_since([NS], seq) == []
    gone = replace(await bumped(store, "pref/b", "k: v1"), deleted=True)
    await store.commit([PageCommit(NS, gone, 1)])
    moved = await store.pages_since([NS], seq)
    assert [(ns, p.page_id, p.deleted) for ns, p in moved] == [(NS, "pref/b", True)]
    assert await store.pages_since(["other:ns"], seq) == []
    assert [p.page_id for _, p in await store.load_pages([NS])] == ["pref/a"]
    assert await store.count_pages(NS) == 1
    assert await store.get_page(NS, "nope") is None


# ---------------------------------------------------------------------------------------------- search


VOCAB = "quokka deploy tokenizer sqlite.py parse_header build merge rule test plan user O'Brien".split()


async def test_search_ranks_and_scores_as_the_in_memory_reference(opener: Opener) -> None:
    import random

    store = await opener()
    memory = MemoryStore()
    engines = [ClawVMEngine(store), ClawVMEngine(memory)]
    rng = random.Random(5)
    for e in engines:
        await e.session_start("s")
    for i in range(40):
        content = " ".join(rng.choices(VOCAB, k=rng.randrange(1, 14)))
        page_type = rng.choice(["evidence", "conversation"])
        page_id = f"ev/{i}" if i % 7 else f"ev/quokka-{i}"
        for e in engines:
            req = WriteRequest("create", page_id, PROV, page_type, content, scope="session")  # type: ignore[arg-type]
            assert (await e.write("s", req)).status == "committed"
    for e in engines:  # a deleted page is never found
        assert (await e.write("s", WriteRequest("delete", "ev/1", PROV, base_version=1))).status == "committed"
    for query in ["quokka", "deploy build", "parse_header in sqlite.py", "plan user test rule", "o'brien", "zzz"]:
        for only in (None, "evidence"):
            got = await store.search([NS], query_terms(query), only, 10)
            want = await memory.search([NS], query_terms(query), only, 10)
            assert [(h.page_id, h.type, h.title, h.pointer, h.matched) for h in got] == [
                (h.page_id, h.type, h.title, h.pointer, h.matched) for h in want
            ], query
            assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-6), query
            assert "ev/1" not in [h.page_id for h in got]
    assert await store.search(["other:ns"], ["quokka"], None, 10) == []
    assert await store.search([NS], [], None, 10) == []


@pytest.mark.parametrize("query", ['"', "a:b OR c", "x & !y | (z", "*", "NEAR(a b)", "'quoted'", "\\"])
async def test_no_query_text_is_search_syntax(opener: Opener, query: str) -> None:
    store = await seeded(opener)
    hits = await store.search([NS], query_terms(query) or [query], None, 5)
    assert isinstance(hits, list)


# ---------------------------------------------------------------------------------------------- failures


@asynccontextmanager
async def writer_lock(store_db: str | Path) -> AsyncIterator[None]:
    """Another process holding the store's write lock: SQLite's BEGIN IMMEDIATE, PostgreSQL's clock row."""
    if isinstance(store_db, Path):
        conn = sqlite3.connect(store_db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import asyncpg

    conn = await asyncpg.connect(store_db)
    tx = conn.transaction()
    await tx.start()
    await conn.execute("UPDATE clock SET seq = seq WHERE id = 1")
    try:
        yield
    finally:
        await tx.rollback()
        await conn.close()


async def test_a_held_write_lock_is_store_busy_within_the_timeout_and_changes_nothing(
    opener: Opener, store_db: str | Path
) -> None:
    await seeded(opener)
    store = await opener(0.3)
    before = await store.journal("s", 100)
    async with writer_lock(store_db):
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreBusy):
            await store.stage(entry("pref/a"))
        assert asyncio.get_running_loop().time() - started < 3
        assert await store.get_page(NS, "pref/a") is not None  # reads go on
    assert await store.journal("s", 100) == before
    assert await store.stage(entry("pref/a")) > 0  # and a retry after succeeds


async def test_a_commit_is_durable_on_return(opener: Opener) -> None:
    store = await opener()
    assert await store.synchronous() == 2  # type: ignore[attr-defined]


async def test_a_url_it_cannot_serve_is_refused_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for db in ("s3://bucket/memory", Path("mysql://h/db"), Path("sqlite:///x.db")):
        with pytest.raises(StoreError, match="not a database clawvm-mcp can open"):
            await open_store(db)
    assert list(tmp_path.iterdir()) == []


async def test_an_unreachable_postgres_is_unavailable_not_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("asyncpg")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL at postgresql://u:\\*\\*\\*@127.0.0.1:1/db"):
        await open_store(Path("postgresql://u:secret@127.0.0.1:1/db"), timeout=2)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- two engines


async def test_two_engines_on_one_database_see_each_others_commits_and_settle_once(opener: Opener) -> None:
    one, two = ClawVMEngine(await opener()), ClawVMEngine(await opener())
    await one.session_start("s")
    await two.open_session("s")
    await one.assemble("s", budget=2000)
    req = WriteRequest("create", "note/x", PROV, "evidence", "the quokka deploy plan", scope="session")
    assert (await two.write("s", req)).status == "committed"
    shown = await one.assemble("s", budget=2000)
    assert "quokka deploy plan" in shown.prompt
    assert any(p.page_id == "note/x" for p in shown.pages)
    staged = WriteRequest("append", "note/x", PROV, content="staged line", commit="boundary")
    assert (await one.write("s", staged)).status == "staged"
    results = await asyncio.gather(one.lifecycle("s", "flush"), two.lifecycle("s", "flush"))
    assert results
    store = await opener()
    rows = [e for e in await store.journal("s", 1000) if e.op == "append"]
    assert [e.status for e in rows] == ["committed"], rows
    text = (await page(store, "note/x")).content
    assert text.count("staged line") == 1
    assert "staged line" in (await two.assemble("s", budget=2000)).prompt


@pytest.mark.parametrize("db", ["mysql://h/db", "sqlite:///x.db"])
def test_serve_refuses_a_url_it_cannot_serve_in_one_line(tmp_path: Path, db: str) -> None:
    """Before: the server started and wrote a SQLite file under a new folder named after the scheme."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "serve", "--db", db],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines()[-1].startswith("Error: --db "), done.stderr
    assert "not a database clawvm-mcp can open" in done.stderr
    assert list(tmp_path.iterdir()) == []


async def test_postgres_without_asyncpg_is_refused_with_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what a machine without the postgres extra sees
    monkeypatch.delitem(sys.modules, "clawvm_mcp.store.postgres", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"needs asyncpg .*pip install 'clawvm-mcp\[postgres\]'"):
        await open_store("postgresql://u@127.0.0.1:1/db")
    assert list(tmp_path.iterdir()) == []
