"""The engine-level table of docs/scaling.md: page_write (commit now), read and assemble through
``ClawVMEngine`` in 1, 2 and 4 processes on one database, SQLite vs PostgreSQL, with no MCP or HTTP in between, so
what it shows is the store's and the engine's own cost (``clawvm-mcp bench scaling`` measures the same work through
real servers). Not a test (its numbers depend on the machine); run it as

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
from multiprocessing.synchronize import Barrier
from pathlib import Path

from clawvm_mcp.replay.bench_scaling import percentile_ms, pg_admin, pg_url

N_WRITES, N_READS, N_ASSEMBLE, WARMUP = 300, 300, 100, 10
PHASES = ("write", "read", "assemble")
Result = dict[str, list[float]]


def worker(db: str | Path, idx: int, out: Queue[Result], barrier: Barrier) -> None:
    """One engine process: its own session; warm-up, then each phase between barriers with the others."""
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

        async def write(prefix: str, i: int) -> None:
            content = f"note {i} about the quokka deploy plan number {i * 7}"
            req = WriteRequest("create", f"{prefix}/{i}", prov, "evidence", content, scope="session")
            result = await engine.write(sid, req)
            assert result.status == "committed", result

        async def read(i: int) -> None:
            result = await engine.read(sid, f"ev/{i % N_WRITES}", "full")
            assert result.outcome == "hit", result

        for i in range(WARMUP):
            await write("warm", i)
            await engine.assemble(sid, budget=2000)
        times: Result = {}
        for phase, calls in zip(PHASES, (N_WRITES, N_READS, N_ASSEMBLE), strict=True):
            await asyncio.to_thread(barrier.wait, 300)
            times[phase] = []
            for i in range(calls):
                start = time.perf_counter()
                if phase == "write":
                    await write("ev", i)
                elif phase == "read":
                    await read(i)
                else:
                    await engine.assemble(sid, budget=2000)
                times[phase].append(time.perf_counter() - start)
        await asyncio.to_thread(barrier.wait, 300)
        await engine.save_all()
        await store.close()
        out.put(times)

    asyncio.run(run())


def measure(db: str | Path, procs: int) -> dict[str, tuple[float, float, float]]:
    """Per phase: (calls/s over all processes, p50 ms, p99 ms); a phase lasts from its barrier to the next."""
    ctx = mp.get_context("spawn")
    out: Queue[Result] = ctx.Queue()
    barrier = ctx.Barrier(procs + 1)
    workers = [ctx.Process(target=worker, args=(db, i, out, barrier)) for i in range(procs)]
    for w in workers:
        w.start()
    stamps = []
    for _ in range(len(PHASES) + 1):
        barrier.wait(300)
        stamps.append(time.monotonic())
    results = [out.get(timeout=300) for _ in workers]
    for w in workers:
        w.join()
    figures = {}
    for k, phase in enumerate(PHASES):
        times = [t for r in results for t in r[phase]]
        figures[phase] = (
            len(times) / (stamps[k + 1] - stamps[k]),
            percentile_ms(times, 0.5),
            percentile_ms(times, 0.99),
        )
    return figures


def main(admin: str) -> None:
    print(f"load {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| store | processes | op | calls/s | x | p50 ms | x | p99 ms | x |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in ("sqlite", "postgres"):
        base: dict[str, tuple[float, float, float]] = {}
        for procs in (1, 2, 4):
            name = f"clawvm_throughput_{procs}_{os.getpid()}"
            if kind == "sqlite":
                db: str | Path = Path(tempfile.mkdtemp()) / "bench.db"
            else:
                asyncio.run(pg_admin(admin, f'CREATE DATABASE "{name}"'))
                db = pg_url(admin, name)
            try:
                figures = measure(db, procs)
            finally:
                if kind == "postgres":
                    asyncio.run(pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for phase, (rate, p50, p99) in figures.items():
                b = base.setdefault(phase, (rate, p50, p99))
                print(
                    f"| {kind} | {procs} | {phase} | {rate:.0f} | {rate / b[0]:.2f} | {p50:.2f} | {p50 / b[1]:.2f} "
                    f"| {p99:.2f} | {p99 / b[2]:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main(sys.argv[1])
