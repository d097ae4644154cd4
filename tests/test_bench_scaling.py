"""``clawvm-mcp bench scaling`` at a tiny size, so the measurement behind docs/scaling.md cannot rot: real HTTP
servers, real client processes, a real SQLite file and (with CLAWVM_TEST_PG) a real PostgreSQL database. Asserts
the shape and the bookkeeping (every call made and checked, ratios against the one-server row, the databases it
created gone), never a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from clawvm_mcp.replay.bench_scaling import PHASES, Plan, render, run

from .conftest import PG_ENV

TINY = Plan(writes=3, reads=4, assembles=2, warmup=1)


async def leftover_databases(admin: str) -> list[str]:
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    conn = await asyncpg.connect(admin)
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"clawvm_scaling_{os.getpid()}_%"
        )
    finally:
        await conn.close()
    return [str(r["datname"]) for r in rows]


def test_one_and_two_servers_on_each_store(store_kind: str) -> None:
    admin = os.environ.get(PG_ENV)
    rows = run([store_kind], [1, 2], TINY, admin)
    assert [(r.store, r.servers, r.op) for r in rows] == [(store_kind, n, op) for n in (1, 2) for op in PHASES]
    for r in rows:
        assert r.calls == r.servers * TINY.calls(r.op)  # every client made every call, each checked by the client
        assert 0 < r.p50_ms <= r.p99_ms and r.seconds > 0
        assert set(r.cpu) == {"servers", "clients", "machine"} | ({"postgres"} if store_kind == "postgres" else set())
    table = render(rows).splitlines()
    assert len(table) == 2 + len(rows)
    one_server = [line for line in table[2:] if line.startswith(f"| {store_kind} | 1 |")]
    assert len(one_server) == len(PHASES)
    for line in one_server:  # the baseline's ratios: throughput, p50, p99, and per core-s (none when no tick fell)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert (cells[4], cells[6], cells[8]) == ("1.00", "1.00", "1.00") and cells[14] in ("1.00", "-")
    sampled = [set(r.backends) for r in rows if r.backends]
    if store_kind == "sqlite":
        assert sampled == []
    else:  # pg_stat_activity sampled while the phases ran
        assert sampled and all(keys == {"waiting_on_lock", "idle_in_transaction"} for keys in sampled)
        assert admin is not None
        assert anyio.run(leftover_databases, admin) == []


def test_the_cli_writes_json_and_refuses_postgres_without_a_server(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, "-m", "clawvm_mcp", "bench", "scaling", "--store", "sqlite", "--processes", "1"]
    tiny = ["--writes", "2", "--reads", "2", "--assembles", "1", "--warmup", "1"]
    done = subprocess.run([*cmd, *tiny, "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [line.split(" | ")[2] for line in done.stdout.splitlines() if line.startswith("| sqlite |")] == list(PHASES)
    figures = json.loads(out.read_text())
    assert [(f["op"], f["calls"]) for f in figures] == [("page_write", 2), ("page_read", 2), ("context_assemble", 1)]
    refused = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "bench", "scaling", "--store", "postgres"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr.strip() == "Error: --store postgres needs --pg postgresql://USER@HOST:PORT/DB"


@pytest.mark.parametrize("bad", ["0", "x"])
def test_bad_counts_are_refused(bad: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "bench", "scaling", "--processes", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--processes" in done.stderr
