"""Several processes opening one fresh database at the same instant (N servers started together on a new file or
database): every one of them opens it and writes to it. Real processes, released together by one event. (On SQLite
all but one failed with "table sessions already exists": each read the schema version before taking the write
lock and ran the migration again.)"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

pytestmark = pytest.mark.anyio
PROCESSES = 4


def opener(db: str, go: Event, out: Queue[str]) -> None:
    """Wait for the others, open the store, write one session, report ``ok`` or the error."""
    import anyio

    from clawvm_mcp.store import open_store

    async def run() -> None:
        store = await open_store(db)
        try:
            await store.claim_session(f"s{mp.current_process().pid}", "p", "default", None)
        finally:
            await store.close()

    go.wait()
    try:
        anyio.run(run)
        out.put("ok")
    except Exception as exc:  # the report is the test's evidence
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("trial", range(3))
async def test_processes_opening_a_fresh_database_together_all_open_it(store_db: str | Path, trial: int) -> None:
    ctx = mp.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=opener, args=(str(store_db), go, out)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    go.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * PROCESSES, results
