"""``clawvm-mcp bench scaling``: 1, 2 and 4 ``serve --http`` processes on one database, each driven by its own MCP
client process, with throughput and p50/p99 of page_write (commit now), page_read and context_assemble as ratios
to the one-process row of the same store in the same run.

Method (docs/scaling.md): for each store (a fresh SQLite file; a fresh PostgreSQL database created on the server
``--pg`` names, dropped afterwards) and each process count N, N real servers start on N loopback ports, then N
client processes (spawned, one per server, one call in flight each), each its own session with the same work. A
client warms up (a few calls of each kind, untimed), then every client and the parent meet at a barrier before
each phase (all writes, then all reads of its own pages, then all assemblies) so all start together; a phase's
throughput is all clients' calls over the wall time between its two barriers (the slowest client ends it). The
parent samples the CPU time of the servers, the clients, the database's backends and the whole machine at each
barrier, so the table says where the cores went, and on PostgreSQL samples pg_stat_activity through the phases, so
it says how long writers queue behind the clock row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

PHASES = ("page_write", "page_read", "context_assemble")
PROJECT = "bench"
PROV = {"source": "user", "ref": "ext:bench", "turn": 0}
BARRIER_SECONDS = 600.0  # a client that dies breaks the barrier; none waits longer than this for the others
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Plan:
    """Calls per client process: the same for every process and every N."""

    writes: int = 200
    reads: int = 200
    assembles: int = 100
    warmup: int = 10
    budget: int = 2000

    def calls(self, phase: str) -> int:
        return {"page_write": self.writes, "page_read": self.reads, "context_assemble": self.assembles}[phase]


@dataclass(frozen=True, slots=True)
class Row:
    """One phase of one (store, N) configuration, over all its client processes."""

    store: str
    servers: int
    op: str
    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu: dict[str, float] = field(default_factory=dict)  # cores busy on average: servers, clients, postgres, machine
    backends: dict[str, float] = field(default_factory=dict)  # PostgreSQL: backends waiting on a lock, in a txn

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def per_core_second(self) -> float:
        """Calls per CPU second of our processes (servers, clients, the database's backends): on a machine shared
        with other work, the figure that does not depend on how much of the cores that work left us."""
        ours = self.cpu["servers"] + self.cpu["clients"] + self.cpu.get("postgres", 0.0)
        return self.per_second / ours if ours > 0 else 0.0


# ------------------------------------------------------------------------------------------- the client side


def client_main(url: str, token: str, idx: int, plan: Plan, barrier: Barrier, out: Queue[Any]) -> None:
    """One client process (the spawn target): its session's warm-up, then each phase between barriers."""
    try:
        out.put(asyncio.run(_client(url, token, idx, plan, barrier)))
    except BaseException:
        barrier.abort()
        out.put({"client": idx, "error": traceback.format_exc()})


async def _client(url: str, token: str, idx: int, plan: Plan, barrier: Barrier) -> dict[str, Any]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    session = f"scaling-{idx}"
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with Client(streamable_http_client(url, http_client=http)) as client:

        async def call(tool: str, **args: Any) -> dict[str, Any]:
            result = await client.call_tool(tool, {"session_id": session, **args})
            if result.is_error or result.structured_content is None:
                text = " ".join(str(getattr(block, "text", "")) for block in result.content)
                raise RuntimeError(f"{tool} failed: {text}")
            out: dict[str, Any] = result.structured_content
            return out

        def text(prefix: str, i: int) -> str:
            return f"{prefix} note {i} of client {idx}: the quokka deploy plan number {i * 7}"

        async def create(prefix: str, i: int) -> None:
            args = {"page_id": f"{prefix}/{i}", "op": "create", "provenance": PROV, "type": "evidence"}
            got = await call("page_write", **args, content=text(prefix, i), scope="session", commit="now")
            if got["status"] != "committed" or got["version"] != 1:
                raise RuntimeError(f"page_write {prefix}/{i}: {got}")

        async def read(prefix: str, i: int, of: int) -> None:
            got = await call("page_read", page_id=f"{prefix}/{i % of}")
            if got["outcome"] != "hit" or got["page"]["text"] != text(prefix, i % of):
                raise RuntimeError(f"page_read {prefix}/{i % of}: {got}")

        async def assemble() -> None:
            got = await call("context_assemble", budget=plan.budget)
            if got["tokens_used"] <= 0 or got["tokens_used"] > plan.budget:
                raise RuntimeError(f"context_assemble: {got['tokens_used']} tokens of {plan.budget}")

        async def meet() -> None:
            await asyncio.to_thread(barrier.wait, BARRIER_SECONDS)

        await call("session_start", project_id=PROJECT, budget=plan.budget * 2)
        for i in range(plan.warmup):  # untimed: connections, caches, the first statements of each kind
            await create("warm", i)
        for i in range(plan.warmup):
            await read("warm", i, plan.warmup)
            await assemble()
        await meet()  # ready: the parent finds the database's backends
        latencies: dict[str, list[float]] = {}
        for phase in PHASES:
            await meet()
            times: list[float] = []
            for i in range(plan.calls(phase)):
                start = time.perf_counter()
                if phase == "page_write":
                    await create("ev", i)
                elif phase == "page_read":
                    await read("ev", i, plan.writes)
                else:
                    await assemble()
                times.append(time.perf_counter() - start)
            latencies[phase] = times
        await meet()  # the last phase's end
    return {"client": idx, "latencies": latencies}


# ------------------------------------------------------------------------------------------- the server side


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def start_server(db: str | Path, token: str, log: Path, timeout: float = 60.0) -> Server:
    """``clawvm-mcp serve --http`` on a free loopback port; returns once the port accepts connections."""
    port = free_port()
    env = {**os.environ, "CLAWVM_TOKEN": token, "CLAWVM_LOG": "WARNING"}
    args = [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(db), "--http", "--port", str(port)]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env)
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (ours or a PostgreSQL backend on this host); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle (ours and everyone else's work), from /proc/stat."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK  # user..steal, less idle and iowait


class CpuWatch:
    """CPU seconds per group of processes between barriers (a backend first seen later counts from then), and
    the whole machine's: on a shared machine that says how much of it the other work took."""

    def __init__(self) -> None:
        self.groups: dict[str, set[int]] = {}
        self.last: dict[int, float] = {}
        self.machine = machine_busy_seconds()

    def sample(self, groups: dict[str, list[int]]) -> dict[str, float]:
        used: dict[str, float] = {}
        for name, pids in groups.items():
            self.groups.setdefault(name, set()).update(pids)
        for name, seen in self.groups.items():
            total = 0.0
            for pid in seen:
                now = cpu_seconds(pid)
                if now is None:
                    continue
                total += now - self.last.get(pid, now)
                self.last[pid] = now
            used[name] = total
        now = machine_busy_seconds()
        used["machine"], self.machine = now - self.machine, now
        return used


# ------------------------------------------------------------------------------------------- databases


def asyncpg_module() -> Any:
    """asyncpg, from the ``postgres`` extra: only ``--pg`` needs it."""
    try:
        import asyncpg  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise RuntimeError(f"--pg needs asyncpg ({exc}); install it with: pip install 'clawvm-mcp[postgres]'") from exc
    return asyncpg


def pg_url(admin: str, name: str) -> str:
    base, _, query = admin.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


async def pg_admin(admin: str, sql: str) -> None:
    conn = await asyncpg_module().connect(admin)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def pg_backends(admin: str, name: str) -> list[int]:
    conn = await asyncpg_module().connect(admin)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


class BackendSampler(threading.Thread):
    """Samples the database's backends in pg_stat_activity every ``every`` seconds: how many wait on a lock (a
    writer queued behind the clock row) and how many sit in an open transaction between statements (the holder of
    the clock waiting for its server's next statement: the round trips a commit makes while it serializes the
    others)."""

    def __init__(self, admin: str, name: str, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.admin, self.name, self.every = admin, name, every
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()
        self.failed: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._sample())
        except BaseException as exc:  # reported by between(); a sampler that broke must not pass for "no waits"
            self.failed = exc

    async def _sample(self) -> None:
        conn = await asyncpg_module().connect(self.admin)
        try:
            while not self.done.is_set():
                rows = await conn.fetch(
                    "SELECT wait_event_type, state FROM pg_stat_activity WHERE datname = $1", self.name
                )
                locked = sum(1 for r in rows if r["wait_event_type"] == "Lock")
                idle = sum(1 for r in rows if r["state"] == "idle in transaction")
                self.samples.append((time.monotonic(), locked, idle))
                await asyncio.sleep(self.every)
        finally:
            await conn.close()

    def between(self, start: float, end: float) -> dict[str, float]:
        if self.failed is not None:
            raise RuntimeError(f"sampling pg_stat_activity failed: {self.failed!r}")
        inside = [(locked, idle) for t, locked, idle in self.samples if start <= t < end]
        if not inside:
            return {}
        return {
            "waiting_on_lock": sum(x[0] for x in inside) / len(inside),
            "idle_in_transaction": sum(x[1] for x in inside) / len(inside),
        }


# ------------------------------------------------------------------------------------------- one configuration


def percentile_ms(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least ``q`` of the samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def measure(store: str, db: str | Path, servers: int, plan: Plan, work: Path, pg: tuple[str, str] | None) -> list[Row]:
    """N servers on ``db``, one client process each; ``pg`` is (admin URL, database name) to find its backends."""
    token = secrets.token_urlsafe(24)
    ctx = mp.get_context("spawn")
    out: Queue[Any] = ctx.Queue()
    barrier = ctx.Barrier(servers + 1)
    running: list[Server] = []
    clients: list[Any] = []
    try:
        for i in range(servers):  # one by one, so a failure to start still stops those already running
            running.append(  # noqa: PERF401
                start_server(db, token, work / f"server-{store}-{servers}-{i}.log")
            )
        for i, server in enumerate(running):
            proc = ctx.Process(target=client_main, args=(server.url, token, i, plan, barrier, out), daemon=True)
            proc.start()
            clients.append(proc)
        watch = CpuWatch()

        def groups() -> dict[str, list[int]]:
            found = {"servers": [s.proc.pid for s in running], "clients": [int(c.pid) for c in clients]}
            if pg is not None:
                found["postgres"] = asyncio.run(pg_backends(*pg))
            return found

        sampler = None if pg is None else BackendSampler(*pg)
        try:
            barrier.wait(BARRIER_SECONDS)  # ready
            if sampler is not None:
                sampler.start()
            watch.sample(groups())
            stamps: list[float] = []
            cpu: list[dict[str, float]] = []
            for _ in range(len(PHASES) + 1):
                barrier.wait(BARRIER_SECONDS)
                stamps.append(time.monotonic())
                cpu.append(watch.sample(groups()))
        except Exception:
            barrier.abort()
            errors = [r["error"] for r in drain(out, len(clients), 5.0) if "error" in r]
            raise RuntimeError("a client failed:\n" + ("\n".join(errors) or "(no report)")) from None
        finally:
            if sampler is not None and sampler.is_alive():
                sampler.done.set()
                sampler.join(10)
        results = drain(out, len(clients), 60.0)
        failed = [r["error"] for r in results if "error" in r]
        if failed or len(results) != servers:
            raise RuntimeError("a client failed:\n" + "\n".join(failed))
        rows = []
        for k, phase in enumerate(PHASES):
            times = [t for r in results for t in r["latencies"][phase]]
            seconds = stamps[k + 1] - stamps[k]
            busy = {name: used / seconds for name, used in cpu[k + 1].items()}
            rows.append(
                Row(
                    store,
                    servers,
                    phase,
                    len(times),
                    seconds,
                    percentile_ms(times, 0.5),
                    percentile_ms(times, 0.99),
                    busy,
                    {} if sampler is None else sampler.between(stamps[k], stamps[k + 1]),
                )
            )
        return rows
    finally:
        for proc in clients:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join(10)
        for server in running:
            server.stop()


def drain(out: Queue[Any], n: int, timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        try:
            got.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
        except Exception:
            break
    return got


def run(stores: Sequence[str], processes: Sequence[int], plan: Plan, pg_admin_url: str | None) -> list[Row]:
    """Every (store, N) in order, each on a fresh database; a PostgreSQL database is dropped when its run ends."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="clawvm-scaling-") as tmp:
        work = Path(tmp)
        for store in stores:
            for n in processes:
                if store == "sqlite":
                    rows += measure(store, work / f"scaling-{n}.db", n, plan, work, None)
                    continue
                if pg_admin_url is None:
                    raise ValueError("the postgres store needs --pg URL")
                name = f"clawvm_scaling_{os.getpid()}_{n}"
                asyncio.run(pg_admin(pg_admin_url, f'CREATE DATABASE "{name}"'))
                try:
                    rows += measure(store, pg_url(pg_admin_url, name), n, plan, work, (pg_admin_url, name))
                finally:
                    asyncio.run(pg_admin(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return rows


# ------------------------------------------------------------------------------------------- report


def baseline(rows: Sequence[Row], row: Row) -> Row:
    """The row of the same store and op with the fewest servers in this run."""
    same = [r for r in rows if r.store == row.store and r.op == row.op]
    return min(same, key=lambda r: r.servers)


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base > 0 else "-"


def render(rows: Sequence[Row]) -> str:
    lines = [
        "| store | servers | op | calls/s (all) | x | p50 ms | x | p99 ms | x "
        "| cores: servers | clients | postgres | machine | calls per our core-s | x "
        "| backends: lock wait | idle in txn |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = baseline(rows, r)
        pg = f"{r.cpu['postgres']:.2f}" if "postgres" in r.cpu else "-"
        waits = [f"{r.backends[k]:.2f}" if k in r.backends else "-" for k in ("waiting_on_lock", "idle_in_transaction")]
        lines.append(
            f"| {r.store} | {r.servers} | {r.op} | {r.per_second:.0f} | {r.per_second / b.per_second:.2f} "
            f"| {r.p50_ms:.2f} | {r.p50_ms / b.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p99_ms / b.p99_ms:.2f} "
            f"| {r.cpu['servers']:.2f} | {r.cpu['clients']:.2f} | {pg} | {r.cpu['machine']:.2f} "
            f"| {r.per_core_second:.0f} | {ratio(r.per_core_second, b.per_core_second)} | {waits[0]} | {waits[1]} |"
        )
    return "\n".join(lines)


DEFAULT = Plan()


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a count of calls, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return n


def _counts(text: str) -> list[int]:
    try:
        counts = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--processes takes counts like 1,2,4, got {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("each process count must be at least 1")
    return counts


def cmd_scaling(args: argparse.Namespace) -> int:
    stores = ["sqlite", "postgres"] if args.pg else ["sqlite"]
    if args.store:
        stores = [args.store]
    if "postgres" in stores and not args.pg:
        print("Error: --store postgres needs --pg postgresql://USER@HOST:PORT/DB", file=sys.stderr)
        return 2
    if args.pg:
        try:
            asyncpg_module()
        except RuntimeError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
    plan = Plan(args.writes, args.reads, args.assembles, args.warmup)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"clawvm-mcp bench scaling: {os.cpu_count()} cpus, load {load}; per client {plan.writes} writes, "
        f"{plan.reads} reads, {plan.assembles} assembles after {plan.warmup} of each to warm up",
        flush=True,
    )
    started = time.perf_counter()
    rows = run(stores, args.processes, plan, args.pg)
    print(render(rows), flush=True)
    print(f"done in {time.perf_counter() - started:.1f} s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([{**asdict(r), "per_second": r.per_second} for r in rows], indent=2) + "\n")
    return 0


def register(modes: Any) -> None:
    """Add ``scaling`` to the bench verb's modes (``modes`` from the bench parser's ``add_subparsers``)."""
    p = modes.add_parser(
        "scaling",
        help="1, 2, 4 HTTP servers on one SQLite file and one PostgreSQL database: throughput, p50/p99 as ratios",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument(
        "--pg",
        default=None,
        metavar="URL",
        help="a PostgreSQL server where the bench may create and drop its own databases (postgresql://...);"
        " without it only SQLite is measured",
    )
    p.add_argument("--store", choices=["sqlite", "postgres"], default=None, help="only this store")
    p.add_argument("--processes", type=_counts, default=[1, 2, 4], metavar="N[,N...]", help="default 1,2,4")
    p.add_argument(
        "--writes", type=_at_least_one, default=DEFAULT.writes, metavar="N", help="page_write calls per client"
    )
    p.add_argument("--reads", type=_at_least_one, default=DEFAULT.reads, metavar="N", help="page_read calls per client")
    p.add_argument(
        "--assembles", type=_at_least_one, default=DEFAULT.assembles, metavar="N", help="context_assemble calls"
    )
    p.add_argument(
        "--warmup", type=_at_least_one, default=DEFAULT.warmup, metavar="N", help="untimed calls of each kind first"
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the rows as JSON")
    p.set_defaults(func=cmd_scaling)
