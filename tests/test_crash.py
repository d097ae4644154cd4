"""Crash safety: SIGKILL a real ``clawvm-mcp serve`` process at many points and prove nothing is lost.

Each round starts the server as a stdio subprocess on one SQLite file, drives writes through a real MCP client
(``commit: now`` and ``commit: boundary`` writes, flushes, compactions), and kills the process with SIGKILL:
either at a random moment from outside, or from inside at a chosen SQL statement (before COMMIT, after COMMIT,
half way through a transaction, right after a journal row was staged, half way through a boundary flush; see
tests/support/crashing_server.py). After every kill the file is checked directly, and the next round's
``session_start`` must settle every staged row the crash left behind:

- ``PRAGMA integrity_check`` is ``ok``;
- every write acknowledged as committed is in the journal as committed with that version, and the page has it;
- no partially applied write: each page equals the replay of its committed journal rows, versions 1..v;
- staged writes are never dropped: after the restart each is committed or rejected with reasons, and
  ``session_start`` reports them in ``settled_committed`` / ``settled_rejected``.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.support.harness import (
    PROV,
    call,
    db_conn,
    error_text,
    integrity,
    read_pid,
    sigkill,
    stdio_params,
    wait_dead,
)

pytestmark = pytest.mark.anyio

SESSION = "crash-s1"
NAMESPACE = f"s:{SESSION}"
PAGES = [f"conv/{i}" for i in range(5)]
MODES = ("external", "before-commit", "mid-txn", "after-commit", "after-stage", "mid-flush")
ROUNDS = int(os.environ.get("CLAWVM_CRASH_ROUNDS", "24"))
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
    by_mode: dict[str, int] = field(default_factory=lambda: {})


def _committed_pages(db: Path) -> dict[str, int]:
    with db_conn(db) as conn:
        rows = conn.execute("SELECT page_id, version FROM pages WHERE namespace = ? AND deleted = 0", (NAMESPACE,))
        return {r["page_id"]: int(r["version"]) for r in rows}


def _pending(db: Path) -> int:
    with db_conn(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM journal WHERE session_id = ? AND status IN ('staged','validated')", (SESSION,)
        ).fetchone()
        return int(row[0])


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


def verify_store(db: Path, ledger: Ledger) -> None:
    """The invariants that must hold on the file after any kill, before anything reopens it."""
    assert integrity(db) == "ok"
    with db_conn(db) as conn:
        journal = {
            int(r["txn_id"]): {**dict(r), "request": json.loads(r["request"]), "reasons": json.loads(r["reasons"])}
            for r in conn.execute("SELECT * FROM journal WHERE session_id = ? ORDER BY txn_id", (SESSION,))
        }
        pages = {
            r["page_id"]: (int(r["version"]), json.loads(r["body"]))
            for r in conn.execute("SELECT page_id, version, body FROM pages WHERE namespace = ?", (NAMESPACE,))
        }
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
    try:
        result = await client.call_tool("page_write", args)
    except Exception:
        ledger.unacked += 1
        return False
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


async def _round(db: Path, tmp: Path, ledger: Ledger, rng: random.Random, round_no: int, mode: str) -> None:
    pidfile = tmp / f"pid-{round_no}"
    crash = None
    if mode == "mid-flush":
        crash = f"{mode}:{rng.randint(1, 4)}"
    elif mode != "external":
        crash = f"{mode}:{rng.randint(3, 40)}"
    params = stdio_params(db, pidfile=pidfile, crash=crash)
    pending_before = _pending(db) if db.exists() else 0
    known: dict[str, int] = _committed_pages(db) if db.exists() else {}
    staged_pages: set[str] = set()
    pid = 0
    killed_from_outside = False

    async def killer(delay: float) -> None:
        nonlocal killed_from_outside
        await anyio.sleep(delay)
        killed_from_outside = True
        sigkill(pid)

    try:
        async with Client(params, mode="legacy" if round_no % 2 else "auto") as client:
            pid = read_pid(pidfile)
            start = await call(client, "session_start", session_id=SESSION, budget=100_000)
            assert start["settled_committed"] + start["settled_rejected"] == pending_before, (start, pending_before)
            assert _pending(db) == 0, "session_start left staged rows unsettled"
            ledger.settled_committed += start["settled_committed"]
            ledger.settled_rejected += start["settled_rejected"]
            verify_store(db, ledger)  # settling kept every promise
            async with anyio.create_task_group() as tg:
                if mode == "external":
                    tg.start_soon(killer, rng.uniform(0.02, 0.4))
                boundary_bias = mode == "mid-flush"
                for i in range(400 if mode == "external" else 120):
                    if boundary_bias and known and rng.random() < 0.5:
                        page_id = rng.choice(sorted(known))
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
                            break
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
    if pid == 0:
        pid = read_pid(pidfile)
    self_killed = not killed_from_outside and crash is not None and not _alive_then_kill(pid)
    wait_dead(pid)
    if self_killed:
        ledger.kills_injected += 1
        ledger.by_mode[mode] = ledger.by_mode.get(mode, 0) + 1
    else:
        ledger.kills_external += 1
        ledger.by_mode["external"] = ledger.by_mode.get("external", 0) + 1
    verify_store(db, ledger)


def _alive_then_kill(pid: int) -> bool:
    """True if the server was still running (then it is killed now, between requests)."""
    from tests.support.harness import alive

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


async def test_sigkill_at_random_points_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    rng = random.Random(SEED)
    ledger = Ledger()
    for round_no in range(ROUNDS):
        await _round(db, tmp_path, ledger, rng, round_no, MODES[round_no % len(MODES)])

    # a clean final start settles whatever the last kill left staged, then everything is committed or reported
    pending = _pending(db)
    async with Client(stdio_params(db)) as client:
        start = await call(client, "session_start", session_id=SESSION)
        assert start["settled_committed"] + start["settled_rejected"] == pending
        ledger.settled_committed += start["settled_committed"]
        ledger.settled_rejected += start["settled_rejected"]
        for page_id, version in _committed_pages(db).items():
            read = await call(client, "page_read", session_id=SESSION, page_id=page_id)
            assert read["outcome"] == "hit" and read["page"]["version"] == version and not read["page"]["dirty"]
    assert _pending(db) == 0
    verify_store(db, ledger)
    with db_conn(db) as conn:
        statuses = {r[0]: r[1] for r in conn.execute("SELECT status, count(*) FROM journal GROUP BY status")}
    staged_acks = [a for a in ledger.acks if a.status == "staged"]
    committed_acks = [a for a in ledger.acks if a.status == "committed"]
    kills = ledger.kills_injected + ledger.kills_external
    print(
        f"\ncrash figures: kill points {kills} (injected {ledger.kills_injected}, external "
        f"{ledger.kills_external}, by mode {dict(sorted(ledger.by_mode.items()))}); acknowledged writes "
        f"{len(ledger.acks)} (committed {len(committed_acks)}, staged {len(staged_acks)}); in flight at kill "
        f"{ledger.unacked}; settled on restart {ledger.settled_committed} committed, {ledger.settled_rejected} "
        f"rejected; journal {statuses}; lost 0"
    )
    assert kills >= 20
    assert ledger.kills_injected >= 12, ledger.by_mode  # the deterministic points really fired
    assert staged_acks and committed_acks
    assert ledger.settled_committed > 0, "no round left staged rows for session_start to settle"
    assert ledger.settled_rejected == 0, "a single writer's staged rows must all commit after a crash"
    assert "lost" not in statuses


async def test_staged_set_after_staged_append_survives_a_kill(tmp_path: Path) -> None:
    """Regression: settling after a crash used to commit staged rows one version each, so a staged ``set`` whose
    base was the committed version (validated when staged) became stale behind the staged ``append`` before it
    and was rejected. Settling must end where the boundary flush would have."""
    db, pidfile = tmp_path / "s.db", tmp_path / "pid"
    async with Client(stdio_params(db, pidfile=pidfile)) as client:
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
        pid = read_pid(pidfile)
        sigkill(pid)
        wait_dead(pid)
        with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises once its server is gone
            await client.call_tool("page_read", {"session_id": SESSION, "page_id": "conv/0"})
    assert _pending(db) == 3
    async with Client(stdio_params(db)) as client:
        start = await call(client, "session_start", session_id=SESSION)
        assert (start["settled_committed"], start["settled_rejected"]) == (3, 0)
        page0 = (await call(client, "page_read", session_id=SESSION, page_id="conv/0"))["page"]
        page1 = (await call(client, "page_read", session_id=SESSION, page_id="conv/1"))["page"]
    assert (page0["text"], page0["version"], page0["dirty"]) == ("three", base + 1, False)
    assert (page1["text"], page1["version"]) == ("four", 1)
    ledger = Ledger(acks=[Ack(s["txn_id"], "staged", s["version"], s["page_id"], "", "") for s in staged])
    verify_store(db, ledger)
