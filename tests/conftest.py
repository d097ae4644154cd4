"""Shared fixtures: a real MCP client connected in process, in both protocol eras, over a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from clawvm_mcp.server import ServerConfig, create_server


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
