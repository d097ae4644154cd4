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
from clawvm_mcp.journal import Op, WriteRequest
from clawvm_mcp.pages import PageType, Provenance
from clawvm_mcp.server import ServerConfig, create_server
from clawvm_mcp.store import SQLiteStore
from clawvm_mcp.store import sqlite as sqlite_store
from clawvm_mcp.store.base import PageCommit, SearchHit
from clawvm_mcp.store.memory import MemoryStore
from clawvm_mcp.store.porter import stem
from clawvm_mcp.store.search import match_expression, query_terms, tokens

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
