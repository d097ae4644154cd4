"""Crash safety: SIGKILL a real ``clawvm-mcp serve`` process at many points and prove nothing is lost.

On SQLite each round starts the server as a stdio subprocess on one file; on PostgreSQL (when ``CLAWVM_TEST_PG``
names a server) as ``serve --http`` on one fresh database, alternating between two ports, so each round's server
settles what another process, on another port, left behind; a third process on a third port reads at the end.
Each round drives writes through a real MCP client
(``commit: now`` and ``commit: boundary`` writes, flushes, compactions), and kills the process with SIGKILL:
either at a random moment from outside, or from inside at a chosen SQL statement (before COMMIT, after COMMIT,
half way through a transaction, right after a journal row was staged, half way through a boundary flush; see
tests/support/crashing_server.py, which patches asyncpg the same way). After every kill the database is checked
directly (tests/support/dbview.py, read-only), and the next round's ``session_start`` must settle every staged row
the crash left behind:

- the database is sound: ``PRAGMA integrity_check`` is ``ok`` on SQLite; on PostgreSQL the killed server left no
  transaction open, amcheck passes every B-tree index and the row invariants hold (dbview ``integrity``);
- every write acknowledged as committed is in the journal as committed with that version, and the page has it;
- no partially applied write: each page equals the replay of its committed journal rows, versions 1..v;
- staged writes are never dropped: after the restart each is committed or rejected with reasons, and
  ``session_start`` reports them in ``settled_committed`` / ``settled_rejected``.

What does not apply to PostgreSQL: SQLite's one-statement autocommit commit (every PostgreSQL write is an explicit
transaction, so ``before-commit``/``after-commit`` there are always around ``COMMIT``), and the database server's
own crash recovery (the client process is what is killed, the shared PostgreSQL server is not ours to kill). It runs
12 rounds instead of 24 (each starts an HTTP server process), two of each kind of kill.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from tests.support import dbview
from tests.support.dbview import DB
from tests.support.harness import (
    PROV,
    alive,
    call,
    error_text,
    free_port,
    read_pid,
    sigkill,
    start_http_async,
    stdio_params,
    wait_dead,
)

pytestmark = pytest.mark.anyio

SESSION = "crash-s1"
NAMESPACE = f"s:{SESSION}"
PAGES = [f"conv/{i}" for i in range(5)]
MODES = ("external", "before-commit", "mid-txn", "after-commit", "after-stage", "mid-flush")
ROUNDS = int(os.environ.get("CLAWVM_CRASH_ROUNDS", "24"))
PG_ROUNDS = int(os.environ.get("CLAWVM_CRASH_ROUNDS", "12"))
SEED = int(os.environ.get("CLAWVM_CRASH_SEED", "20261125"))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Ack:
    txn_id: int
    status: str
    version: int
    page_id: str
    op: str
    token: str


@dataclass
class Ledger:
    """What the client was told, across every round."""

    acks: list[Ack] = field(default_factory=lambda: [])
    kills_injected: int = 0
    kills_external: int = 0
    settled_committed: int = 0
    settled_rejected: int = 0
    unacked: int = 0  # requests in flight when the process died
    in_flight: bool = False  # a request was sent and not answered (an HTTP round ends by cancelling it)
    by_mode: dict[str, int] = field(default_factory=lambda: {})


async def _committed_pages(db: DB) -> dict[str, int]:
    return {r["page_id"]: r["version"] for r in await dbview.pages(db, NAMESPACE) if not r["deleted"]}


def _replay(rows: list[dict[str, Any]]) -> str:
    """The content a page must have if exactly its committed journal rows were applied, in order."""
    content = ""
    for row in rows:
        req = row["request"]
        if row["op"] in ("create", "set"):
            content = req["content"] if req["content"] is not None else content
        elif row["op"] == "append" and req["content"]:
            content = content + "\n" + req["content"]
    return content


async def verify_store(db: DB, ledger: Ledger) -> None:
    """The invariants that must hold on the database after any kill, before anything reopens it."""
    assert await dbview.integrity(db) == "ok"
    journal = {int(r["txn_id"]): r for r in await dbview.journal(db, SESSION)}
    pages = {r["page_id"]: (r["version"], r["body"]) for r in await dbview.pages(db, NAMESPACE)}
    statuses = {row["status"] for row in journal.values()}
    assert statuses <= {"validated", "committed", "rejected"}, f"unexpected journal statuses {statuses}"
    for ack in ledger.acks:
        row = journal.get(ack.txn_id)
        assert row is not None, f"acknowledged txn {ack.txn_id} ({ack.op} {ack.page_id}) is gone from the journal"
        assert row["page_id"] == ack.page_id
        if ack.status == "committed":
            assert row["status"] == "committed" and row["version"] == ack.version, (ack, row)
            assert pages[ack.page_id][0] >= ack.version, f"page {ack.page_id} lost acknowledged v{ack.version}"
        elif ack.status == "staged":
            assert row["status"] in ("validated", "committed", "rejected"), (ack, row)
            if row["status"] == "rejected":
                assert row["reasons"], f"staged txn {ack.txn_id} rejected without a reason"
        else:
            assert row["status"] == "rejected", (ack, row)
    for page_id, (version, body) in pages.items():
        rows = sorted(
            (r for r in journal.values() if r["page_id"] == page_id and r["status"] == "committed"),
            key=lambda r: (r["version"], r["txn_id"]),
        )
        assert body["version"] == version
        assert {r["version"] for r in rows} == set(range(1, version + 1)), f"{page_id}: versions vs journal"
        assert body["content"] == _replay(rows), f"{page_id}: page content disagrees with its committed journal"
    for row in journal.values():
        if row["status"] == "committed":
            assert row["page_id"] in pages and row["version"] <= pages[row["page_id"]][0], row


async def _write(
    client: Client,
    ledger: Ledger,
    rng: random.Random,
    round_no: int,
    i: int,
    known: dict[str, int],
    staged_pages: set[str],
) -> bool:
    """One random operation; False once the server is gone."""
    token = f"r{round_no}-o{i}-{rng.randrange(10**6)}"
    roll = rng.random()
    missing = [p for p in PAGES if p not in known]
    args: dict[str, Any] = {"session_id": SESSION, "provenance": PROV}
    if missing and roll < 0.3:
        args |= {
            "page_id": missing[0],
            "op": "create",
            "type": "conversation",
            "content": token,
            "commit": "boundary" if rng.random() < 0.2 else "now",
        }
    elif roll < 0.12 and staged_pages:
        try:
            await client.call_tool("lifecycle", {"session_id": SESSION, "event": rng.choice(["flush", "compaction"])})
        except Exception:
            return False
        staged_pages.clear()
        return True
    elif roll < 0.2 and known:
        page_id = rng.choice(sorted(known))
        try:
            read = await client.call_tool("page_read", {"session_id": SESSION, "page_id": page_id})
        except Exception:
            return False
        sc = read.structured_content or {}
        if sc.get("outcome") != "hit":
            return True
        args |= {
            "page_id": page_id,
            "op": "set",
            "content": f"{token}\nreplaced",
            "base_version": sc["page"]["version"],
            "commit": "now" if page_id not in staged_pages else "boundary",
        }
    elif known:
        args |= {
            "page_id": rng.choice(sorted(known)),
            "op": "append",
            "content": token,
            "commit": "boundary" if rng.random() < 0.35 else "now",
        }
    else:
        return True
    ledger.in_flight = True
    try:
        result = await client.call_tool("page_write", args)
    except Exception:
        ledger.unacked += 1
        ledger.in_flight = False
        return False
    ledger.in_flight = False
    assert not result.is_error, error_text(result)
    sc = result.structured_content
    assert sc is not None
    ledger.acks.append(Ack(sc["txn_id"], sc["status"], sc["version"], args["page_id"], args["op"], token))
    if sc["status"] == "committed":
        known[args["page_id"]] = sc["version"]
        staged_pages.discard(args["page_id"])
    elif sc["status"] == "staged":
        known.setdefault(args["page_id"], 0)
        staged_pages.add(args["page_id"])
    return True


@dataclass
class Server:
    client: Client
    pid: int
    survived: bool | None = None  # HTTP: still running when its round ended (then SIGKILLed between requests)


@asynccontextmanager
async def _serve(
    db: DB,
    tmp: Path,
    name: str,
    mode: str = "auto",
    crash: str | None = None,
    port: int | None = None,
    kill_at_end: bool = False,
) -> AsyncIterator[Server]:
    """One server process on ``db`` and a client of it: over stdio for SQLite; for PostgreSQL ``serve --http`` on
    ``port``, whose client's calls are cancelled the moment the process dies (else a call to a killed server waits
    out the client's SSE reconnection attempts). ``kill_at_end`` SIGKILLs a survivor instead of stopping it."""
    if not dbview.is_postgres(db):
        pidfile = tmp / f"pid-{name}"
        params = stdio_params(db, pidfile=pidfile, crash=crash)
        async with Client(params, mode="legacy" if mode == "legacy" else "auto") as client:
            yield Server(client, read_pid(pidfile))
        return
    http = await start_http_async(db, tmp / f"{name}.log", port=port, crash=crash)
    srv: Server | None = None
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while http.proc.poll() is None:
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                async with http.client(mode=mode) as client:
                    srv = Server(client, http.pid)
                    yield srv
            except* httpx2.ConnectError:
                # the client's transport may still be sending (a call, the session's DELETE) when its killed
                # server is reaped: that fails to connect, and only a failure against a live server is one
                if http.proc.poll() is None:
                    raise
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if srv is not None:  # a server that killed itself drops its sockets a moment before it can be reaped
                with anyio.move_on_after(1.0):
                    while http.proc.poll() is None:
                        await anyio.sleep(0.02)
                srv.survived = http.proc.poll() is None
            if kill_at_end:
                sigkill(http.pid)
                http.proc.wait(10)
            await http.aclose()


async def _round(
    db: DB, tmp: Path, ledger: Ledger, rng: random.Random, round_no: int, mode: str, ports: tuple[int, int]
) -> None:
    crash = None
    if mode == "mid-flush":
        crash = f"{mode}:{rng.randint(1, 4)}"
    elif mode != "external":
        crash = f"{mode}:{rng.randint(3, 40)}"
    pending_before = await dbview.pending(db, SESSION)
    staged_pages: set[str] = set()
    pid = 0
    killed_from_outside = False
    srv: Server | None = None

    async def killer(delay: float) -> None:
        nonlocal killed_from_outside
        await anyio.sleep(delay)
        killed_from_outside = True
        sigkill(pid)

    mode_ = "legacy" if round_no % 2 else "auto"
    try:
        async with _serve(db, tmp, str(round_no), mode_, crash, port=ports[round_no % 2], kill_at_end=True) as srv:
            client, pid = srv.client, srv.pid
            start = await call(client, "session_start", session_id=SESSION, budget=100_000)
            assert start["settled_committed"] + start["settled_rejected"] == pending_before, (start, pending_before)
            assert await dbview.pending(db, SESSION) == 0, "session_start left staged rows unsettled"
            ledger.settled_committed += start["settled_committed"]
            ledger.settled_rejected += start["settled_rejected"]
            await verify_store(db, ledger)  # settling kept every promise
            known = await _committed_pages(db)  # after the settle: a staged create the last kill left is a page now
            async with anyio.create_task_group() as tg:
                if mode == "external":
                    tg.start_soon(killer, rng.uniform(0.02, 0.4))
                boundary_bias = mode == "mid-flush"
                for i in range(400 if mode == "external" else 120):
                    if boundary_bias and known and rng.random() < 0.5:
                        page_id = rng.choice(sorted(known))
                        ledger.in_flight = True
                        try:
                            result = await client.call_tool(
                                "page_write",
                                {
                                    "session_id": SESSION,
                                    "page_id": page_id,
                                    "op": "append",
                                    "provenance": PROV,
                                    "content": f"r{round_no}-b{i}",
                                    "commit": "boundary",
                                },
                            )
                        except Exception:
                            ledger.unacked += 1
                            ledger.in_flight = False
                            break
                        ledger.in_flight = False
                        sc = result.structured_content or {}
                        ledger.acks.append(
                            Ack(sc["txn_id"], sc["status"], sc["version"], page_id, "append", f"r{round_no}-b{i}")
                        )
                        staged_pages.add(page_id)
                        continue
                    if not await _write(client, ledger, rng, round_no, i, known, staged_pages):
                        break
                tg.cancel_scope.cancel()
    except Exception as exc:  # the connection dies with the server: expected
        if pid == 0 or not _is_disconnect(exc):
            raise
    assert srv is not None and pid != 0
    if ledger.in_flight:  # an HTTP round: the call the server died in was cancelled, not failed
        ledger.unacked += 1
        ledger.in_flight = False
    survived = srv.survived if srv.survived is not None else _alive_then_kill(pid)
    self_killed = not killed_from_outside and crash is not None and not survived
    wait_dead(pid)
    if self_killed:
        ledger.kills_injected += 1
        ledger.by_mode[mode] = ledger.by_mode.get(mode, 0) + 1
    else:
        ledger.kills_external += 1
        ledger.by_mode["external"] = ledger.by_mode.get("external", 0) + 1
    await verify_store(db, ledger)


def _alive_then_kill(pid: int) -> bool:
    """True if the server was still running (then it is killed now, between requests)."""
    if alive(pid):
        sigkill(pid)
        return True
    return False


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_disconnect(e) for e in exc.exceptions)
    if isinstance(exc, AssertionError):
        return False
    return True


async def test_sigkill_at_random_points_loses_nothing(tmp_path: Path, store_db: DB) -> None:
    db = store_db
    postgres = dbview.is_postgres(db)
    await dbview.prepare(db)
    rounds = PG_ROUNDS if postgres else ROUNDS
    rng = random.Random(SEED)
    ledger = Ledger()
    ports = (free_port(), free_port())  # PostgreSQL: the rounds alternate between two server ports
    for round_no in range(rounds):
        await _round(db, tmp_path, ledger, rng, round_no, MODES[round_no % len(MODES)], ports)

    # a clean final start (a third process) settles whatever the last kill left staged, then everything is
    # committed or reported
    pending = await dbview.pending(db, SESSION)
    async with _serve(db, tmp_path, "final") as srv:
        client = srv.client
        start = await call(client, "session_start", session_id=SESSION)
        assert start["settled_committed"] + start["settled_rejected"] == pending
        ledger.settled_committed += start["settled_committed"]
        ledger.settled_rejected += start["settled_rejected"]
        for page_id, version in (await _committed_pages(db)).items():
            read = await call(client, "page_read", session_id=SESSION, page_id=page_id)
            assert read["outcome"] == "hit" and read["page"]["version"] == version and not read["page"]["dirty"]
    assert await dbview.pending(db, SESSION) == 0
    await verify_store(db, ledger)
    statuses = dict(Counter(r["status"] for r in await dbview.journal(db)))
    staged_acks = [a for a in ledger.acks if a.status == "staged"]
    committed_acks = [a for a in ledger.acks if a.status == "committed"]
    kills = ledger.kills_injected + ledger.kills_external
    print(
        f"\ncrash figures ({'PostgreSQL, HTTP' if postgres else 'SQLite, stdio'}): kill points {kills} "
        f"(injected {ledger.kills_injected}, external "
        f"{ledger.kills_external}, by mode {dict(sorted(ledger.by_mode.items()))}); acknowledged writes "
        f"{len(ledger.acks)} (committed {len(committed_acks)}, staged {len(staged_acks)}); in flight at kill "
        f"{ledger.unacked}; settled on restart {ledger.settled_committed} committed, {ledger.settled_rejected} "
        f"rejected; journal {statuses}; lost 0"
    )
    assert kills >= (10 if postgres else 20)
    assert ledger.kills_injected >= rounds // 2, ledger.by_mode  # the deterministic points really fired
    assert staged_acks and committed_acks
    assert ledger.settled_committed > 0, "no round left staged rows for session_start to settle"
    assert ledger.settled_rejected == 0, "a single writer's staged rows must all commit after a crash"
    assert "lost" not in statuses


async def test_staged_set_after_staged_append_survives_a_kill(tmp_path: Path, store_db: DB) -> None:
    """Regression: settling after a crash used to commit staged rows one version each, so a staged ``set`` whose
    base was the committed version (validated when staged) became stale behind the staged ``append`` before it
    and was rejected. Settling must end where the boundary flush would have. (PostgreSQL: the killed server and
    the one that settles are two processes on two ports.)"""
    db = store_db
    await dbview.prepare(db)
    async with _serve(db, tmp_path, "killed") as srv:
        client = srv.client
        await call(client, "session_start", session_id=SESSION)
        created = await call(
            client,
            "page_write",
            session_id=SESSION,
            page_id="conv/0",
            op="create",
            type="conversation",
            content="one",
            provenance=PROV,
        )
        base = created["version"]
        staged = [
            await call(
                client,
                "page_write",
                session_id=SESSION,
                page_id="conv/0",
                op="append",
                content="two",
                provenance=PROV,
                commit="boundary",
            ),
            await call(
                client,
                "page_write",
                session_id=SESSION,
                page_id="conv/0",
                op="set",
                content="three",
                base_version=base,
                provenance=PROV,
                commit="boundary",
            ),
            await call(
                client,
                "page_write",
                session_id=SESSION,
                page_id="conv/1",
                op="create",
                type="conversation",
                content="four",
                provenance=PROV,
                commit="boundary",
            ),
        ]
        assert [s["status"] for s in staged] == ["staged"] * 3
        sigkill(srv.pid)
        wait_dead(srv.pid)
        # whatever the transport raises once its server is gone (an HTTP client's call is cancelled instead)
        with pytest.raises(Exception):  # noqa: B017
            await client.call_tool("page_read", {"session_id": SESSION, "page_id": "conv/0"})
    assert await dbview.pending(db, SESSION) == 3
    async with _serve(db, tmp_path, "settles") as srv:
        client = srv.client
        start = await call(client, "session_start", session_id=SESSION)
        assert (start["settled_committed"], start["settled_rejected"]) == (3, 0)
        page0 = (await call(client, "page_read", session_id=SESSION, page_id="conv/0"))["page"]
        page1 = (await call(client, "page_read", session_id=SESSION, page_id="conv/1"))["page"]
    assert (page0["text"], page0["version"], page0["dirty"]) == ("three", base + 1, False)
    assert (page1["text"], page1["version"]) == ("four", 1)
    ledger = Ledger(acks=[Ack(s["txn_id"], "staged", s["version"], s["page_id"], "", "") for s in staged])
    await verify_store(db, ledger)
