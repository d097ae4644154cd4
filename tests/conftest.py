"""Shared fixtures: a real MCP client connected in process, in both protocol eras, over a real SQLite file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from clawvm_mcp.server import ServerConfig, create_server
from clawvm_mcp.store import SQLiteStore
from tests.support.dbview import PG_ENV, fresh_postgres  # PG_ENV: a server where tests may create databases


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run the multi-process nemesis (tests/test_nemesis.py) for this many seconds instead of its CI length",
    )


@pytest.fixture(autouse=True)
def _stop_unclosed_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aiosqlite's worker thread is not a daemon: a test that fails before ``store.close()`` (its traceback keeps
    the store alive) would leave pytest hanging at exit instead of reporting the failure. Stop each such thread
    when its test ends."""
    opened: list[SQLiteStore] = []
    open_store = SQLiteStore.open

    async def tracking_open(path: str | Path, timeout: float | None = None) -> SQLiteStore:
        store = await open_store(path, timeout)
        opened.append(store)
        return store

    monkeypatch.setattr(SQLiteStore, "open", tracking_open)
    yield
    for store in opened:
        store._conn.stop()  # aiosqlite's public stop(): a no-op for a connection already closed


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store a store-level test runs on: SQLite always, PostgreSQL when CLAWVM_TEST_PG names a server."""
    kind = str(request.param)
    if kind == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL store: set {PG_ENV}=postgresql://... (.ci/run starts a server and sets it)")
    return kind


@pytest.fixture
async def store_db(store_kind: str, tmp_path: Path) -> AsyncIterator[str | Path]:
    """A fresh, empty database of ``store_kind`` for one test, given as ``open_store`` takes it (a file path, or
    the URL of a new PostgreSQL database dropped when the test ends)."""
    if store_kind == "sqlite":
        yield tmp_path / "store.db"
        return
    async with fresh_postgres() as url:
        yield url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "memory.db"


@pytest.fixture
async def client(db_path: Path, mode: str) -> AsyncIterator[Client]:
    async with Client(create_server(ServerConfig(db=db_path)), mode=mode) as c:  # type: ignore[arg-type]
        yield c


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed and return its structured result."""
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, /, **args: Any) -> str:
    """Call a tool that must fail with a model-facing error; return its text."""
    result = await client.call_tool(tool, args)
    assert result.is_error, result.structured_content
    text = getattr(result.content[0], "text", "")
    assert isinstance(text, str)
    return text


PROV = {"source": "user", "ref": "ext:chat", "turn": 0}
Caller = Callable[..., Any]
