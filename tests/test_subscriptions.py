"""Live resource updates: a real client's ``subscriptions/listen`` stream hears a session's context and page URIs
after a commit in this server, after a boundary committed by another process (the ``lifecycle`` verb a hook
runs), and never hears another principal's sessions."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import Subscription
from mcp.shared.subscriptions import ResourceUpdated

from clawvm_mcp.server import ServerConfig, create_server
from tests.support.harness import PROV, HttpServer, call, child_env, start_http

pytestmark = pytest.mark.anyio
CONTEXT = "clawvm://sessions/s1/context"
PAGE = "clawvm://sessions/s1/pages/ev%2Fnote"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    async with Client(create_server(ServerConfig(db=tmp_path / "live.db"))) as c:
        yield c


def note(session: str, text: str, commit: str = "now") -> dict[str, Any]:
    return {
        "session_id": session,
        "page_id": "ev/note",
        "op": "create",
        "type": "evidence",
        "content": text,
        "provenance": PROV,
        "commit": commit,
    }


async def heard(sub: Subscription, want: set[str], timeout: float = 10.0) -> set[str]:
    """The URIs announced until every one of ``want`` was heard (or the timeout passed)."""
    got: set[str] = set()
    with anyio.move_on_after(timeout):
        async for event in sub:
            if isinstance(event, ResourceUpdated):
                got.add(event.uri)
            if want <= got:
                break
    return got


async def silent(sub: Subscription, seconds: float) -> list[str]:
    got: list[str] = []
    with anyio.move_on_after(seconds):
        async for event in sub:
            got.append(getattr(event, "uri", repr(event)))  # noqa: PERF401 - a comprehension would lose them on timeout
    return got


async def test_a_commit_announces_the_context_and_the_page(client: Client) -> None:
    await call(client, "session_start", session_id="s1")
    async with client.listen(resource_subscriptions=[CONTEXT, PAGE]) as sub:
        assert set(sub.honored.resource_subscriptions or []) == {CONTEXT, PAGE}
        assert (await call(client, "page_write", **note("s1", "first")))["status"] == "committed"
        assert await heard(sub, {CONTEXT, PAGE}) == {CONTEXT, PAGE}
        text = (await client.read_resource(PAGE)).contents[0]
        assert "first" in str(text)


async def test_a_staged_write_is_announced_at_its_boundary(client: Client) -> None:
    await call(client, "session_start", session_id="s1")
    async with client.listen(resource_subscriptions=[PAGE]) as sub:
        assert (await call(client, "page_write", **note("s1", "later", commit="boundary")))["status"] == "staged"
        await call(client, "lifecycle", session_id="s1", event="flush")
        assert await heard(sub, {PAGE}) == {PAGE}


async def test_a_commit_by_another_process_is_announced(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with Client(create_server(ServerConfig(db=db))) as client:
        await call(client, "session_start", session_id="s1")
        await call(client, "page_write", **note("s1", "from a hook", commit="boundary"))
        async with client.listen(resource_subscriptions=[CONTEXT, PAGE]) as sub:
            hook = [sys.executable, "-m", "clawvm_mcp", "lifecycle", "--db", str(db), "--session", "s1"]
            run = await anyio.run_process([*hook, "--event", "flush"], env=child_env(), check=False)
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["committed"] == 1
            assert await heard(sub, {CONTEXT, PAGE}) == {CONTEXT, PAGE}


# ---------------------------------------------------------------------------------------- two principals, HTTP

ALICE = "alice-" + "a" * 40
BOB = "bob-" + "b" * 40


@pytest.fixture
def http(tmp_path: Path) -> Iterator[HttpServer]:
    tokens = [
        {"sha256": hashlib.sha256(t.encode()).hexdigest(), "principal": p, "grants": {"proj": "write"}}
        for t, p in ((ALICE, "alice"), (BOB, "bob"))
    ]
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": tokens}))
    srv = start_http(
        tmp_path / "h.db", tmp_path / "h.log", token=None, extra=["--tokens", str(tmp_path / "tokens.json")]
    )
    try:
        yield srv
    finally:
        srv.stop()


async def test_only_the_owner_hears_its_sessions(http: HttpServer) -> None:
    async with http.client(ALICE) as alice, http.client(BOB) as bob:
        await call(alice, "session_start", session_id="s1", project_id="proj")
        async with (
            alice.listen(resource_subscriptions=[CONTEXT, PAGE]) as mine,
            bob.listen(resource_subscriptions=[CONTEXT, PAGE]) as theirs,
        ):
            assert set(theirs.honored.resource_subscriptions or []) == {CONTEXT, PAGE}  # honored, never delivered
            await call(alice, "page_write", **note("s1", "private"))
            assert await heard(mine, {CONTEXT, PAGE}) == {CONTEXT, PAGE}
            assert await silent(theirs, 1.5) == []  # the watcher polled at least twice meanwhile


async def test_resource_subscriptions_are_advertised(client: Client) -> None:
    """The server claims resources.subscribe now that it publishes, and no list_changed it never sends."""
    caps = client.server_capabilities
    assert caps.resources is not None and caps.resources.subscribe is True
