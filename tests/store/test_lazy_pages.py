"""Pages loaded by their head (store/lazy.py) on every store: ``load_pages`` answers what the selector needs from
the head its SQL extracted, decodes a page's body only when something reads its text, and the decoded page is
exactly the page that was committed."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from clawvm_mcp.canonical import dumps
from clawvm_mcp.engine.merge import PageMerger
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.page_table import PageSizes, PageTable
from clawvm_mcp.pages import STORED_LEVELS, Fidelity, Page, Provenance
from clawvm_mcp.store import open_store
from clawvm_mcp.store import sqlite as sqlite_store
from clawvm_mcp.store.base import PageCommit, page_to_json
from clawvm_mcp.store.lazy import LazyPage, head_of, page_from_head
from clawvm_mcp.tokens import TokenCounter

pytestmark = pytest.mark.anyio
PROV = Provenance("tool", "ext:test", 3)
NS = "s:s"


def pages() -> list[Page]:
    """One page of every type, with titles, explicit fields, an accent and a multi-paragraph body."""
    merge = PageMerger(TokenCounter(), 0, 0)
    reqs = [
        WriteRequest("create", "boot/rules", PROV, "bootstrap", "# Rules\n- never push\n- run the checks"),
        WriteRequest("create", "c/ro", PROV, "constraint", "The staging DB is read-only.", fields={"rule": "ro"}),
        WriteRequest("create", "plan/main", PROV, "plan", "Goal: ship it\n\nStep: write the tests"),
        WriteRequest("create", "pref/tone", PROV, "preference", "tone: polite, café-style"),
        WriteRequest("create", "ev/bash/1", PROV, "evidence", "$ pytest -q\n3 passed\n" * 40),
        WriteRequest("create", "conv/1", PROV, "conversation", "user: hello there\nassistant: hi" * 20),
    ]
    return [replace(merge(req, None), version=1, last_access_turn=7) for req in reqs]


async def test_loaded_pages_decode_lazily_to_exactly_the_committed_pages(store_db: str | Path) -> None:
    store = await open_store(store_db)
    try:
        written = {p.page_id: p for p in pages()}
        await store.commit([PageCommit(NS, p, 0) for p in written.values()])
        loaded = {p.page_id: p for _, p in await store.load_pages([NS])}
        assert sorted(loaded) == sorted(written)
        for pid, page in loaded.items():
            assert isinstance(page, LazyPage) and not page.decoded
            want = written[pid]
            # what the selector asks of a page comes from the head: no body decoded for it
            assert PageSizes.of(page).tokens == PageSizes.of(want).tokens
            assert [page.tokens_at(lv) for lv in STORED_LEVELS if lv in want.representations] == [
                want.tokens_at(lv) for lv in STORED_LEVELS if lv in want.representations
            ]
            assert page.token_counts() == want.token_counts()  # from the head, still undecoded
            assert (page.type, page.pin, page.min_fidelity, page.version, page.title) == (
                want.type,
                want.pin,
                want.min_fidelity,
                want.version,
                want.title,
            )
            assert (page.provenance, page.last_access_turn, page.base_utility) == (
                want.provenance,
                want.last_access_turn,
                want.base_utility,
            )
            assert not page.decoded
            assert page.text_at(Fidelity.FULL) == want.text_at(Fidelity.FULL)  # the first text read decodes
            assert page.decoded
            assert page == want and want == page  # every field, both ways round
            assert page.token_counts() == want.token_counts()  # and from the decoded forms
            assert page.fields == want.fields and page.explicit_fields == want.explicit_fields
    finally:
        await store.close()


async def test_a_table_of_lazy_pages_indexes_as_the_decoded_pages_do(store_db: str | Path) -> None:
    store = await open_store(store_db)
    try:
        written = pages()
        await store.commit([PageCommit(NS, p, 0) for p in written])
        lazy = PageTable(p for _, p in await store.load_pages([NS]))
        eager = PageTable(written)
        assert (lazy.sum_full, lazy.sum_pointer, lazy.sum_free_need, lazy.sum_most, lazy.hard) == (
            eager.sum_full,
            eager.sum_pointer,
            eager.sum_free_need,
            eager.sum_most,
            eager.hard,
        )
        assert lazy.prefetch_order.keys() == eager.prefetch_order.keys()
        assert not any(p.decoded for p in lazy.values() if isinstance(p, LazyPage))
    finally:
        await store.close()


def test_replace_and_edits_of_a_lazy_page_keep_every_field() -> None:
    """``dataclasses.replace`` (how a write derives the next version) and assignments made by reads work on a page
    whose body was never decoded."""
    want = pages()[4]
    body = dumps(page_to_json(want))
    page = page_from_head(head_of(page_to_json(want)), body)
    page.last_access_turn = 9
    bumped = replace(page, version=2, content="new text")
    assert bumped.version == 2 and bumped.content == "new text" and bumped.last_access_turn == 9
    assert bumped.representations == want.representations and bumped.fields == want.fields
    assert page == replace(want, last_access_turn=9)


def _heads(path: Path) -> list[tuple[object, object]]:
    """Each row's stored head beside the head SQLite extracts from its body now, both parsed."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(f"SELECT head, {sqlite_store.head_sql('body')} FROM pages ORDER BY page_id").fetchall()
    return [(None if h is None else json.loads(h), json.loads(b)) for h, b in rows]


async def test_sqlite_stores_each_head_with_its_body_whoever_writes_the_row(tmp_path: Path) -> None:
    """The commit writes the head it computed from the page; a writer that leaves it out (a process still running
    code from before heads existed) gets it recomputed by the schema's triggers, so load_pages never reads a head
    that describes another version than the body beside it."""
    db = tmp_path / "heads.db"
    store = await open_store(db)
    try:
        await store.commit([PageCommit(NS, p, 0) for p in pages()])
    finally:
        await store.close()
    heads = _heads(db)
    assert len(heads) == 6 and all(stored == extracted for stored, extracted in heads)
    with closing(sqlite3.connect(db)) as conn:  # an older writer: body and version move, the head is not named
        body = json.loads(conn.execute("SELECT body FROM pages WHERE page_id = 'plan/main'").fetchone()[0])
        body.update(version=2, title="a new title", content="Goal: ship it twice")
        conn.execute("UPDATE pages SET body = ?, version = 2 WHERE page_id = 'plan/main'", (json.dumps(body),))
        body.update(page_id="plan/other", version=1)
        conn.execute(
            "INSERT INTO pages(namespace, page_id, type, version, deleted, search_text, body)"
            ' VALUES (?, \'plan/other\', \'plan\', 1, 0, \'["","","",""]\', ?)',
            (NS, json.dumps(body)),
        )
        conn.commit()
    heads = _heads(db)
    assert len(heads) == 7 and all(stored == extracted for stored, extracted in heads)
    store = await open_store(db)
    try:
        loaded = {p.page_id: p for _, p in await store.load_pages([NS])}
    finally:
        await store.close()
    assert (loaded["plan/main"].version, loaded["plan/main"].title) == (2, "a new title")
    assert loaded["plan/main"].content == "Goal: ship it twice"
    assert loaded["plan/other"].version == 1


async def test_migrating_a_store_without_heads_stores_every_head(tmp_path: Path) -> None:
    """A schema-3 file (before heads) migrated forward: every existing row gets the head of its body."""
    db = tmp_path / "v3.db"
    with closing(sqlite3.connect(db)) as conn:
        for script in sqlite_store.MIGRATIONS[: sqlite_store.HEAD_SCHEMA - 1]:
            conn.executescript(script)
        conn.execute(f"PRAGMA application_id = {sqlite_store.APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {sqlite_store.HEAD_SCHEMA - 1}")
        for p in pages():
            conn.execute(
                "INSERT INTO pages(namespace, page_id, type, version, deleted, search_text, body)"
                ' VALUES (?, ?, ?, 1, 0, \'["","","",""]\', ?)',
                (NS, p.page_id, p.type, dumps(page_to_json(p))),
            )
        conn.commit()
    store = await open_store(db)
    try:
        loaded = {p.page_id: p for _, p in await store.load_pages([NS])}
    finally:
        await store.close()
    assert loaded == {p.page_id: p for p in pages()}
    heads = _heads(db)
    assert len(heads) == 6 and all(stored is not None and stored == extracted for stored, extracted in heads)
