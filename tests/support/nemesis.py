"""The multi-process nemesis: several ``clawvm-mcp serve`` processes, hook processes and clients on ONE database,
doing random work under random faults, then a check that every acknowledgement was kept.

Two targets (tests/support/nemesis_targets.py), one driver: a SQLite file served over stdio, or a PostgreSQL
database served over streamable HTTP, each server process on its own port (restarted on the same one).
What runs at once: ``servers`` server processes, each driven by one MCP client shared by ``callers``
concurrent callers; a harness hook loop running ``clawvm-mcp lifecycle`` as its own process; and a nemesis that
SIGKILLs servers (they are restarted), SIGSTOPs them (SIGCONT after 0.1-1.5 s, sometimes 5.5-7 s, longer than the
store's bounded wait) and SIGKILLs hook processes mid-run. Callers work on ``sessions`` sessions of one project
(every server serves every session): creates, appends and sets of session and project pages, committed now or
staged for a boundary, reads, assemblies, lifecycle events, ``session_start`` re-runs and ``session_end``; a few of
their calls are given up by the client (an anyio cancel scope around the call).

Every answer the client actually received is recorded. Afterwards one clean server settles every session, and the
check asks of the file and of that server:

- every acknowledged commit is in the journal at its version and its unique token is in the page's final text
  (unless a later committed ``set`` replaced the text); no version of a page was acknowledged twice;
- every acknowledged staged write was committed at a boundary, or rejected with reasons: a staged append only
  for the page size limit (an append merges, it has nothing to conflict with), a staged set or create also for a
  conflicting commit; and reported: a session whose lifecycle and session_start answers all arrived was told of
  at least as many rejections as its staged rows suffered (one answer lost to a fault may carry any number);
- the journal and the pages agree (versions 1..v without a gap, the text is the replay of the committed rows);
- the database is sound: ``PRAGMA integrity_check`` is ok for SQLite; for PostgreSQL, which has no such pragma,
  no transaction was left open, the B-tree indexes pass amcheck and the row invariants hold
  (tests/support/dbview.py ``integrity``);
- no call went unanswered for longer than ``BOUND`` seconds.

Bounded by ``--seconds``; seeded by ``--seed`` (the schedule of operations and faults is drawn from it; how real
processes interleave is not reproducible, what is tried is). Public surfaces only: MCP clients (stdio or HTTP), the
CLI, signals to the processes started here (by pid), and read-only views of the database for the check.

    python -m tests.support.nemesis --seconds 60 --seed 7       # or: pytest tests/test_nemesis.py [--soak 600]
    python -m tests.support.nemesis --pg postgresql://postgres@127.0.0.1:54329/postgres   # a fresh database there
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import anyio
import anyio.abc
from mcp import Client

from tests.support import dbview
from tests.support.dbview import DB
from tests.support.harness import PROV, alive, child_env, error_text, sigkill
from tests.support.nemesis_targets import Mode, Target, target_for

log = logging.getLogger("nemesis")
BOUND = 15.0  # seconds: a call with no answer for longer than this is a violation
PROJECT = "nemesis"


@dataclass(frozen=True)
class Settings:
    seconds: float = 40.0
    seed: int = 20261202
    servers: int = 3
    callers: int = 2  # concurrent callers per server, sharing its one MCP client
    sessions: int = 4
    session_pages: int = 5  # conv/0.. per session
    project_pages: int = 4  # pref/0.. shared by every session of the project
    cancel_rate: float = 0.06  # share of calls the client gives up on
    fault_gap: tuple[float, float] = (0.8, 2.5)  # seconds between two faults
    hook_gap: tuple[float, float] = (0.3, 1.2)  # seconds between two hook processes
    faults: bool = True  # SIGKILL / SIGSTOP servers and SIGKILL hooks
    hooks: bool = True  # run hook processes at all

    @classmethod
    def calm(cls, seconds: float, seed: int = 20261202) -> Settings:
        """One server, one caller, one session, no faults, no hooks, no cancellations: the check's own control
        run, which must find nothing (else the check, not the product, is wrong)."""
        return cls(seconds, seed, servers=1, callers=1, sessions=1, cancel_rate=0.0, faults=False, hooks=False)


@dataclass(frozen=True)
class Ack:
    """One page_write answer the client received."""

    session: str
    page_id: str
    op: str
    commit: str
    token: str
    status: str
    version: int
    txn_id: int


Kind = Literal["result", "error", "cancelled", "gone", "unanswered"]


@dataclass(frozen=True)
class Answer:
    kind: Kind
    data: dict[str, Any] = field(default_factory=lambda: {})
    text: str = ""


@dataclass
class Ledger:
    """Everything the clients were told, and every fault injected."""

    acks: list[Ack] = field(default_factory=lambda: [])
    reported_rejected: Counter[str] = field(default_factory=lambda: Counter())  # per session
    lost_reports: Counter[str] = field(default_factory=lambda: Counter())  # boundary answers lost to a fault
    calls: Counter[str] = field(default_factory=lambda: Counter())  # by answer kind
    errors: Counter[str] = field(default_factory=lambda: Counter())  # error answers, by their first words
    unanswered: list[str] = field(default_factory=lambda: [])
    slowest: float = 0.0
    faults: Counter[str] = field(default_factory=lambda: Counter())
    processes: Counter[str] = field(default_factory=lambda: Counter())


@dataclass(frozen=True)
class Row:
    txn_id: int
    session_id: str
    namespace: str
    page_id: str
    op: str
    status: str
    version: int
    content: str | None
    reasons: list[dict[str, str]]


@dataclass
class Report:
    settings: Settings
    ledger: Ledger
    violations: list[str]
    lost: int
    double_versions: int
    staged_rejected: int
    unsettled: int
    journal: Counter[str]
    integrity: str
    elapsed: float
    store: str = ""

    def figures(self) -> str:
        led, s = self.ledger, self.settings
        acks = Counter(a.status for a in led.acks)
        staged = sum(1 for a in led.acks if a.status == "staged")
        errors = ", ".join(f"{n}x {k!r}" for k, n in led.errors.most_common(4)) or "none"
        return "\n".join(
            [
                f"nemesis figures ({self.store}; seed {s.seed}, {s.seconds:.0f} s of faults, "
                f"{self.elapsed:.0f} s in all):",
                f"  processes: {led.processes['server']} server starts ({s.servers} at a time, {s.callers} callers "
                f"each), {led.processes['hook']} hook processes, {s.sessions} sessions of one project",
                f"  operations: {sum(led.calls.values())} calls; answers {dict(sorted(led.calls.items()))}",
                f"  acknowledged writes: {len(led.acks)} ({dict(sorted(acks.items()))})",
                f"  faults injected: {dict(sorted(led.faults.items()))}",
                f"  error answers: {errors}",
                f"  slowest answer {led.slowest:.1f} s; unanswered > {BOUND:.0f} s: {len(led.unanswered)}",
                f"  journal {dict(sorted(self.journal.items()))}; integrity {self.integrity}",
                f"  lost {self.lost}; versions acknowledged twice {self.double_versions}; staged then rejected "
                f"{self.staged_rejected} of {staged} (reported {sum(led.reported_rejected.values())}; "
                f"{sum(1 for n in led.lost_reports.values() if n)} sessions lost a boundary answer to a fault); "
                f"never settled {self.unsettled}; violations {len(self.violations)}",
            ]
        )


async def read_all(stream: anyio.abc.ByteReceiveStream | None) -> bytes:
    if stream is None:
        return b""
    return b"".join([chunk async for chunk in stream])


class Slot:
    """One server process at a time: started, SIGKILLed on request, started again, until shutdown."""

    def __init__(self, index: int, target: Target, ledger: Ledger) -> None:
        self.index = index
        self.target = target
        self.ledger = ledger
        self.client: Client | None = None
        self.pid = 0
        self.deaths = 0  # kills requested so far: a call that spans one lost its server
        self._kill = False

    def request_kill(self) -> None:
        self.deaths += 1
        self._kill = True

    async def run(self, shutdown: anyio.Event, rng: random.Random) -> None:
        generation = 0
        while not shutdown.is_set():
            self.ledger.processes["server"] += 1
            try:  # odd slots speak the legacy protocol era, even ones the modern
                mode: Mode = "legacy" if self.index % 2 else "auto"
                async with self.target.serve(f"server-{self.index}", generation, mode) as (client, pid):
                    self.pid = pid
                    self.client = client
                    while not (self._kill or shutdown.is_set()):
                        await anyio.sleep(0.02)
                    self.client = None
                    if self._kill:
                        sigkill(self.pid)
            except Exception as exc:  # the connection dies with a killed server: expected
                log.debug("server %d connection ended: %r", self.index, exc)
            finally:
                self.client = None
                self._kill = False
            generation += 1
            if not shutdown.is_set():
                await anyio.sleep(rng.uniform(0.05, 0.6))


def token_for(caller: str, n: int) -> str:
    return f"{caller}.{n}"


class Nemesis:
    def __init__(self, settings: Settings, workdir: Path, db: DB | None = None) -> None:
        self.settings = settings
        self.workdir = workdir
        self.target = target_for(workdir / "nemesis.db" if db is None else db, workdir)
        self.db = self.target.db
        self.ledger = Ledger()
        self.sessions = [f"nem-{i}" for i in range(settings.sessions)]
        self.slots = [Slot(i, self.target, self.ledger) for i in range(settings.servers)]
        self.created: set[tuple[str, str]] = set()  # (owner, page_id) with an acknowledged create
        self.stop = anyio.Event()
        self.shutdown = anyio.Event()

    # ------------------------------------------------------------------ calls

    async def call(
        self, slot: Slot, client: Client, tool: str, args: dict[str, Any], rng: random.Random, may_cancel: bool = True
    ) -> Answer:
        """One tool call, bounded by BOUND, sometimes given up by the client; what came back, if anything."""
        cancel = may_cancel and rng.random() < self.settings.cancel_rate
        cancel_after = rng.uniform(0.002, 0.3) if cancel else None
        deaths = slot.deaths
        began = time.monotonic()
        result = None
        answer: Answer | None = None
        with anyio.move_on_after(BOUND):
            try:
                if cancel_after is None:
                    result = await client.call_tool(tool, args)
                else:
                    with anyio.move_on_after(cancel_after):
                        result = await client.call_tool(tool, args)
                    if result is None:
                        self.ledger.faults["client cancellations"] += 1
                        answer = Answer("cancelled")
            except Exception as exc:
                answer = Answer("gone", text=repr(exc)[:200])
                if slot.deaths == deaths:
                    self.ledger.errors[f"client exception {type(exc).__name__}: {str(exc)[:60]}"] += 1
        took = time.monotonic() - began
        if answer is None and result is None:
            if slot.deaths != deaths:
                answer = Answer("gone")
            else:
                self.ledger.unanswered.append(f"{tool} on server {slot.index}: no answer in {BOUND:.0f} s")
                answer = Answer("unanswered")
        elif answer is None and result is not None:
            self.ledger.slowest = max(self.ledger.slowest, took)
            if result.is_error or result.structured_content is None:
                text = error_text(result)
                self.ledger.errors[_gist(text, tool)] += 1
                answer = Answer("error", text=text)
            else:
                answer = Answer("result", data=result.structured_content)
        assert answer is not None
        self.ledger.calls[answer.kind] += 1
        return answer

    def report(self, session: str, answer: Answer, key: str) -> None:
        """Count the rejections a lifecycle or session_start answer reported, or that its answer was lost."""
        if answer.kind == "result":
            self.ledger.reported_rejected[session] += int(answer.data.get(key, 0))
        elif answer.kind in ("cancelled", "gone", "unanswered"):
            self.ledger.lost_reports[session] += 1

    # ------------------------------------------------------------------ callers

    def page_of(self, session: str, rng: random.Random) -> tuple[str, str, str]:
        """(owner, page_id, type): a session page of ``session`` or a project page."""
        s = self.settings
        if rng.random() < 0.6:
            return session, f"conv/{rng.randrange(s.session_pages)}", "conversation"
        return PROJECT, f"pref/{rng.randrange(s.project_pages)}", "preference"

    async def write(
        self, slot: Slot, client: Client, session: str, args: dict[str, Any], token: str, rng: random.Random
    ) -> Answer:
        full = {"session_id": session, "provenance": PROV, **args, "content": token}
        answer = await self.call(slot, client, "page_write", full, rng)
        if answer.kind == "result":
            d = answer.data
            self.ledger.acks.append(
                Ack(
                    session,
                    args["page_id"],
                    args["op"],
                    args.get("commit", "now"),
                    token,
                    str(d["status"]),
                    int(d["version"]),
                    int(d["txn_id"]),
                )
            )
        return answer

    async def step(self, slot: Slot, client: Client, caller: str, n: int, rng: random.Random) -> None:
        session = rng.choice(self.sessions)
        token = token_for(caller, n)
        owner, page_id, page_type = self.page_of(session, rng)
        commit = "boundary" if rng.random() < 0.4 else "now"
        action = rng.choices(
            ["write", "set", "read", "assemble", "event", "session_start", "session_end"],
            weights=[60, 9, 6, 6, 12, 5, 0.6],
        )[0]
        answer: Answer
        args: dict[str, Any]
        if action == "write":
            if (owner, page_id) not in self.created and rng.random() < 0.8:
                args = {"page_id": page_id, "op": "create", "type": page_type, "commit": commit}
                answer = await self.write(slot, client, session, args, token, rng)
                codes = {r["code"] for r in answer.data.get("reasons", [])}
                if answer.kind == "result" and (answer.data["status"] != "rejected" or "DESTRUCTIVE_OP" in codes):
                    self.created.add((owner, page_id))  # made now, or it was there already
            else:
                args = {"page_id": page_id, "op": "append", "commit": commit}
                answer = await self.write(slot, client, session, args, token, rng)
        elif action == "set":
            read = await self.call(slot, client, "page_read", {"session_id": session, "page_id": page_id}, rng)
            answer = read
            if read.kind == "result" and read.data.get("outcome") == "hit":
                base = int(read.data["page"]["version"])
                args = {"page_id": page_id, "op": "set", "base_version": base, "commit": commit}
                answer = await self.write(slot, client, session, args, token, rng)
        elif action == "read":
            answer = await self.call(slot, client, "page_read", {"session_id": session, "page_id": page_id}, rng)
        elif action == "assemble":
            answer = await self.call(slot, client, "context_assemble", {"session_id": session}, rng)
        elif action == "event":
            event = rng.choices(["turn_end", "flush", "compaction", "reset"], weights=[5, 4, 2, 1])[0]
            answer = await self.call(slot, client, "lifecycle", {"session_id": session, "event": event}, rng)
            self.report(session, answer, "rejected")
        elif action == "session_start":
            answer = await self.start(slot, client, session, rng)
        else:
            answer = await self.call(slot, client, "lifecycle", {"session_id": session, "event": "session_end"}, rng)
            self.report(session, answer, "rejected")
            answer = await self.start(slot, client, session, rng)  # the harness starts its next session
        if answer.kind == "error" and "has ended" in answer.text:
            await self.start(slot, client, session, rng)

    async def start(
        self, slot: Slot, client: Client, session: str, rng: random.Random, may_cancel: bool = True
    ) -> Answer:
        args = {"session_id": session, "project_id": PROJECT}
        answer = await self.call(slot, client, "session_start", args, rng, may_cancel)
        self.report(session, answer, "settled_rejected")
        return answer

    async def caller(self, slot: Slot, name: str, rng: random.Random) -> None:
        n = 0
        while not self.stop.is_set():
            client = slot.client
            if client is None:
                await anyio.sleep(0.02)
                continue
            n += 1
            await self.step(slot, client, name, n, rng)

    # ------------------------------------------------------------------ hooks and faults

    async def hooks(self, rng: random.Random) -> None:
        """Claude Code's hook wiring: ``clawvm-mcp lifecycle`` in a process of its own, sometimes SIGKILLed."""
        sink = open(self.workdir / "hooks.log", "ab")  # one handle for every hook process
        try:
            while not self.stop.is_set():
                await anyio.sleep(rng.uniform(*self.settings.hook_gap))
                session = rng.choice(self.sessions)
                event = rng.choices(["turn_end", "flush", "compaction", "reset"], weights=[6, 2, 2, 1])[0]
                kill_after = rng.uniform(0.05, 1.0) if rng.random() < 0.15 else None
                await self.hook(session, event, kill_after, sink)
        finally:
            sink.close()

    async def hook(self, session: str, event: str, kill_after: float | None, log: BinaryIO) -> None:
        cmd = [sys.executable, "-m", "clawvm_mcp", "lifecycle", "--db", str(self.db)]
        cmd += ["--session", session, "--event", event]
        self.ledger.processes["hook"] += 1
        began = time.monotonic()
        async with await anyio.open_process(cmd, stdout=subprocess.PIPE, stderr=log, env=child_env()) as proc:
            out, code = b"", None
            with anyio.move_on_after(kill_after if kill_after is not None else BOUND):
                out = await read_all(proc.stdout)
                code = await proc.wait()
            if code is None:
                proc.kill()  # this hook process only, by its handle
                await proc.wait()
                self.ledger.lost_reports[session] += 1
                if kill_after is not None:
                    self.ledger.faults["hook SIGKILLs"] += 1
                    self.ledger.calls["gone"] += 1
                else:
                    self.ledger.unanswered.append(f"hook lifecycle {event}: no answer in {BOUND:.0f} s")
                    self.ledger.calls["unanswered"] += 1
                return
        self.ledger.slowest = max(self.ledger.slowest, time.monotonic() - began)
        if code != 0:
            self.ledger.errors[f"hook exit {code}"] += 1
            self.ledger.calls["error"] += 1
            return
        self.ledger.calls["result"] += 1
        self.ledger.reported_rejected[session] += int(json.loads(out)["rejected"])

    async def faults(self, rng: random.Random) -> None:
        while not self.stop.is_set():
            await anyio.sleep(rng.uniform(*self.settings.fault_gap))
            slot = rng.choice(self.slots)
            if self.stop.is_set() or slot.client is None:
                continue
            roll = rng.random()
            if roll < 0.35:
                slot.request_kill()
                self.ledger.faults["server SIGKILLs"] += 1
            elif roll < 0.85:
                long = rng.random() < 0.2
                await self.pause(slot.pid, rng.uniform(5.5, 7.0) if long else rng.uniform(0.1, 1.5))
                self.ledger.faults["server SIGSTOPs (> 5 s)" if long else "server SIGSTOPs"] += 1

    async def pause(self, pid: int, seconds: float) -> None:
        if not alive(pid):
            return
        os.kill(pid, signal.SIGSTOP)
        try:
            await anyio.sleep(seconds)
        finally:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)

    # ------------------------------------------------------------------ the run

    async def run(self) -> Report:
        s = self.settings
        began = time.monotonic()
        rng = random.Random(s.seed)
        await dbview.prepare(self.db)
        async with anyio.create_task_group() as servers:
            for slot in self.slots:
                servers.start_soon(slot.run, self.shutdown, random.Random(rng.random()))
            with anyio.fail_after(120):
                while any(slot.client is None for slot in self.slots):
                    await anyio.sleep(0.05)
            first = self.slots[0]
            assert first.client is not None
            for session in self.sessions:
                answer = await self.start(first, first.client, session, rng)
                assert answer.kind == "result", answer
            async with anyio.create_task_group() as chaos:
                for slot in self.slots:
                    for c in range(s.callers):
                        chaos.start_soon(self.caller, slot, f"s{slot.index}c{c}", random.Random(rng.random()))
                hook_rng, fault_rng = random.Random(rng.random()), random.Random(rng.random())
                if s.hooks:
                    chaos.start_soon(self.hooks, hook_rng)
                if s.faults:
                    chaos.start_soon(self.faults, fault_rng)
                await anyio.sleep(s.seconds)
                self.stop.set()
            self.shutdown.set()
        return await self.check(time.monotonic() - began)

    # ------------------------------------------------------------------ the check

    async def settle(self) -> tuple[dict[tuple[str, str], tuple[int, list[str]]], list[str]]:
        """One clean server starts and flushes every session, settling what is left; a second one, started after
        that, reads every page (nothing writes while it reads, so no cache can be stale). Returns the pages' final
        (version, lines) by (namespace, page_id), and what went wrong."""
        quiet = random.Random(0)
        problems: list[str] = []
        texts: dict[tuple[str, str], tuple[int, list[str]]] = {}
        slot = Slot(-1, self.target, self.ledger)  # never killed
        self.ledger.processes["server"] += 2
        async with self.target.serve("settle", 0, "auto") as (client, _):
            for session in self.sessions:
                start = await self.start(slot, client, session, quiet, may_cancel=False)
                flush_args = {"session_id": session, "event": "flush"}
                flush = await self.call(slot, client, "lifecycle", flush_args, quiet, may_cancel=False)
                self.report(session, flush, "rejected")
                problems += [
                    f"final {what} of {session}: {a}"
                    for what, a in (("start", start), ("flush", flush))
                    if a.kind != "result"
                ]
        pages = [(f"s:{sid}", sid, f"conv/{i}") for sid in self.sessions for i in range(self.settings.session_pages)]
        pages += [(f"p:{PROJECT}", self.sessions[-1], f"pref/{i}") for i in range(self.settings.project_pages)]
        async with self.target.serve("read", 0, "auto") as (client, _):
            for session in self.sessions:
                start = await self.start(slot, client, session, quiet, may_cancel=False)
                if start.kind != "result" or start.data["settled_committed"] or start.data["settled_rejected"]:
                    problems.append(f"reading server's start of {session}: {start}")
            for namespace, session, page_id in pages:
                args = {"session_id": session, "page_id": page_id}
                read = await self.call(slot, client, "page_read", args, quiet, may_cancel=False)
                if read.kind != "result":
                    problems.append(f"final read of {page_id} in {session}: {read}")
                elif read.data["outcome"] == "hit":
                    page = read.data["page"]
                    texts[(namespace, page_id)] = (int(page["version"]), str(page["text"]).splitlines())
        return texts, problems

    async def journal(self) -> dict[int, Row]:
        return {
            int(r["txn_id"]): Row(
                int(r["txn_id"]),
                r["session_id"],
                r["namespace"],
                r["page_id"],
                r["op"],
                r["status"],
                int(r["version"] or 0),
                _content(r["request"]),
                r["reasons"],
            )
            for r in await dbview.journal(self.db)
        }

    async def check(self, elapsed: float) -> Report:
        texts, violations = await self.settle()
        journal = await self.journal()
        committed: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in journal.values():
            if row.status == "committed":
                committed[(row.namespace, row.page_id)].append(row)
        for rows in committed.values():
            rows.sort(key=lambda r: (r.version, r.txn_id))
        for key, rows in sorted(committed.items()):
            if key not in texts:
                violations.append(f"{key}: committed journal rows but the page does not read back")
                continue
            version, lines = texts[key]
            have, want = {r.version for r in rows}, set(range(1, version + 1))
            if have != want:
                violations.append(
                    f"{key}: page at v{version}; committed journal rows lack versions {sorted(want - have)[:5]}"
                    f" and have versions beyond it {sorted(have - want)[:5]}"
                )
            if _replay(rows) != lines:
                violations.append(f"{key}: text at v{version} is not the replay of its committed journal rows")

        def present(token: str, row: Row) -> bool:
            key = (row.namespace, row.page_id)
            later_set = any(r.op == "set" and (r.version, r.txn_id) > (row.version, row.txn_id) for r in committed[key])
            return later_set or token in texts.get(key, (0, []))[1]

        lost: list[str] = []
        versions: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
        txns: Counter[int] = Counter()
        staged_rejected: Counter[str] = Counter()
        unsettled = unexplained = 0
        appends_refused: list[str] = []
        for ack in self.ledger.acks:
            found = journal.get(ack.txn_id)
            if ack.status != "rejected":
                txns[ack.txn_id] += 1
            if ack.status == "committed":
                versions[(found.namespace if found else "?", ack.page_id)][ack.version] += 1
                if found is None or (found.status, found.version, found.page_id) != (
                    "committed",
                    ack.version,
                    ack.page_id,
                ):
                    lost.append(f"{ack.token}: committed v{ack.version} of {ack.page_id}, journal has {found}")
                elif found.content != ack.token:
                    lost.append(f"{ack.token}: v{ack.version} of {ack.page_id} is another write ({found.content})")
                elif not present(ack.token, found):
                    lost.append(f"{ack.token}: committed v{ack.version} of {ack.page_id}, not in the page")
            elif ack.status == "staged":
                if found is None or found.content != ack.token:
                    lost.append(f"{ack.token}: staged as txn {ack.txn_id}, journal has {found}")
                elif found.status == "committed":
                    if not present(ack.token, found):
                        lost.append(
                            f"{ack.token}: staged, committed v{found.version} of {ack.page_id}, not in the page"
                        )
                elif found.status == "rejected":
                    staged_rejected[ack.session] += 1
                    unexplained += not found.reasons
                    codes = {r.get("code") for r in found.reasons}
                    if ack.op == "append" and codes - {"SCHEMA_INVALID"}:  # an append merges: no conflict to lose
                        appends_refused.append(f"{ack.token} ({ack.page_id}): {found.reasons[:1]}")
                else:
                    unsettled += 1
        if unexplained:
            violations.append(f"{unexplained} staged writes rejected without a reason")
        if appends_refused:
            violations.append(f"{len(appends_refused)} staged appends rejected later, e.g. {appends_refused[:3]}")
        if unsettled:
            violations.append(f"{unsettled} acknowledged staged writes still pending after every session settled")
        doubles = sum(n - 1 for per_page in versions.values() for n in per_page.values() if n > 1)
        doubles_txn = sum(n - 1 for n in txns.values() if n > 1)
        # a session whose every boundary answer arrived must have been told of each rejection; one answer lost to
        # a fault (a cancelled flush, a killed hook) may have carried any number, so such a session is not judged
        violations += [
            f"{session}: {staged_rejected[session]} acknowledged staged writes rejected later, "
            f"{self.ledger.reported_rejected[session]} rejections reported to the session"
            for session in self.sessions
            if staged_rejected[session] > self.ledger.reported_rejected[session]
            and not self.ledger.lost_reports[session]
        ]
        if lost:
            violations.append(f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}")
        if doubles:
            violations.append(f"{doubles} page versions acknowledged twice")
        if doubles_txn:
            violations.append(f"{doubles_txn} journal txn ids acknowledged twice")
        if self.ledger.unanswered:
            violations.append(f"{len(self.ledger.unanswered)} calls unanswered, e.g. {self.ledger.unanswered[:3]}")
        ok = await dbview.integrity(self.db)
        if ok != "ok":
            violations.append(f"integrity: {ok}")
        return Report(
            self.settings,
            self.ledger,
            violations,
            len(lost),
            doubles,
            sum(staged_rejected.values()),
            unsettled,
            Counter(r.status for r in journal.values()),
            ok,
            elapsed,
            self.target.label,
        )


def _gist(text: str, tool: str) -> str:
    """An error answer without its variable parts, to count alike answers together."""
    text = text.replace(f"Error executing tool {tool}:", "").replace("The memory store failed:", "").strip()
    return " ".join(re.sub(r"'[^']*'|\d+", "N", text).split()[:10]) or f"bare error from {tool}"


def _content(request: Any) -> str | None:
    value = request.get("content") if isinstance(request, dict) else None
    return value if isinstance(value, str) else None


def _replay(rows: Sequence[Row]) -> list[str]:
    """The text a page must have if exactly its committed journal rows were applied, in order."""
    lines: list[str] = []
    for row in rows:
        if row.op in ("create", "set") and row.content is not None:
            lines = row.content.splitlines()
        elif row.op == "append" and row.content:
            lines = [*lines, *row.content.splitlines()]
    return lines


async def run_nemesis(workdir: Path, settings: Settings, db: DB | None = None) -> Report:
    """The nemesis on ``db``: a SQLite file (default ``workdir/nemesis.db``) over stdio, or a fresh PostgreSQL
    database (a postgresql:// URL) over HTTP."""
    return await Nemesis(settings, workdir, db).run()


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.nemesis", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=Settings.seconds, help="how long faults are injected")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--servers", type=int, default=Settings.servers)
    parser.add_argument("--sessions", type=int, default=Settings.sessions)
    parser.add_argument("--dir", type=Path, default=None, help="keep the database and logs here")
    parser.add_argument(
        "--pg",
        metavar="URL",
        default=None,
        help="run on a fresh PostgreSQL database created (and dropped) on this server, over HTTP",
    )
    parser.add_argument("--calm", action="store_true", help="the control run: one server, caller, session; no faults")
    args = parser.parse_args(argv)
    settings = (
        Settings.calm(args.seconds, args.seed)
        if args.calm
        else Settings(seconds=args.seconds, seed=args.seed, servers=args.servers, sessions=args.sessions)
    )
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="clawvm-nemesis-"))
    workdir.mkdir(parents=True, exist_ok=True)

    async def run() -> Report:
        if args.pg is None:
            return await run_nemesis(workdir, settings)
        async with dbview.fresh_postgres(args.pg) as url:
            return await run_nemesis(workdir, settings, url)

    report = anyio.run(run)
    out(report.figures())
    for line in report.violations:
        out(f"  VIOLATION {line}")
    out(f"  files: {workdir}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
