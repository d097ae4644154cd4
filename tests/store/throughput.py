"""The throughput table of docs/scaling.md: page_write and assemble, SQLite vs PostgreSQL, 1 and 2 engine
processes on one database. Not a test (it takes a minute and its numbers depend on the machine); run it as

    .venv/bin/python -m tests.store.throughput postgresql://postgres@127.0.0.1:PORT/postgres
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

N_WRITES, N_ASSEMBLE = 300, 100
Result = tuple[float, float, list[float], list[float]]


def worker(db: str | Path, idx: int, out: Queue[Result], go: Event) -> None:
    """One engine process: its own session, N_WRITES committed creates, then N_ASSEMBLE assembles."""
    from clawvm_mcp.engine import ClawVMEngine
    from clawvm_mcp.journal import WriteRequest
    from clawvm_mcp.pages import Provenance
    from clawvm_mcp.store import open_store

    prov = Provenance("user", "ext:bench", 0)

    async def run() -> None:
        store = await open_store(db)
        engine = ClawVMEngine(store)
        sid = f"w{idx}"
        await engine.session_start(sid)
        go.wait()
        writes: list[float] = []
        t0 = time.perf_counter()
        for i in range(N_WRITES):
            start = time.perf_counter()
            content = f"note {i} about the quokka deploy plan number {i * 7}"
            result = await engine.write(
                sid, WriteRequest("create", f"ev/{i}", prov, "evidence", content, scope="session")
            )
            assert result.status == "committed", result
            writes.append(time.perf_counter() - start)
        t1 = time.perf_counter()
        assembles: list[float] = []
        for _ in range(N_ASSEMBLE):
            start = time.perf_counter()
            await engine.assemble(sid, budget=2000)
            assembles.append(time.perf_counter() - start)
        await engine.save_all()
        await store.close()
        out.put((t0, t1, writes, assembles))

    asyncio.run(run())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


def measure(db: str | Path, procs: int) -> tuple[float, float, float, float, float]:
    """(writes/s over all processes, write p50 and p99 ms, assemble p50 and p99 ms)."""
    ctx = mp.get_context("spawn")
    out: Queue[Result] = ctx.Queue()
    go = ctx.Event()
    workers = [ctx.Process(target=worker, args=(db, i, out, go)) for i in range(procs)]
    for w in workers:
        w.start()
    time.sleep(4)  # every process has opened its store and session: they start writing together
    go.set()
    results = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join()
    elapsed = max(r[1] for r in results) - min(r[0] for r in results)
    writes = [x for r in results for x in r[2]]
    assembles = [x for r in results for x in r[3]]
    return (
        len(writes) / elapsed,
        percentile(writes, 0.5),
        percentile(writes, 0.99),
        percentile(assembles, 0.5),
        percentile(assembles, 0.99),
    )


async def fresh_database(admin: str, name: str) -> str:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name


def main(admin: str) -> None:
    print("| store | processes | writes/s | write p50 ms | write p99 ms | assemble p50 ms | assemble p99 ms |")
    for kind in ("sqlite", "postgres"):
        for procs in (1, 2):
            if kind == "sqlite":
                db: str | Path = Path(tempfile.mkdtemp()) / "bench.db"
            else:
                db = asyncio.run(fresh_database(admin, f"clawvm_bench_{procs}_{os.getpid()}"))
            r = measure(db, procs)
            print(f"| {kind} | {procs} | {r[0]:.0f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
