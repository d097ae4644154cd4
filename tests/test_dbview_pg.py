"""The PostgreSQL soundness check the crash, race and nemesis suites rely on (tests/support/dbview.py
``integrity``, their stand-in for ``PRAGMA integrity_check``) finds what it claims to find: a check that cannot
fail would let those suites pass for nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import open_store
from tests.support import dbview

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)


@pytest.fixture
def store_kind() -> str:  # tests/conftest.py's store_db, on PostgreSQL only (skipped without CLAWVM_TEST_PG)
    if not os.environ.get(dbview.PG_ENV):
        pytest.skip(f"set {dbview.PG_ENV}=postgresql://... (.ci/run starts a server and sets it)")
    return "postgres"


@pytest.fixture
async def url(store_db: str | Path) -> AsyncIterator[str]:
    assert isinstance(store_db, str)
    store = await open_store(store_db)  # the schema, as a server leaves it
    await store.close()
    yield store_db


async def _connect(url: str) -> Any:
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(url)


async def test_a_sound_database_is_ok_and_needs_amcheck(url: str) -> None:
    assert "amcheck is not installed" in await dbview.integrity(url)
    await dbview.prepare(url)
    assert await dbview.integrity(url) == "ok"


async def test_a_transaction_left_open_is_found(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await dbview.prepare(url)
    monkeypatch.setattr(dbview, "SETTLE_SECONDS", 0.3)
    conn = await _connect(url)
    try:
        await conn.execute("BEGIN")
        await conn.execute("UPDATE clock SET seq = seq + 1")  # holds the writers' lock, as a stopped server would
        found = await dbview.integrity(url)
    finally:
        await conn.close()
    assert "transaction left open" in found and "idle in transaction" in found, found
    assert await dbview.integrity(url) == "ok"  # its backend gone, nothing is left


@pytest.mark.parametrize(
    "damage, finding",
    [
        ("UPDATE pages SET version = version + 1", "row disagrees with its body"),
        ("UPDATE pages SET seq = (SELECT seq FROM clock) + 5", "pages has a row at seq"),
        ("UPDATE journal SET version = NULL", "has no version"),
    ],
)
async def test_a_broken_row_invariant_is_found(url: str, damage: str, finding: str) -> None:
    await dbview.prepare(url)
    store = await open_store(url)
    try:
        engine = ClawVMEngine(store)
        await engine.session_start("s", project_id="p")
        await engine.write("s", WriteRequest("create", "conv/0", PROV, "conversation", "one"))
        assert await dbview.integrity(url) == "ok"
    finally:
        await store.close()
    conn = await _connect(url)
    try:
        await conn.execute(damage)
    finally:
        await conn.close()
    assert finding in await dbview.integrity(url)
