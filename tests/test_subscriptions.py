"""Live resource updates: a real client's ``subscriptions/listen`` stream hears a session's context and page URIs
after a commit in this server, after a boundary committed by another process (the ``lifecycle`` verb a hook
runs), and never hears another principal's sessions."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.subscriptions import Subscription
from mcp.shared.subscriptions import ResourceUpdated

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.server import ServerConfig, create_server, live
from clawvm_mcp.store import StoreError, open_store
from clawvm_mcp.store.base import ChangeFeed, JournalEntry, SessionCounters
from tests.conftest import PG_ENV
from tests.support.harness import PROV, HttpServer, call, child_env, start_http

pytestmark = pytest.mark.anyio
log = logging.getLogger(__name__)
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


# ---------------------------------------------------------------------------------- PostgreSQL: LISTEN/NOTIFY

PAGE2 = "clawvm://sessions/s1/pages/ev%2Flater"
PAGE3 = "clawvm://sessions/s1/pages/ev%2Fhook"


@asynccontextmanager
async def admin() -> AsyncIterator[Any]:
    """A connection to the test server's admin database: what an operator (or a failure) does to ours."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(os.environ[PG_ENV])
    try:
        yield conn
    finally:
        await conn.close()


def db_name(url: str | Path) -> str:
    return str(url).partition("?")[0].rsplit("/", 1)[1]


async def listen_pids(url: str | Path, listening: bool = False) -> list[int]:
    """The backends of ``url``'s database a change feed connected (pg_stat_activity, as an operator sees them);
    ``listening``: only those whose LISTEN is in place (their last statement was it, or a later ping)."""
    from clawvm_mcp.store.postgres import LISTEN_APPLICATION

    async with admin() as conn:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2"
            " AND (NOT $3 OR query LIKE 'LISTEN%' OR query = 'SELECT 1')",
            db_name(url),
            LISTEN_APPLICATION,
            listening,
        )
    return [int(r[0]) for r in rows]


async def feed_listening(url: str | Path, other_than: frozenset[int] = frozenset()) -> int:
    """Wait until a LISTEN backend other than ``other_than`` is up; its pid."""
    with anyio.fail_after(20):
        while not (pids := set(await listen_pids(url, listening=True)) - other_than):
            await anyio.sleep(0.05)
    await anyio.sleep(0.3)  # its revalidation look (one change_seq read) runs right after LISTEN
    return pids.pop()


async def kill_backend(pid: int) -> None:
    async with admin() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid) is True


@contextmanager
def long_fallback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The watcher's safety re-read at 60 s: an update heard sooner came through NOTIFY."""
    monkeypatch.setattr(live, "FALLBACK_SECONDS", 60.0)
    yield


async def lifecycle_flush(db: str | Path, session: str) -> dict[str, Any]:
    """``clawvm-mcp lifecycle --event flush`` as the separate process a harness hook is."""
    hook = [sys.executable, "-m", "clawvm_mcp", "lifecycle", "--db", str(db), "--session", session, "--event", "flush"]
    run = await anyio.run_process(hook, env=child_env(), check=False)
    assert run.returncode == 0, run.stderr
    out: dict[str, Any] = json.loads(run.stdout)
    return out


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PostgreSQL store: set {PG_ENV}=postgresql://...")
async def test_the_postgres_feed_hears_only_commits_and_revalidates_after_a_reconnect(store_db: str | Path) -> None:
    listener, writer = await open_store(store_db), await open_store(store_db)
    try:
        assert isinstance(listener, ChangeFeed)
        async with listener.change_feed() as feed:
            with anyio.fail_after(10):
                assert await feed.receive() is None  # connected: revalidate first
            claimed = await writer.claim_session("s1", "local", "default", None)
            assert claimed is not None
            with anyio.fail_after(5):
                assert await feed.receive() == await writer.change_seq() == claimed[0].seq

            before = await writer.change_seq()
            orphan = JournalEntry("nobody", "session:nobody", "p", "create", "staged", "boundary", {}, 0)
            with pytest.raises(StoreError):  # the journal row's session does not exist: the transaction rolls back
                await writer.stage(orphan)
            with anyio.move_on_after(1.0) as quiet:
                await feed.receive()
            assert quiet.cancelled_caught, "a rolled-back write was notified"
            assert await writer.change_seq() == before

            (pid,) = await listen_pids(store_db)
            await kill_backend(pid)
            with anyio.fail_after(15):
                assert await feed.receive() is None  # reconnected: whatever happened meanwhile is to re-read
            assert (await listen_pids(store_db))[0] != pid
            await writer.save_session(claimed[0], SessionCounters(hits=1))
            with anyio.fail_after(5):
                assert await feed.receive() == await writer.change_seq()
        assert await listen_pids(store_db) == []  # closing the feed closes its connection
    finally:
        await listener.close()
        await writer.close()


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PostgreSQL store: set {PG_ENV}=postgresql://...")
async def test_a_commit_by_another_process_is_announced_through_notify(
    store_db: str | Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with long_fallback(monkeypatch):
        async with Client(create_server(ServerConfig(db=store_db))) as client:
            await call(client, "session_start", session_id="s1")
            await call(client, "page_write", **note("s1", "from a hook", commit="boundary"))
            await feed_listening(store_db)
            async with client.listen(resource_subscriptions=[CONTEXT, PAGE]) as sub:
                assert (await lifecycle_flush(store_db, "s1"))["committed"] == 1
                exited = time.monotonic()
                assert await heard(sub, {CONTEXT, PAGE}, timeout=5.0) == {CONTEXT, PAGE}
                log.info("lifecycle exit to announcement: %.0f ms", (time.monotonic() - exited) * 1000)


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PostgreSQL store: set {PG_ENV}=postgresql://...")
async def test_commits_while_the_listen_connection_was_down_are_announced_after_it_reconnects(
    store_db: str | Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The LISTEN connection is killed and may not reconnect for a while; a commit by a separate engine meanwhile
    is announced once it does (the revalidation), and a later commit by another process through the new one.
    The outage, several failed reconnects, is logged once, and so is its end."""
    caplog.set_level(logging.WARNING, logger="clawvm_mcp.store.postgres")
    other = await open_store(store_db)  # its pool connection is open before connections are refused
    engine = ClawVMEngine(other)
    try:
        await announced_after_reconnect(store_db, engine, monkeypatch)
    finally:
        await engine.save_all()
        await other.close()
    feed_lines = [r.getMessage() for r in caplog.records if r.name == "clawvm_mcp.store.postgres"]
    assert [line.rsplit(": ", 1)[-1] for line in feed_lines] == [
        "the LISTEN connection was lost; reconnecting, then revalidating",
        "listening again; revalidating",
    ], feed_lines


async def announced_after_reconnect(store_db: str | Path, engine: ClawVMEngine, mp: pytest.MonkeyPatch) -> None:
    with long_fallback(mp):
        async with Client(create_server(ServerConfig(db=store_db))) as client:
            await call(client, "session_start", session_id="s1")
            pid = await feed_listening(store_db)
            async with client.listen(resource_subscriptions=[CONTEXT, PAGE2, PAGE3]) as sub:
                async with refusing_connections(store_db):
                    await kill_backend(pid)
                    with anyio.fail_after(10):
                        while await listen_pids(store_db):
                            await anyio.sleep(0.05)
                    await engine.session_start("s1")
                    later = WriteRequest("create", "ev/later", Provenance("user", "ext:test", 0), "evidence", "x")
                    assert (await engine.write("s1", later)).status == "committed"
                    assert await silent(sub, 1.5) == []  # the feed is down and the fallback is a minute away
                assert await heard(sub, {CONTEXT, PAGE2}, timeout=15.0) == {CONTEXT, PAGE2}

                await feed_listening(store_db, other_than=frozenset({pid}))
                hook = note("s1", "staged", commit="boundary") | {"page_id": "ev/hook"}
                assert (await call(client, "page_write", **hook))["status"] == "staged"
                assert PAGE3 not in await heard(sub, {CONTEXT}, timeout=5.0)
                assert (await lifecycle_flush(store_db, "s1"))["committed"] == 1
                assert PAGE3 in await heard(sub, {PAGE3}, timeout=5.0)


@asynccontextmanager
async def refusing_connections(url: str | Path) -> AsyncIterator[None]:
    """The database refuses new connections (ALLOW_CONNECTIONS false binds superusers too) until the block ends."""
    name = db_name(url)
    async with admin() as conn:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        yield
    finally:
        async with admin() as conn:
            await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
