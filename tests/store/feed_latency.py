"""The live-updates figures of docs/reliability.md: how soon a listener hears another process's commit through
PostgreSQL NOTIFY next to the 0.5 s change-sequence poll (same run, same database), how often the watcher looks
while another process commits flat out (spaced looks against one look per wake-up), and what the NOTIFY adds to a
write transaction. Not a test (about four minutes; the numbers depend on the machine); run it as

    .venv/bin/python -m tests.store.feed_latency postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

from tests.store.throughput import fresh_database

N_COMMITS = 30  # per variant, 0.8-1.0 s apart: a polled announcement (up to 0.5 s late) lands before the next
N_WRITES = 300  # per round of the write-cost part
ROUNDS = 5


def writer(db: str, out: Queue[tuple[float, float]], go: Event) -> None:
    """Another process: the session's owner committing one page at a time, sending when each write started and
    when it was acknowledged."""
    from clawvm_mcp.engine import ClawVMEngine
    from clawvm_mcp.journal import WriteRequest
    from clawvm_mcp.pages import Provenance
    from clawvm_mcp.store import open_store

    async def run() -> None:
        store = await open_store(db)
        engine = ClawVMEngine(store)
        await engine.session_start("s1")
        go.wait()
        for i in range(N_COMMITS):
            req = WriteRequest("create", f"ev/{i}", Provenance("user", "ext:bench", 0), "evidence", f"note {i}")
            started = time.time()
            assert (await engine.write("s1", req)).status == "committed"
            out.put((started, time.time()))
            await asyncio.sleep(0.8 + random.random() * 0.2)
        await engine.save_all()
        await store.close()

    asyncio.run(run())


def listener(db: str, ready: Event, stop: Event) -> None:
    """Another process holding a change feed open and draining it, as a server's watcher does."""
    from clawvm_mcp.store import open_store
    from clawvm_mcp.store.base import ChangeFeed

    async def run() -> None:
        store = await open_store(db)
        assert isinstance(store, ChangeFeed)
        async with store.change_feed() as feed:

            async def drain() -> None:
                while True:
                    await feed.receive()

            task = asyncio.create_task(drain())
            await asyncio.sleep(0.5)
            ready.set()
            await asyncio.to_thread(stop.wait)
            task.cancel()
        await store.close()  # type: ignore[attr-defined]

    asyncio.run(run())


class NoFeed:
    """The store without its change feed: the watcher then polls, as it does on SQLite."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "change_feed":
            raise AttributeError(name)
        return getattr(self._store, name)


async def announce_latency(db: str, poll: bool) -> list[float]:
    """Milliseconds from each commit's acknowledgement in the writer process to the listener's first event after
    the write started."""
    import anyio
    from mcp import Client
    from mcp.shared.subscriptions import ResourceUpdated

    from clawvm_mcp.server import ServerConfig, app, create_server, live

    real_watch = live.watch
    if poll:
        app.watch = lambda store, bus, check: real_watch(NoFeed(store), bus, check)  # type: ignore[assignment]
    events: list[float] = []
    ctx = mp.get_context("spawn")
    out: Queue[tuple[float, float]] = ctx.Queue()
    go = ctx.Event()
    try:
        async with Client(create_server(ServerConfig(db=db))) as client:
            await client.call_tool("session_start", {"session_id": "s1"})
            async with client.listen(resource_subscriptions=["clawvm://sessions/s1/context"]) as sub:

                async def collect() -> None:
                    async for event in sub:
                        if isinstance(event, ResourceUpdated):
                            events.append(time.time())  # noqa: PERF401 - appended as they arrive

                proc = ctx.Process(target=writer, args=(db, out, go))
                proc.start()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(collect)
                    await anyio.sleep(3)  # the writer has opened its store and claimed the session
                    events.clear()
                    go.set()
                    await anyio.to_thread.run_sync(proc.join)
                    await anyio.sleep(1)
                    tg.cancel_scope.cancel()
    finally:
        app.watch = real_watch
    commits = [out.get(timeout=5) for _ in range(N_COMMITS)]
    latencies = []
    for i, (started, acked) in enumerate(commits):
        end = commits[i + 1][0] if i + 1 < len(commits) else float("inf")
        heard = [e for e in events if started <= e < end]
        assert heard, f"commit {i} was never announced"
        latencies.append((heard[0] - acked) * 1000)  # below 0 when the event beat the writer's own acknowledgement
    return latencies


async def write_cost(db: str) -> dict[str, list[float]]:
    """Milliseconds per write transaction (a tool-call record: one row plus the session touch), interleaved rounds:
    the clock statement without NOTIFY, with it and nobody listening, with it and another process's feed
    listening."""
    from clawvm_mcp.store import open_store, postgres
    from clawvm_mcp.store.base import ToolCall

    store = await open_store(db)
    assert isinstance(store, postgres.PostgresStore)
    await store.claim_session("w", "local", "default", None)
    ctx = mp.get_context("spawn")
    notify = postgres.MOVE_CLOCK
    silent = "UPDATE clock SET seq = seq + 1 WHERE id = 1 RETURNING seq, $1::text"
    out: dict[str, list[float]] = {"no NOTIFY": [], "NOTIFY, no listener": [], "NOTIFY, 1 listener": []}
    n = 0

    async def rounds(statement: str, key: str) -> None:
        nonlocal n
        postgres.MOVE_CLOCK = statement
        start = time.perf_counter()
        for _ in range(N_WRITES):
            n += 1
            await store.add_tool_call(ToolCall("w", f"c{n}", "sig", "Read", "{}", "", 0, True))
        out[key].append((time.perf_counter() - start) / N_WRITES * 1000)

    try:
        for _ in range(ROUNDS):
            await rounds(silent, "no NOTIFY")
            await rounds(notify, "NOTIFY, no listener")
            ready, stop = ctx.Event(), ctx.Event()
            proc = ctx.Process(target=listener, args=(db, ready, stop))
            proc.start()
            await asyncio.to_thread(ready.wait, 30)
            await rounds(notify, "NOTIFY, 1 listener")
            stop.set()
            await asyncio.to_thread(proc.join)
    finally:
        postgres.MOVE_CLOCK = notify
        await store.close()
    return out


def storm_writer(db: str, seconds: float, out: Queue[int]) -> None:
    """Another process committing as fast as it can for ``seconds``; sends how many commits it made."""
    from clawvm_mcp.store import open_store
    from clawvm_mcp.store.base import ToolCall

    async def run() -> None:
        store = await open_store(db)
        await store.claim_session("storm", "local", "default", None)
        n, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            n += 1
            await store.add_tool_call(ToolCall("storm", f"c{n}", "sig", "Read", "{}", "", 0, True))
        await store.close()  # type: ignore[attr-defined]
        out.put(n)

    asyncio.run(run())


class CountingStore:
    """The real store, counting the watcher's looks (one change_seq read each)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.looks = 0

    async def change_seq(self) -> int:
        self.looks += 1
        return int(await self._store.change_seq())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def storm_looks(db: str, spacing: float, seconds: float = 4.0) -> tuple[float, float]:
    """(commits/s by another process, the watcher's looks/s) while that process commits flat out."""
    from clawvm_mcp.server import live
    from clawvm_mcp.store import open_store

    live.SPACING_SECONDS = spacing
    store = CountingStore(await open_store(db))
    ctx = mp.get_context("spawn")
    out: Queue[int] = ctx.Queue()
    task = asyncio.create_task(live.watch(store, live.PrincipalBus(), lambda _p, _q: True))  # type: ignore[arg-type]
    await asyncio.sleep(1)
    proc = ctx.Process(target=storm_writer, args=(db, seconds, out))
    proc.start()
    await asyncio.to_thread(proc.join)
    commits = out.get(timeout=5)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await store.close()
    return commits / seconds, store.looks / seconds  # the writer's start-up adds a few idle looks at most


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {statistics.median(ordered):.1f}, p95 {p95:.1f}, max {ordered[-1]:.1f}"


async def drop_database(admin: str, name: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main(admin: str) -> None:
    name = f"clawvm_feed_{os.getpid()}"  # one database, made fresh for each part and dropped at the end
    try:
        for poll in (False, True, False, True):
            db = asyncio.run(fresh_database(admin, name))
            label = "0.5 s poll" if poll else "NOTIFY"
            print(f"announce latency, {label}: ms {summary(asyncio.run(announce_latency(db, poll)))}", flush=True)
        for spacing in (0.05, 0.0, 0.05, 0.0):
            db = asyncio.run(fresh_database(admin, name))
            commits, looks = asyncio.run(storm_looks(db, spacing))
            print(f"commit storm, looks {spacing * 1000:.0f} ms apart: {commits:.0f} commits/s, {looks:.1f} looks/s")
        db = asyncio.run(fresh_database(admin, name))
        costs = asyncio.run(write_cost(db))
        base = statistics.median(costs["no NOTIFY"])
        for key, values in costs.items():
            med = statistics.median(values)
            print(f"write, {key}: {med:.3f} ms (rounds {min(values):.3f}-{max(values):.3f}), x{med / base:.2f}")
    finally:
        asyncio.run(drop_database(admin, name))


if __name__ == "__main__":
    main(sys.argv[1])
