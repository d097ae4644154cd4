"""Ranked recall: the shared tokenizer, BM25 over the FTS5 index kept in the page's own commit statement, the same
ranking from the in-memory store, and the forward migration that indexes an existing database (the semantic extra:
tests/test_semantic.py)."""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.engine.session import session_namespace
from clawvm_mcp.journal import Op, WriteRequest
from clawvm_mcp.pages import PageType, Provenance
from clawvm_mcp.replay.bench_recall import Conversation, default_data, load_locomo, scale_up
from clawvm_mcp.server import ServerConfig, create_server
from clawvm_mcp.store import SQLiteStore, topk
from clawvm_mcp.store import sqlite as sqlite_store
from clawvm_mcp.store.base import PageCommit, SearchHit
from clawvm_mcp.store.memory import MemoryStore
from clawvm_mcp.store.porter import stem
from clawvm_mcp.store.search import decode, match_expression, query_terms, tokens, weighted

from .conftest import PROV as WIRE_PROV
from .conftest import call

PROV = Provenance("user", "ext:test", 0)
NS = "s:s"
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _engine(store: SQLiteStore | MemoryStore, session: str = "s") -> ClawVMEngine:
    engine = ClawVMEngine(store)
    await engine.session_start(session)
    return engine


async def _create(
    engine: ClawVMEngine, page_id: str, content: str, page_type: PageType = "evidence", session: str = "s"
) -> None:
    result = await engine.write(session, WriteRequest("create", page_id, PROV, page_type, content, scope="session"))
    assert result.status == "committed", result


def _rows(path: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return [tuple(r) for r in conn.execute(sql, params)]


def _ids(hits: list[SearchHit]) -> list[str]:
    return [h.page_id for h in hits]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(tmp_path / "recall.db")
    yield s
    await s.close()


# ---------------------------------------------------------------- tokenizer


def test_identifiers_and_paths_yield_parts_and_joins() -> None:
    assert tokens("snake_case") == ["snake", "case", "snakecase"]
    assert tokens("getHTTPResponse") == ["get", "http", "respons", "gethttpresponse"]
    assert tokens("src/clawvm_mcp/sqlite.py") == [
        "src",
        "clawvm",
        "mcp",
        "sqlite",
        "py",
        "clawvmmcp",
        "sqlitepy",
        "srcclawvmmcpsqlitepy",
    ]
    assert tokens("Café painted paintings") == ["cafe", "paint", "paint"]
    assert tokens("end. Next") == ["end", "next"]  # a full stop before a space joins nothing


def test_query_drops_stop_words_unless_nothing_else_is_left() -> None:
    assert query_terms("What did Caroline research?") == ["carolin", "research"]
    assert query_terms("what is it") == ["what", "is", "it"]
    assert query_terms("the the THE") == ["the"]


@pytest.mark.parametrize(
    "query", ['"', 'a" OR "b', "NEAR(x y)", "x*", "title:secret", "^start", "a AND NOT b", "(", "{page_id}: x", "-x"]
)
def test_no_query_text_is_fts_syntax(query: str) -> None:
    """Every term is one quoted phrase: MATCH parses whatever the user typed, and matches it only as words."""
    terms = query_terms(query) or ["x"]
    expr = match_expression([NS], terms)
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE VIRTUAL TABLE t USING fts5(ns, page_id, title, fields, content)")
        conn.execute("INSERT INTO t VALUES ('ns' || lower(hex(?)), 'x', '', '', 'and not near title secret')", (NS,))
        conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (expr,)).fetchall()  # raises on a syntax error


def test_porter_stems_as_fts5_does_on_every_word_of_the_docs() -> None:
    """The Python stemmer against SQLite's own porter tokenizer, word for word, so recall's vocabulary is FTS5's."""
    text = " ".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    words = sorted(set(re.findall(r"[a-z]+", text.lower())))
    assert len(words) > 1000
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE VIRTUAL TABLE stems USING fts5(w, tokenize = 'porter ascii')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(stems, 'instance')")
        conn.executemany("INSERT INTO stems(rowid, w) VALUES (?, ?)", list(enumerate(words, 1)))
        fts = dict(conn.execute("SELECT doc, term FROM v"))
    assert {w: stem(w) for w in words} == {w: fts[i] for i, w in enumerate(words, 1)}


# ---------------------------------------------------------------- ranking


async def test_rare_words_outrank_common_ones_and_scores_descend(store: SQLiteStore) -> None:
    engine = await _engine(store)
    for i in range(8):
        await _create(engine, f"ev/common-{i}", f"the deploy step {i} ran the build")
    await _create(engine, "ev/rare", "the deploy used quokka mode")
    hits = await store.search([NS], query_terms("quokka deploy"), None, 5)
    assert hits[0].page_id == "ev/rare"
    assert len(hits) == 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1] > 0


async def test_field_weights_rank_id_and_title_hits_above_content_hits(store: SQLiteStore) -> None:
    engine = await _engine(store)
    await _create(engine, "notes/misc", "misc notes\nsomewhere below it mentions the tokenizer once")
    await _create(engine, "design/tokenizer", "how words are split\nparts and joins")
    assert _ids(await store.search([NS], query_terms("tokenizer"), None, 10)) == ["design/tokenizer", "notes/misc"]


async def test_identifier_query_finds_the_page_that_has_it(store: SQLiteStore) -> None:
    engine = await _engine(store)
    await _create(engine, "ev/a", "grep output: def parse_header(raw) in clawvm_mcp/store/sqlite.py")
    await _create(engine, "ev/b", "the header parse failed; sqlite said the raw file was busy")
    for query in ("parse_header", "parseHeader", "sqlite.py"):
        assert _ids(await store.search([NS], query_terms(query), None, 10))[0] == "ev/a", query


async def test_limit_type_namespace_and_deletion(store: SQLiteStore) -> None:
    engine = await _engine(store)
    other = await _engine(store, "t")
    for i in range(12):
        await _create(engine, f"ev/{i:02d}", f"quokka sighting {i}")
    await _create(engine, "talk/quokka", "quokka census talk", "conversation")
    await _create(other, "ev/secret", "quokka in another session", session="t")
    assert len(await store.search([NS], ["quokka"], None, 10)) == 10
    assert _ids(await store.search([NS], ["quokka"], "conversation", 10)) == ["talk/quokka"]
    assert "ev/secret" not in _ids(await store.search([NS], ["quokka"], None, 100))
    deleted = await engine.write("s", WriteRequest("delete", "talk/quokka", PROV, base_version=1))
    assert deleted.status == "committed"
    assert "talk/quokka" not in _ids(await store.search([NS], ["quokka"], None, 100))
    assert _rows(store.path, "SELECT count(*) FROM page_fts") == [(13,)]


@pytest.mark.parametrize("page_type", [None, "evidence"])
async def test_the_plan_is_one_fts_match_with_top_k_in_sql(store: SQLiteStore, page_type: str | None) -> None:
    """FTS5 drives; the ranking sorts ids and scores only; just the top rows read their bodies."""
    sql = sqlite_store.SEARCH_SQL.format(
        weights="1, 1, 1, 1",
        marks="?",
        type_join="" if page_type is None else sqlite_store.SEARCH_TYPE_JOIN,
        type_filter="" if page_type is None else " AND t.type = ?",
    )
    params = ("x", NS, *([page_type] if page_type else []), 10)
    plan = [r[-1] for r in _rows(store.path, "EXPLAIN QUERY PLAN " + sql, params)]
    by_type = ["SEARCH t USING PRIMARY KEY (namespace=? AND page_id=?)"] if page_type else []
    assert plan == [
        "MATERIALIZE top",
        "SCAN page_fts VIRTUAL TABLE INDEX 0:M5",
        "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)",
        *by_type,
        "USE TEMP B-TREE FOR ORDER BY",
        "SCAN top",
        "SEARCH p USING PRIMARY KEY (namespace=? AND page_id=?)",
        "USE TEMP B-TREE FOR ORDER BY",
    ]


async def test_postings_statements_seek_their_keys(store: SQLiteStore) -> None:
    """Every statement of a search seeks the keys it names: no table is scanned whatever its size."""
    path = store.path
    fetch = sqlite_store.SEARCH_FETCH.format(type_join="", ns="?", terms="?,?")
    typed = sqlite_store.SEARCH_FETCH.format(type_join=sqlite_store.SEARCH_FETCH_TYPE, ns="?", terms="?,?")
    probe = sqlite_store.SEARCH_PROBE.format(ns="?", terms="?")
    stats = sqlite_store.SEARCH_STATS.format(ns="?,?", terms="?,?")
    plans = {
        name: " | ".join(r[-1] for r in _rows(path, "EXPLAIN QUERY PLAN " + sql, params))
        for name, sql, params in [
            ("fetch", fetch, (1, "a", "b")),
            ("typed", typed, ("evidence", 1, "a", "b")),
            ("probe", probe, (1, "a", "[1,2]")),
            ("stats", stats, ("a", "b", NS, "p:x", "a", "b", NS, "p:x")),
            ("bodies", sqlite_store.SEARCH_BODIES, ("[1,2]",)),
        ]
    }
    assert "SCAN" not in plans["fetch"].replace("SCAN json_each", ""), plans
    assert "SEARCH p USING PRIMARY KEY (nsid=? AND term=?)" in plans["fetch"], plans
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)" in plans["typed"], plans
    assert "SEARCH recall_postings USING PRIMARY KEY (nsid=? AND term=? AND docid=?)" in plans["probe"], plans
    for name in ("stats", "bodies", "typed", "probe"):
        assert " SCAN recall" not in " " + plans[name] and "SCAN d" not in plans[name], plans[name]


# ---------------------------------------------------------------- the index is the table


def _assert_index_is_table(path: str) -> None:
    """Every live page has exactly its search text in the index; no deleted or missing page has a row."""
    live = {
        (ns, pid): text
        for ns, pid, text in _rows(path, "SELECT namespace, page_id, search_text FROM pages WHERE deleted = 0")
    }
    indexed = {
        (ns, pid): json.dumps([a, b, c, d], ensure_ascii=False, separators=(",", ":"))
        for ns, pid, a, b, c, d in _rows(
            path,
            "SELECT d.namespace, d.page_id, f.page_id, f.title, f.fields, f.content"
            " FROM page_fts f JOIN page_docs d ON d.docid = f.rowid",
        )
    }
    assert indexed == live
    tokens_of = _rows(path, "SELECT f.ns, d.namespace FROM page_fts f JOIN page_docs d ON d.docid = f.rowid")
    assert all(tok == "ns" + ns.encode().hex() for tok, ns in tokens_of)
    _assert_postings_are_table(path)


def _assert_postings_are_table(path: str) -> None:
    """recall's own postings hold exactly each live page's weighted freqs and length, and every count and bound
    they carry agrees with them (and the row count with FTS5's; its token count is checked through the scores)."""
    want: dict[tuple[str, str, str], tuple[int, int]] = {}
    lengths: list[int] = []
    for ns, pid, text in _rows(path, "SELECT namespace, page_id, search_text FROM pages WHERE deleted = 0"):
        length, freq = weighted(decode(text))
        lengths.append(length)
        want.update({(ns, pid, term): (f, length) for term, f in freq.items()})
    got = {
        (ns, pid, term): (f, n)
        for ns, pid, term, f, n in _rows(
            path,
            "SELECT s.namespace, d.page_id, p.term, p.freq, p.len FROM recall_postings p"
            " JOIN recall_ns s ON s.nsid = p.nsid JOIN page_docs d ON d.docid = p.docid",
        )
    }
    assert got == want
    df: dict[str, int] = {}
    for _, _, term in want:
        df[term] = df.get(term, 0) + 1
    assert dict(_rows(path, "SELECT term, df FROM recall_terms WHERE df > 0")) == df
    assert _rows(path, "SELECT count(*) FROM recall_terms WHERE df < 0") == [(0,)]
    assert _rows(path, "SELECT rows, tokens FROM recall_stats") == [(len(lengths), sum(lengths))]
    if lengths:  # FTS5's own counts, as bm25() reads them: the averages record of page_fts
        assert _rows(path, "SELECT count(*) FROM page_fts") == [(len(lengths),)]
    shapes: dict[tuple[str, str, int], list[int]] = {}
    for (ns, _, term), (f, length) in want.items():
        shapes.setdefault((ns, term, f), []).append(length)
    bounds = {
        (ns, term, f): (n, length)
        for ns, term, f, length, n in _rows(
            path,
            "SELECT s.namespace, b.term, b.freq, b.len, b.n FROM recall_bounds b JOIN recall_ns s ON s.nsid = b.nsid",
        )
    }
    assert {key: n for key, (n, _) in bounds.items() if n} == {key: len(v) for key, v in shapes.items()}
    assert all(bounds[key][1] <= min(v) for key, v in shapes.items())  # the shortest length seen, or shorter


async def test_index_follows_every_commit_and_never_a_refused_one(store: SQLiteStore) -> None:
    """Random creates, edits, deletes, re-creates and stale writes: after each, index == table."""
    engine = await _engine(store)
    rng = random.Random(7)
    words = "alpha beta gamma delta quokka tokenizer deploy build merge".split()
    done: dict[tuple[str, str], int] = {}
    for step in range(80):
        pid = f"ev/p{rng.randrange(5)}"
        text = " ".join(rng.choices(words, k=5))
        op: Op = rng.choice(["create", "set", "append", "delete"])
        current = await store.get_page(NS, pid)
        base = None if current is None else current.version
        if step % 7 == 3:  # a write on a stale base version is refused: the index must not move either
            base, op = 99, "set"
        req = WriteRequest(op, pid, PROV, "evidence" if op == "create" else None, text, base_version=base)
        result = await engine.write("s", req)
        done[(op, result.status)] = done.get((op, result.status), 0) + 1
        _assert_index_is_table(store.path)
    assert all(done.get((op, "committed"), 0) >= 3 for op in ("create", "set", "append", "delete")), done
    assert done.get(("set", "rejected"), 0) >= 10, done


async def test_a_refused_commit_statement_leaves_the_index_as_it_was(store: SQLiteStore) -> None:
    """The compare-and-swap aborts the whole statement, index maintenance included."""
    engine = await _engine(store)
    await _create(engine, "ev/a", "quokka one")
    before = _rows(store.path, "SELECT rowid, content FROM page_fts")
    page = await store.get_page(NS, "ev/a")
    assert page is not None
    stale = replace(page, version=4, content="wombat two")
    assert await store.try_commit(PageCommit(NS, stale, 3)) is None
    assert _rows(store.path, "SELECT rowid, content FROM page_fts") == before
    _assert_index_is_table(store.path)


# ---------------------------------------------------------------- exact top-k without scoring every match

LOCOMO = default_data()


async def _locomo_session(path: Path, pages: int) -> tuple[list[Conversation], str]:
    """conv-26's turns and conv-30's through the engine, then copies of conv-30's turns in conv-26's session until
    the store holds ``pages``: one large session whose common words match thousands of pages."""
    conversations = load_locomo(LOCOMO, "turn")[:2]
    store = await SQLiteStore.open(path)
    try:
        engine = ClawVMEngine(store)
        for conv in conversations:
            await engine.session_start(conv.session_id)
            for page_id, content in conv.pages.items():
                await _create(engine, page_id, content, "conversation", conv.session_id)
    finally:
        await store.close()
    big = await scale_up(path, conversations, pages, "one")
    assert big == conversations[0].session_id
    return conversations, session_namespace(big)


def _ranked(hits: list[SearchHit]) -> list[tuple[str, str, float, int]]:
    return [(h.namespace, h.page_id, h.score, h.matched) for h in hits]


@pytest.mark.skipif(not LOCOMO.is_file(), reason=f"LoCoMo is not at {LOCOMO}")
async def test_top_k_is_fts5s_exhaustive_ranking_on_locomo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conv-26's questions over 4,000 pages in its one session: the pruned top-k is FTS5 bm25()'s over every
    matching row, page for page and score for score (same doubles), with and without a type filter, by MaxScore
    as planned and with every query forced through it; and it did prune: common terms were only looked up."""
    conversations, ns = await _locomo_session(tmp_path / "big.db", 4_000)
    requests: list[topk.Fetch | topk.Probe] = []
    real = topk.top_k

    def counting(terms: Any, avg: float, k: int) -> topk.Steps:
        steps = real(terms, avg, k)
        try:
            request = next(steps)
            while True:
                requests.append(request)
                request = steps.send((yield request))
        except StopIteration as done:
            result: list[topk.Scored] = done.value
            return result

    monkeypatch.setattr(topk, "top_k", counting)
    store = await SQLiteStore.open(tmp_path / "big.db")
    try:
        assert await store.count_pages(ns) == 4_000 - len(conversations[1].pages)
        questions = [q.text for q in conversations[0].questions]
        for forced in (False, True):
            if forced:
                monkeypatch.setattr(topk, "EXHAUSTIVE_POSTINGS", 0)
            for i, text in enumerate(questions):
                terms = query_terms(text)
                for limit, page_type in ((10, None), (1, None), (5, "conversation" if i % 2 else "evidence")):
                    want = await store.search_fts([ns, "p:default"], terms, page_type, limit)
                    assert _ranked(await store.search([ns, "p:default"], terms, page_type, limit)) == _ranked(want)
        probes = [r for r in requests if isinstance(r, topk.Probe)]
        assert len(probes) > len(questions) // 2
        assert any(len(r.docids) < 100 for r in probes)  # a common term looked up for a few pages, not read whole
    finally:
        await store.close()


async def test_memory_database_searches_on_its_one_connection() -> None:
    """``:memory:`` has no second connection to read on: the same steps run on the aiosqlite connection."""
    store = await SQLiteStore.open(":memory:")
    try:
        engine = await _engine(store)
        for i in range(30):
            await _create(engine, f"ev/{i}", f"quokka note {i}" + " deploy" * (i % 4))
        for query in ("quokka", "deploy quokka", "note 7"):
            terms = query_terms(query)
            assert _ranked(await store.search([NS], terms, None, 10)) == _ranked(
                await store.search_fts([NS], terms, None, 10)
            )
    finally:
        await store.close()


async def test_v4_database_gets_its_postings_at_open(tmp_path: Path) -> None:
    """A database of schema v4 (FTS5 index, page heads, no postings) is given them by migration 5, ranking
    unchanged."""
    path = tmp_path / "v4.db"
    store = await SQLiteStore.open(path)
    try:
        engine = await _engine(store)
        for i in range(40):
            await _create(engine, f"ev/{i}", f"{'quokka' if i % 3 else 'wombat'} note {i} deploy")
        await engine.write("s", WriteRequest("delete", "ev/4", PROV, base_version=1))
        before = _ranked(await store.search_fts([NS], query_terms("quokka deploy note"), None, 10))
    finally:
        await store.close()
    with closing(sqlite3.connect(path)) as conn:  # what schema v4 had: the same tables less migration 5's
        for table in ("recall_ns", "recall_docs", "recall_postings", "recall_terms", "recall_bounds", "recall_stats"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version = {sqlite_store.POSTINGS_SCHEMA - 1}")
        conn.commit()
    store = await SQLiteStore.open(path)
    try:
        assert _rows(str(path), "PRAGMA user_version") == [(sqlite_store.SCHEMA_VERSION,)]
        _assert_index_is_table(str(path))
        assert _ranked(await store.search([NS], query_terms("quokka deploy note"), None, 10)) == before
    finally:
        await store.close()


# ---------------------------------------------------------------- the in-memory store ranks the same


async def test_memory_store_ranks_and_scores_as_sqlite(tmp_path: Path) -> None:
    sqlite = await SQLiteStore.open(tmp_path / "m.db")
    memory = MemoryStore()
    rng = random.Random(3)
    vocab = "quokka deploy tokenizer sqlite.py parse_header build merge rule test plan user".split()
    try:
        engines = [await _engine(sqlite), await _engine(memory)]
        for i in range(40):
            content = " ".join(rng.choices(vocab, k=rng.randrange(1, 12)))
            page_type: PageType = rng.choice(["evidence", "conversation"])
            for e in engines:
                await _create(e, f"ev/{i}", content, page_type)
        for query in ["quokka", "deploy build", "parse_header in sqlite.py", "plan user test rule"]:
            for only in (None, "evidence"):
                a = await sqlite.search([NS], query_terms(query), only, 10)
                b = await memory.search([NS], query_terms(query), only, 10)
                assert _ids(a) == _ids(b), query
                assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-9), query
    finally:
        await sqlite.close()


# ---------------------------------------------------------------- migration


def _v1_database(path: Path, pages: int) -> None:
    """A database as clawvm-mcp with schema v1 left it: its pages carry the old raw search text, no index."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(sqlite_store.MIGRATIONS[0])
        conn.execute(f"PRAGMA application_id = {sqlite_store.APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 1")
        for i in range(pages):
            body = {
                "page_id": f"ev/{i}",
                "type": "evidence",
                "scope": "session",
                "pin": "none",
                "min_fidelity": "pointer",
                "version": 1,
                "provenance": {"source": "user", "ref": "ext:old", "turn": 0},
                "content": f"old note {i} about the {'quokka' if i % 10 == 0 else 'wombat'}",
                "fields": {"summary": f"note {i}", "paths": []},
                "explicit_fields": {},
                "representations": {"full": [f"old note {i}", 3], "pointer": [f"ev/{i}", 2]},
                "recompute_cost": 1.0,
                "base_utility": 1.0,
                "created_turn": 0,
                "last_access_turn": 0,
                "title": f"old note {i}",
                "deleted": i == 5,
            }
            conn.execute(
                "INSERT INTO pages VALUES (?,?,?,?,?,?,?)",
                (NS, f"ev/{i}", "evidence", 1, int(i == 5), f"ev/{i} old note {i}", json.dumps(body)),
            )
        conn.commit()


async def test_migration_indexes_an_existing_database_and_shows_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    _v1_database(path, 45)
    monkeypatch.setattr(sqlite_store, "INDEX_PROGRESS_EVERY", 20)
    monkeypatch.setattr(sqlite_store, "INDEX_BATCH", 10)  # 5 batches: progress where a multiple of 20 is passed
    with caplog.at_level(logging.INFO, logger="clawvm_mcp.store.sqlite"):
        store = await SQLiteStore.open(path)
    try:
        progress = [r.getMessage() for r in caplog.records if "recall index" in r.getMessage()]
        assert progress == [
            f"{path}: building the recall index for 45 pages",
            f"{path}: recall index 20 of 45 pages",
            f"{path}: recall index 40 of 45 pages",
        ]
        assert _rows(str(path), "PRAGMA user_version") == [(sqlite_store.SCHEMA_VERSION,)]
        _assert_index_is_table(str(path))
        hits = await store.search([NS], query_terms("quokka"), None, 10)
        assert sorted(_ids(hits)) == sorted(f"ev/{i}" for i in (0, 10, 20, 30, 40))
    finally:
        await store.close()


# ---------------------------------------------------------------- over MCP


async def test_recall_over_mcp_ranks_with_scores_and_reads_no_syntax(tmp_path: Path) -> None:
    async with Client(create_server(ServerConfig(db=tmp_path / "mcp.db"))) as c:
        await call(c, "session_start", session_id="s1")
        pages = {
            "ev/grep": "grep found def parse_header in clawvm_mcp/store/sqlite.py",
            "ev/notes": "notes: the header of the report was parsed by hand",
            "talk/quokka": 'Caroline said "quokka" AND NEAR(x) are words, not syntax*',
        }
        for page_id, content in pages.items():
            args = {"page_id": page_id, "op": "create", "type": "evidence", "content": content}
            assert (await call(c, "page_write", session_id="s1", provenance=WIRE_PROV, **args))["status"] == "committed"
        found = await call(c, "recall", session_id="s1", query="where is parseHeader defined?")
        assert found["outcome"] == "hit"
        assert [r["page_id"] for r in found["results"]] == ["ev/grep", "ev/notes"]
        scores = [r["score"] for r in found["results"]]
        assert scores[0] > scores[1] > 0
        assert found["results"][0]["matched_terms"] == 3  # parse, header, parseheader
        assert found["results"][0]["pointer"].startswith("[page ev/grep evidence v1")
        assert found["results"][0]["title"] == "grep found def parse_header in clawvm_mcp/store/sqlite.py"
        quoted = await call(c, "recall", session_id="s1", query='"quokka" AND NEAR( syntax* title:')
        assert [r["page_id"] for r in quoted["results"]] == ["talk/quokka"]
        miss = await call(c, "recall", session_id="s1", query="kubernetes")
        assert miss["outcome"] == "no_match" and miss["results"] == []
