"""The replay driver: one trace, one policy, one budget, through the real engine (or a real MCP server).

Everything in ``ReplayResult.metrics`` is a pure function of (trace, policy, budget): counts, sorted keys and
floats rounded to six places. Wall-clock overhead lives apart in ``ReplayResult.timing``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..engine import EngineError
from ..errors import ClawVMError
from ..faults import FAULT_KINDS
from ..journal import WriteRequest
from ..pages import Fidelity, Provenance
from .backends import Backend, EngineBackend
from .policies import ReplayPolicy, get_policy
from .trace import Event, PageSpec, Trace, full_tokens

DEFAULT_BUDGET = 4000
# sessions open with a budget that admits every page, so no write is refused for the pin floor; the replay
# budget is applied at every assembly, where phase 1 reports physical insufficiency (docs/replay.md)
SESSION_BUDGET = 1_000_000
ROUND = 6


class ReplayError(ClawVMError, RuntimeError):
    """The engine refused an operation the trace asked for; the message names the trace line."""


@dataclass(slots=True)
class ReplayResult:
    metrics: dict[str, object]
    timing: dict[str, object]

    def to_json(self, with_timing: bool = True) -> str:
        data: dict[str, object] = dict(self.metrics)
        if with_timing:
            data["timing"] = self.timing
        return json.dumps(data, sort_keys=True, indent=2)


def synthesize(spec: PageSpec) -> str:
    """Content for a token-only page: satisfies the type's floor fields and carries its id for recall."""
    pid = spec.page_id
    if spec.type == "bootstrap":
        return f"{pid}\n- {pid} rule one\n- {pid} rule two"
    if spec.type == "plan":
        return f"Plan {pid}\n- [ ] {pid} next step\n- [ ] {pid} later step"
    if spec.type == "preference":
        return f"{pid}: preferred"
    return f"{pid} {spec.type} record"


@dataclass(slots=True)
class _Session:
    turn: int = 0
    demands: dict[str, Fidelity] = field(default_factory=lambda: {})
    alias: dict[str, str] = field(default_factory=lambda: {})  # trace result page -> engine evidence page
    utility: dict[str, tuple[float | None, float | None]] = field(default_factory=lambda: {})
    snapshot: dict[str, int] = field(default_factory=lambda: {})
    after_snapshot: dict[str, int] = field(default_factory=lambda: {})  # faults reported by session_end
    ended: bool = False


class Replayer:
    def __init__(self, trace: Trace, policy: ReplayPolicy, budget: int | None, backend: Backend) -> None:
        self.trace = trace
        self.policy = policy
        self.budget_override = budget
        self.backend = backend
        self.sessions: dict[str, _Session] = {}
        self.current: str | None = None
        self.budget = budget or DEFAULT_BUDGET
        multi = trace.sessions > 1
        self.scale = policy.multisession_budget_scale if multi else 1.0
        self.results: dict[str, PageSpec] = {}  # latest definition of each tool result page
        self.result_ids = trace.result_pages
        self.future_index = self._index_demands()
        self.tokens_used: list[int] = []
        self.turn_ns: dict[tuple[str, int], int] = {}
        self.counts: dict[str, int] = dict.fromkeys(
            (
                "assemblies",
                "implicit_assemblies",
                "physical_insufficiency",
                "faults_under_insufficiency",
                "missing_demands",
                "recall_expect_missed",
                "recalls_not_sent",
                "rejected_writes",
                "turns",
            ),
            0,
        )
        self.rejections: dict[str, int] = {}
        self.position = 0

    # ------------------------------------------------------------------ helpers

    def _index_demands(self) -> dict[str, list[tuple[int, int, str]]]:
        index: dict[str, list[tuple[int, int, str]]] = {}
        for pos, e in enumerate(self.trace.events):
            if e.op == "demand":
                index.setdefault(e.session, []).append((pos, e.turn, e.page_id))
        return index

    async def _future(self, session: str, turn: int) -> dict[str, int] | None:
        horizon = self.policy.engine.horizon
        if horizon <= 0:
            return None
        s = self.sessions[session]
        out: dict[str, int] = {}
        for pos, t, page_id in self.future_index.get(session, []):
            if pos > self.position and turn < t <= turn + horizon:
                target = s.alias.get(page_id, page_id)
                if await self.backend.version(session, target) is not None:
                    out[target] = out.get(target, 0) + 1
        return out

    def _charge(self, session: str, started: int) -> None:
        key = (session, self.sessions[session].turn)
        self.turn_ns[key] = self.turn_ns.get(key, 0) + time.perf_counter_ns() - started

    def _fail(self, event: Event, exc: Exception) -> ReplayError:
        return ReplayError(f"{self.trace.name}:{event.line}: {exc}")

    # ------------------------------------------------------------------ events

    def _refuse_unsupported(self) -> None:
        """A trace feature the backend would drop changes what is measured: refuse it up front, naming the line."""
        event = self.trace.first_utility
        if event is not None and not self.backend.per_page_utility:
            assert event.page is not None
            raise ReplayError(
                f"{self.trace.name}:{event.line}: page {event.page.page_id!r} sets base_utility/recompute_cost, "
                "which MCP cannot carry (page_write has no such fields); replay this trace in process (without "
                "--via mcp) or drop those fields"
            )

    async def run(self) -> ReplayResult:
        try:
            self._refuse_unsupported()
            for position, event in enumerate(self.trace.events):
                self.position = position
                try:
                    await self._event(event)
                except EngineError as exc:
                    raise self._fail(event, exc) from None
            for sid in sorted(self.sessions):
                if sid == self.current:
                    await self._flush_demands(sid)
                if not self.sessions[sid].ended:
                    await self._snapshot(sid)
        finally:
            await self.backend.close()
        return ReplayResult(self._metrics(), self._timing())

    async def _event(self, event: Event) -> None:
        if event.op == "session_start":
            await self._start(event)
            return
        sid = event.session
        s = self.sessions[sid]
        if event.turn > s.turn:
            await self._flush_demands(sid)
            while s.turn < event.turn:
                started = time.perf_counter_ns()
                await self.backend.lifecycle(sid, "turn_end")
                self._charge(sid, started)
                s.turn += 1
                self.counts["turns"] += 1
        if event.op == "page":
            assert event.page is not None
            await self._page(sid, s, event.page, event.dirty, event.line)
        elif event.op == "demand":
            target = s.alias.get(event.page_id, event.page_id)
            if await self.backend.version(sid, target) is None:
                self.counts["missing_demands"] += 1
                return
            want = Fidelity.parse(event.fidelity)
            s.demands[target] = max(want, s.demands.get(target, Fidelity.NONE))
        elif event.op == "assemble":
            await self._assemble(sid, implicit=False)
        elif event.op == "tool":
            await self._tool(sid, s, event)
        elif event.op == "recall":
            await self._recall(sid, s, event)
        else:
            await self._boundary(sid, s, event.op)

    async def _start(self, event: Event) -> None:
        if self.current is not None and self.current != event.session:
            await self._flush_demands(self.current)
        budget = self.budget_override or event.budget or DEFAULT_BUDGET
        self.budget = budget
        started = time.perf_counter_ns()
        result = await self.backend.session_start(event.session, event.project, SESSION_BUDGET)
        s = self.sessions.setdefault(event.session, _Session())
        self._charge(event.session, started)
        s.turn = max(s.turn, result.turn)
        s.after_snapshot, s.ended = {}, False
        self.current = event.session

    async def _write(self, sid: str, req: WriteRequest) -> None:
        started = time.perf_counter_ns()
        result = await self.backend.write(sid, req)
        self._charge(sid, started)
        if result.status == "rejected":
            self.counts["rejected_writes"] += 1
            for r in result.reasons:
                self.rejections[r.code] = self.rejections.get(r.code, 0) + 1
            return
        await self._apply_utility(sid, req.page_id)

    async def _apply_utility(self, sid: str, page_id: str) -> None:
        pair = self.sessions[sid].utility.get(page_id)
        if pair is not None:
            await self.backend.set_utility(sid, page_id, *pair)

    async def _page(self, sid: str, s: _Session, spec: PageSpec, dirty: bool, line: int) -> None:
        if spec.page_id in self.result_ids and spec.page_id not in s.alias:
            self.results[spec.page_id] = spec  # materialised by the tool call that returns it
            return
        target = s.alias.get(spec.page_id, spec.page_id)
        if spec.base_utility is not None or spec.recompute_cost is not None:
            s.utility[target] = (spec.base_utility, spec.recompute_cost)
        version = await self.backend.version(sid, target)
        exists = version is not None
        req = WriteRequest(
            op="set" if exists else "create",
            page_id=target,
            provenance=Provenance("harness", f"ext:trace:{line}", s.turn),
            type=spec.type,
            content=spec.content if spec.content is not None else synthesize(spec),
            fields=dict(spec.fields) if spec.fields is not None else None,
            base_version=version,
            scope=spec.scope,
            pin=spec.pin,
            commit="boundary" if dirty else "now",
            tokens=full_tokens(spec) if spec.tokens is not None else None,
        )
        if spec.page_id in s.alias:
            self.results[spec.page_id] = spec
        await self._write(sid, req)

    async def _tool(self, sid: str, s: _Session, event: Event) -> None:
        spec = self.results.get(event.result_page) if event.result_page else None
        if spec is not None:
            content = spec.content if spec.content is not None else synthesize(spec)
        else:
            content = f"result of {event.name} {json.dumps(event.args, sort_keys=True)}"
        started = time.perf_counter_ns()
        result = await self.backend.tool(sid, event.name, event.args, content, event.idempotent)
        self._charge(sid, started)
        page_id = result.evidence_page_id
        if event.result_page:
            s.alias[event.result_page] = page_id
        if result.status == "duplicate_signature":
            return
        if spec is not None and spec.tokens is not None:
            req = WriteRequest(
                "set",
                page_id,
                Provenance("harness", f"ext:trace:{event.line}", s.turn),
                "evidence",
                content,
                base_version=await self.backend.version(sid, page_id),
                tokens=full_tokens(spec),
            )
            await self._write(sid, req)
        if spec is not None and (spec.base_utility is not None or spec.recompute_cost is not None):
            s.utility[page_id] = (spec.base_utility, spec.recompute_cost)
            await self._apply_utility(sid, page_id)

    async def _recall(self, sid: str, s: _Session, event: Event) -> None:
        started = time.perf_counter_ns()
        result = await self.backend.recall(sid, event.query, event.recall_type, event.backend)
        self._charge(sid, started)
        if result is None:
            self.counts["recalls_not_sent"] += 1
            return
        if event.backend == "ok":
            found = {h.page_id for h in result.results}
            wanted = {s.alias.get(p, p) for p in event.expect}
            self.counts["recall_expect_missed"] += len(wanted - found)

    async def _boundary(self, sid: str, s: _Session, op: str) -> None:
        await self._flush_demands(sid)
        if op == "session_end":
            await self._snapshot(sid)
        started = time.perf_counter_ns()
        result = await self.backend.lifecycle(sid, op)
        self._charge(sid, started)
        for fault in result.faults:
            if op == "session_end":
                s.after_snapshot[fault.kind] = s.after_snapshot.get(fault.kind, 0) + 1
        s.ended = s.ended or op == "session_end"
        for page_id in s.utility:
            await self._apply_utility(sid, page_id)

    async def _flush_demands(self, sid: str) -> None:
        if self.sessions[sid].demands:
            self.counts["implicit_assemblies"] += 1
            await self._assemble(sid, implicit=True)

    async def _assemble(self, sid: str, implicit: bool) -> None:
        s = self.sessions[sid]
        demands = {pid: lv.label for pid, lv in sorted(s.demands.items())}
        s.demands = {}
        budget = max(0, int(self.budget * self.scale))
        fits = await self.backend.floor_fits(sid, demands, self.budget)
        before = await self.backend.faults_total(sid)
        future = await self._future(sid, s.turn)
        started = time.perf_counter_ns()
        result = await self.backend.assemble(sid, budget, list(demands.items()), future)
        self._charge(sid, started)
        after = await self.backend.faults_total(sid)
        self.counts["assemblies"] += 1
        self.tokens_used.append(result.tokens_used)
        if fits is None:
            fits = not result.physical_insufficiency
        if not fits:
            self.counts["physical_insufficiency"] += 1
            if before is not None and after is not None:
                self.counts["faults_under_insufficiency"] += after - before

    async def _snapshot(self, sid: str) -> None:
        stats = await self.backend.stats(sid)
        snap = {k: int(v) for k, v in stats.faults.items()}
        snap["duplicate_signature"] = stats.duplicate_signature
        snap["hits"] = stats.hits
        self.sessions[sid].snapshot = snap
        self.sessions[sid].after_snapshot = {}

    # ------------------------------------------------------------------ results

    def _metrics(self) -> dict[str, object]:
        faults = dict.fromkeys(FAULT_KINDS, 0)
        dup = hits = 0
        for s in self.sessions.values():
            for kind in FAULT_KINDS:
                faults[kind] += s.snapshot.get(kind, 0) + s.after_snapshot.get(kind, 0)
            dup += s.snapshot.get("duplicate_signature", 0)
            hits += s.snapshot.get("hits", 0)
        total = sum(faults.values())
        used = self.tokens_used or [0]
        return {
            "trace": self.trace.name,
            "policy": self.policy.name,
            "budget": self.budget,
            "effective_budget": int(self.budget * self.scale),
            "switches": self.policy.switches(),
            "faults": {k: faults[k] for k in sorted(faults)},
            "faults_total": total,
            "duplicate_signature": dup,
            "hits": hits,
            "thrash": round((total + dup) / (hits + 1), ROUND),
            "fits": self.counts["physical_insufficiency"] == 0,
            **{k: self.counts[k] for k in sorted(self.counts)},
            "rejections": dict(sorted(self.rejections.items())),
            "tokens_used": {"min": min(used), "max": max(used), "mean": round(statistics.fmean(used), ROUND)},
        }

    def _timing(self) -> dict[str, object]:
        per_turn = sorted(ns / 1000 for ns in self.turn_ns.values()) or [0.0]
        p95 = per_turn[min(len(per_turn) - 1, round(0.95 * (len(per_turn) - 1)))]
        return {
            "overhead_us_per_turn": {
                "median": round(statistics.median(per_turn), 1),
                "p95": round(p95, 1),
                "max": round(per_turn[-1], 1),
                "turns": len(per_turn),
            }
        }


async def replay(
    trace: Trace, policy: ReplayPolicy | str, budget: int | None = None, backend: Backend | None = None
) -> ReplayResult:
    """Run ``trace`` under ``policy`` with ``budget`` tokens per assembly (default: the trace's own)."""
    pol = get_policy(policy) if isinstance(policy, str) else policy
    return await Replayer(trace, pol, budget, backend or EngineBackend(pol)).run()


def summarize(metrics: Mapping[str, object]) -> str:
    """One human line per run, for the CLI without --json."""
    faults = metrics["faults"]
    assert isinstance(faults, dict)
    nonzero = ", ".join(f"{k}={v}" for k, v in faults.items() if v) or "none"
    return (
        f"{metrics['trace']} policy={metrics['policy']} budget={metrics['budget']}: "
        f"faults={metrics['faults_total']} ({nonzero}) dup_sig={metrics['duplicate_signature']} "
        f"hits={metrics['hits']} thrash={metrics['thrash']} "
        f"insufficient_assemblies={metrics['physical_insufficiency']}"
    )
