"""A page commit on SQLite costs the same whatever the recall index holds (issue 12: every per-call cost sublinear).

The commit statement moves recall's own postings with the page. Counting SQLite's virtual-machine steps (a
deterministic count, not a timing) for one append on a store of 100 pages and on one of 800 that share their
words: a statement that scans the namespace's postings instead of looking the page's terms up (a row-value
``IN (subquery)`` the planner served by the key's first column only) made the count grow with the store, 66 ms a
commit at 10,000 pages."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import pytest

from clawvm_mcp.engine.merge import PageMerger
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Page, Provenance
from clawvm_mcp.store import SQLiteStore
from clawvm_mcp.store import sqlite as sqlite_store
from clawvm_mcp.store.base import PageCommit
from clawvm_mcp.tokens import TokenCounter

pytestmark = pytest.mark.anyio
PROV = Provenance("tool", "ext:test", 0)
NS = "s:s"
WORDS = "deploy config server token budget page commit review cache prompt session plan".split()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pages(n: int) -> list[Page]:
    merge = PageMerger(TokenCounter(), 0, 0)
    out = []
    for i in range(n):
        text = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40)) + f" unique{i}"
        out.append(replace(merge(WriteRequest("create", f"conv/{i:04d}", PROV, "conversation", text), None), version=1))
    return out


async def _steps_of_one_append(path: Path, n: int) -> int:
    pages = _pages(n)
    store = await SQLiteStore.open(path)
    try:
        for at in range(0, n, 200):
            await store.commit([PageCommit(NS, p, 0) for p in pages[at : at + 200]])
    finally:
        await store.close()
    merge = PageMerger(TokenCounter(), 0, 0)
    old = pages[n // 2]
    new = replace(merge(WriteRequest("append", old.page_id, PROV, content="deploy the config"), old), version=2)
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        for statement in sqlite_store.COMMIT_VIEW:
            conn.execute(statement)
        conn.set_progress_handler(count, 100)
        conn.execute(sqlite_store.COMMIT_ROW, sqlite_store._commit_row(PageCommit(NS, new, 1)))
        conn.set_progress_handler(None, 0)
        assert conn.execute("SELECT version FROM pages WHERE page_id = ?", (old.page_id,)).fetchone() == (2,)
    return steps


async def test_an_append_commits_in_as_many_steps_on_800_pages_as_on_100(tmp_path: Path) -> None:
    small = await _steps_of_one_append(tmp_path / "small.db", 100)
    large = await _steps_of_one_append(tmp_path / "large.db", 800)
    assert small > 0
    assert large < 1.5 * small, f"one commit: {small * 100} VM steps at 100 pages, {large * 100} at 800"
