"""``clawvm-mcp bench``: what the memory costs per turn, per tool call and per commit, each next to a baseline.

Every figure is measured in the same run as its baseline and printed with the ratio, so the numbers survive a
noisy machine:

- engine overhead per turn (turn advance + one validated boundary write + assembly with fault observation, no
  store I/O) against the same turn with the project's whole-table reference selector over the cached pages (the
  same selection without the incremental index), and, as a second row, a naive assembly that re-derives and
  re-tokenizes every page each turn;
- peak Python memory of one engine turn (tracemalloc), and the resident page table for reference;
- tool round trips over stdio with a real MCP client (page_read, page_write commit now, context_assemble)
  against a bare MCPServer with one no-op tool, and cold start to the first tool result;
- the engine's real write path (``ClawVMEngine.write`` over a MemoryStore): a commit-now append, a staged write and
  a create, each per call;
- committed writes per second on a WAL file database, in process and over MCP (in-process client), against raw
  SQLite commits with the same pragmas; ``session_start`` of the whole table in process and over stdio; a create
  over stdio.

The bench raises ``EngineConfig.max_pages_per_session`` (100,000 by default) to ``PAGE_LIMIT`` in its own engines
and in its own stdio server (``python -m clawvm_mcp.replay.bench --serve DB``, the same ``create_server``), so
creates at 100,000 pages and more are timed instead of refused.

Method and numbers: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from ..engine import ClawVMEngine, EngineConfig, SessionState
from ..engine.assembly import assemble_turn
from ..engine.merge import PageMerger
from ..engine.runtime import Runtime
from ..engine.session import advance_turn, project_namespace, session_namespace
from ..engine.writeback import check, install, namespace_for, stage_in_cache
from ..journal import WriteRequest
from ..page_table import PageTable
from ..pages import Fidelity, Page, PageType, Provenance
from ..represent import build_representations
from ..selector import SelectorPolicy, select
from ..store.base import PageCommit, SessionRecord, Store
from ..tokens import TokenCounter
from . import reference_selector as ref

DEFAULT_SIZES = (50, 1_000, 10_000)
RESIDENT_MAX_PAGES = 20_000
PAGE_LIMIT = 1_000_000  # the bench's own max_pages_per_session (the default 100,000 would refuse creates at that size)
BUDGET = 4000  # the default session budget: a model's context does not grow with the page table
PAPER_BUDGET = 300  # mid-range of the paper's sweep (120-500 tokens), for the like-for-like engine figure
SESSION = "bench"
PROJECT = "default"
_WORDS = (
    "the deploy rule test file path config server client token page budget cache write read error fix plan step "
    "build commit review merge branch schema query index user tool result agent memory context prompt session"
).split()
_MIX: tuple[PageType, ...] = (
    "evidence",
    "conversation",
    "evidence",
    "conversation",
    "preference",
    "evidence",
    "conversation",
    "plan",
    "conversation",
    "evidence",
)


# ---------------------------------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Stats:
    median: float
    p95: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        data = sorted(samples)
        if not data:
            return cls(0.0, 0.0, 0.0, 0)
        p95 = data[min(len(data) - 1, int(round(0.95 * (len(data) - 1))))]
        return cls(statistics.median(data), p95, data[-1], len(data))


@dataclass(slots=True)
class SizeResult:
    pages: int
    figures: dict[str, dict[str, float]] = field(default_factory=lambda: {})

    def put(self, name: str, **values: float) -> None:
        self.figures[name] = {k: round(v, 3) for k, v in values.items()}


@dataclass(frozen=True, slots=True)
class Plan:
    """Iteration counts per page-table size; --quick divides them so CI runs in seconds."""

    engine_turns: int
    naive_turns: int
    reads: int
    writes: int
    assembles: int
    commits: int
    reference_turns: int


def plan_for(pages: int, quick: bool) -> Plan:
    if pages <= 100:
        p = Plan(1000, 60, reads=200, writes=100, assembles=100, commits=300, reference_turns=300)
    elif pages <= 2_000:
        p = Plan(200, 4, reads=200, writes=100, assembles=40, commits=300, reference_turns=40)
    elif pages <= 20_000:
        p = Plan(30, 1, reads=100, writes=50, assembles=6, commits=200, reference_turns=6)
    else:
        p = Plan(20, 1, reads=50, writes=30, assembles=6, commits=100, reference_turns=3)
    if quick:
        p = Plan(*(max(1, getattr(p, f) // 10) for f in Plan.__dataclass_fields__))
    return p


def _text(rng: random.Random, lines: int) -> str:
    return "\n".join(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 18))) for _ in range(lines))


def make_requests(n: int, seed: int = 7) -> list[WriteRequest]:
    """A deterministic page table: 1 bootstrap, 2 constraints, then a mix of evidence, conversation, plans and
    preferences of 2-12 lines (about 20-300 tokens at full fidelity)."""
    rng = random.Random(seed)
    out: list[WriteRequest] = []
    prov = Provenance("harness", "ext:bench", 0)
    for i in range(n):
        page_type: PageType = "bootstrap" if i == 0 else "constraint" if i < 3 else _MIX[i % len(_MIX)]
        lines = 2 if page_type in ("bootstrap", "constraint") else rng.randint(2, 12)
        content = _text(rng, lines)
        if page_type == "plan":
            content = "Ship the change\n- [x] read the code\n- [ ] write the bench\n- [ ] document"
        out.append(WriteRequest("create", f"{page_type[:4]}/{i:05d}", prov, page_type, content))
    return out


def make_pages(requests: Sequence[WriteRequest], counter: TokenCounter) -> list[Page]:
    """Ingest through the engine's own merge (the path page_write takes): representations built once each."""
    merge = PageMerger(counter, 0, 0)
    return [replace(merge(req, None), version=1) for req in requests]


def _namespace(page: Page) -> str:
    return project_namespace(PROJECT) if page.scope == "project" else session_namespace(SESSION)


class _NoIO:
    """A store that fails on any call: proof that the measured engine turn does no store I/O."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"engine turn touched the store ({name})")


def loaded_state(pages: Sequence[Page]) -> SessionState:
    state = SessionState(SessionRecord(SESSION, "local", PROJECT, BUDGET))
    for page in pages:
        install(state, _namespace(page), page)
    return state


# ---------------------------------------------------------------------------------------------------- engine


def _validate_write(rt: Runtime, state: SessionState, req: WriteRequest) -> None:
    """The in-memory half of a boundary write, with the engine's own functions: the five checks, the merge (which
    derives and counts the new version's representations once), and the staged page in the cache. The store half
    (journal row insert) is what --writes measures."""
    current = state.pages.get(req.page_id)
    committed = current.version if current is not None else 0
    reasons, merged = check(rt, state, req, current, committed)
    if merged is None or reasons:
        raise AssertionError(f"bench write rejected: {reasons}")
    stage_in_cache(state, namespace_for(state, req), merged, [len(state.staged)], committed)


def _turn_inputs(pages: Sequence[Page], turns: int, seed: int) -> list[tuple[WriteRequest, dict[str, Fidelity]]]:
    """Per turn: one ``set`` of a conversation page to fresh 3-line content (so every turn tokenizes a new
    version of the same size) and two demands: a random page at full, the written page at structured."""
    rng = random.Random(seed)
    convo = [p for p in pages if p.type == "conversation"] or [pages[-1]]
    ids = [p.page_id for p in pages]
    prov = Provenance("model", "ext:bench", 0)
    out = []
    for t in range(turns):
        target = convo[t % min(len(convo), 8)]  # a few hot pages, as in a real session
        content = f"turn {t}\n" + _text(rng, 2)
        req = WriteRequest("set", target.page_id, prov, content=content, base_version=target.version, commit="boundary")
        out.append((req, {rng.choice(ids): Fidelity.FULL, target.page_id: Fidelity.STRUCTURED}))
    return out


class _TimedCounter(TokenCounter):
    """Adds up the time spent counting tokens, so a turn's figure can be shown with and without tokenizing the
    version it writes (ingest work, done once per page version, that a pre-sized replay never does)."""

    def __init__(self, cache_size: int) -> None:
        super().__init__(cache_size)
        self.spent_ns = 0

    def count(self, text: str) -> int:
        t0 = time.perf_counter_ns()
        n = super().count(text)
        self.spent_ns += time.perf_counter_ns() - t0
        return n


def _engine_turns(rt: Runtime, pages: Sequence[Page], turns: int, budget: int, name: str, result: SizeResult) -> None:
    """Time whole turns on a loaded session: advance (recency decay), one validated boundary write with its
    staged bookkeeping, and the assembly with fault observation. 20 warm-up turns are not counted. Each budget
    gets its own written texts, so no run finds the previous run's token counts cached."""
    state = loaded_state(pages)
    counter = rt.counter if isinstance(rt.counter, _TimedCounter) else None
    perf = time.perf_counter_ns
    totals: list[float] = []
    asm: list[float] = []
    writes: list[float] = []
    tokenize: list[float] = []
    policy: list[float] = []
    for i, (req, wanted) in enumerate(_turn_inputs(pages, turns + 20, seed=len(pages) * 100_000 + budget)):
        counted = counter.spent_ns if counter else 0
        t0 = perf()
        advance_turn(state, state.turn + 1)
        _validate_write(rt, state, replace(req, turn=state.turn))
        t1 = perf()
        assemble_turn(rt.policy, state, budget, wanted, None)
        t2 = perf()
        if i >= 20:  # warm-up fills the interpreter's caches, as a running server's are
            counted = (counter.spent_ns if counter else 0) - counted
            totals.append((t2 - t0) / 1e3)
            writes.append((t1 - t0) / 1e3)
            asm.append((t2 - t1) / 1e3)
            tokenize.append(counted / 1e3)
            policy.append((t2 - t0 - counted) / 1e3)
    s, a, w, t, p = (Stats.of(v) for v in (totals, asm, writes, tokenize, policy))
    result.put(f"{name}_turn_us", median=s.median, p95=s.p95, max=s.max, n=s.n, budget=budget)
    result.put(f"{name}_assemble_us", median=a.median, p95=a.p95, max=a.max)
    result.put(f"{name}_write_us", median=w.median, p95=w.p95, max=w.max)
    result.put(f"{name}_tokenize_us", median=t.median, p95=t.p95, max=t.max)
    result.put(f"{name}_policy_us", median=p.median, p95=p.p95, max=p.max)


def _reference_policy(policy: SelectorPolicy) -> ref.SelectorPolicy:
    return ref.SelectorPolicy(policy.auto_pin_hard, policy.prefetch_pointer, policy.upgrade_mode)


def _reference_turns(rt: Runtime, pages: Sequence[Page], turns: int, result: SizeResult) -> None:
    """The fair baseline: the same turns (advance, the same validated write) with the whole-table reference selector
    (``reference_selector.py``, the frozen one tests/test_selector.py holds the engine to) over the cached pages instead of the indexed
    assembly. Representations and token counts are cached as in the engine; only the incremental index is missing.
    The first turns check that both selectors place the same pages at the same levels (outside the timing)."""
    state = loaded_state(pages)
    policy = _reference_policy(rt.policy.selector)
    perf = time.perf_counter_ns
    totals: list[float] = []
    selects: list[float] = []
    warm = min(5, turns)
    for i, (req, wanted) in enumerate(_turn_inputs(pages, turns + warm, seed=len(pages) * 100_000 + BUDGET)):
        t0 = perf()
        advance_turn(state, state.turn + 1)
        _validate_write(rt, state, replace(req, turn=state.turn))
        t1 = perf()
        picked = ref.select(state.pages.values(), wanted, BUDGET, policy, state.recency)
        t2 = perf()
        if i < warm:
            mine = select(state.pages, wanted, BUDGET, rt.policy.selector, state.recency)
            theirs = {c.page_id: c.level for c in picked.choices if c.level is not Fidelity.NONE}
            if mine.resident() != theirs or mine.tokens_used != picked.tokens_used:
                raise AssertionError("the reference selector and the engine disagree: the baseline is not fair")
        else:
            totals.append((t2 - t0) / 1e3)
            selects.append((t2 - t1) / 1e3)
        state.turn_demands.update(wanted)
    t, s = Stats.of(totals), Stats.of(selects)
    result.put("reference_turn_us", median=t.median, p95=t.p95, max=t.max, n=t.n)
    result.put("reference_select_us", median=s.median, p95=s.p95, max=s.max)


def bench_engine(pages: Sequence[Page], plan: Plan, result: SizeResult) -> None:
    rt = Runtime(_NoIO(), _TimedCounter(65_536), EngineConfig())  # type: ignore[arg-type]
    _engine_turns(rt, pages, plan.engine_turns, PAPER_BUDGET, "paper", result)
    _engine_turns(rt, pages, plan.engine_turns, BUDGET, "engine", result)
    _reference_turns(rt, pages, plan.reference_turns, result)
    state = loaded_state(pages)
    inputs = _turn_inputs(pages, max(20, plan.naive_turns), seed=len(pages))
    perf = time.perf_counter_ns

    # memory: the transient peak of one turn (everything a turn allocates, freed or not), and the page table
    tracemalloc.start()
    peaks = []
    for req, wanted in inputs[:20]:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        advance_turn(state, state.turn + 1)
        _validate_write(rt, state, replace(req, turn=state.turn))
        assemble_turn(rt.policy, state, BUDGET, wanted, None)
        peaks.append(tracemalloc.get_traced_memory()[1] - before)
    tracemalloc.stop()
    result.put("engine_peak_turn_kb", median=statistics.median(peaks) / 1024, max=max(peaks) / 1024)
    if len(pages) <= RESIDENT_MAX_PAGES:  # rebuilding a larger table under tracemalloc takes minutes
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        table = make_pages(make_requests(len(pages)), TokenCounter(cache_size=0))
        resident = loaded_state(table)
        resident_bytes = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del resident, table
        result.put("page_table_kb", value=resident_bytes / 1024)

    # baseline: every turn re-derives every page's four representations and re-tokenizes them, then selects
    naive_counter = TokenCounter(cache_size=0)
    naive: list[float] = []
    recency: dict[str, float] = {}
    for _, wanted in inputs[: plan.naive_turns]:
        t0 = perf()
        fresh = [
            replace(
                p,
                representations=build_representations(
                    naive_counter,
                    page_id=p.page_id,
                    page_type=p.type,
                    version=p.version,
                    title=p.title,
                    content=p.content,
                    fields=p.fields,
                ),
            )
            for p in state.pages.values()
        ]
        select(PageTable(fresh), wanted, BUDGET, rt.policy.selector, recency)
        naive.append((perf() - t0) / 1e3)
    n = Stats.of(naive)
    result.put("naive_turn_us", median=n.median, p95=n.p95, max=n.max, n=n.n)


# ---------------------------------------------------------------------------------------------------- stdio


def _child_env() -> dict[str, str]:
    """stdio children get a minimal environment from the SDK; pass what a Python child needs, quietly."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "LANG", "TMPDIR")}
    env["CLAWVM_LOG"] = "WARNING"
    return env


def bench_config() -> EngineConfig:
    """The engine's defaults with the page limit raised to PAGE_LIMIT, so the large tables can still take creates."""
    return EngineConfig(max_pages_per_session=PAGE_LIMIT)


async def fill(store: Store, pages: Sequence[Page]) -> None:
    """Claim the session and commit the page table through the store in batches of 1,000 (setup, not measured):
    pages built by the engine's merge, committed by the store's own commit, as a create would leave them."""
    engine = ClawVMEngine(store, TokenCounter(), bench_config())
    await engine.session_start(SESSION, PROJECT, BUDGET)
    for at in range(0, len(pages), 1_000):
        await store.commit([PageCommit(_namespace(p), replace(p, version=1), 0) for p in pages[at : at + 1_000]])


async def populate(db: Path, pages: Sequence[Page]) -> None:
    """The page table on a SQLite file, for the stdio and commit parts."""
    from ..store.sqlite import SQLiteStore

    store = await SQLiteStore.open(db)
    try:
        await fill(store, pages)
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------------- write path


def _hot(pages: Sequence[Page]) -> list[str]:
    """The few conversation pages the timed writes go to, as a real session's turns do."""
    return ([p.page_id for p in pages if p.type == "conversation"] or [pages[-1].page_id])[:8]


async def bench_writes(pages: Sequence[Page], plan: Plan, result: SizeResult) -> None:
    """``ClawVMEngine.write`` itself, over a MemoryStore holding the table (so what is timed is the engine's whole
    write path, validation, merge, staged-row bookkeeping and the store call, without a disk): a commit-now append,
    a staged append (``commit: "boundary"``) and a create of a new evidence page."""
    from ..store.memory import MemoryStore

    store = MemoryStore()
    await fill(store, pages)
    engine = ClawVMEngine(store, TokenCounter(), bench_config())
    await engine.session_start(SESSION, PROJECT, BUDGET)
    prov = Provenance("model", "ext:bench", 0)
    convo = [p.page_id for p in pages if p.type == "conversation"] or [pages[-1].page_id]
    # each kind of append gets its own 8 pages where the table has them, so both start from the same page sizes
    now, staged = convo[:8], convo[8:16] or convo[:8]
    rng = random.Random(len(pages))
    texts = [_text(rng, 3) for _ in range(plan.writes)]

    async def timed(label: str, status: str, make: Callable[[int], WriteRequest]) -> None:
        samples = []
        for i in range(plan.writes + 5):
            req = make(i)
            t0 = time.perf_counter_ns()
            out = await engine.write(SESSION, req)
            dt = (time.perf_counter_ns() - t0) / 1e3
            if out.status != status:
                raise RuntimeError(f"bench {label} write was {out.status}, not {status}: {out.reasons}")
            if i >= 5:
                samples.append(dt)
        st = Stats.of(samples)
        result.put(f"write_{label}_us", median=st.median, p95=st.p95, max=st.max, n=st.n)

    await timed(
        "append_now",
        "committed",
        lambda i: WriteRequest("append", now[i % len(now)], prov, content=texts[i % len(texts)]),
    )
    await timed(
        "staged",
        "staged",
        lambda i: WriteRequest(
            "append", staged[i % len(staged)], prov, content=texts[i % len(texts)], commit="boundary"
        ),
    )
    await engine.lifecycle(SESSION, "flush")
    await timed(
        "create",
        "committed",
        lambda i: WriteRequest("create", f"evid/new/{i:06d}", prov, "evidence", content=texts[i % len(texts)]),
    )


async def _timed(n: int, op: Callable[[int], Awaitable[object]]) -> Stats:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        samples.append((time.perf_counter() - t0) * 1e3)
    return Stats.of(samples)


def _check(result: Any) -> dict[str, Any]:
    if result.is_error or result.structured_content is None:
        raise RuntimeError(f"tool call failed: {result.content}")
    data: dict[str, Any] = result.structured_content
    return data


async def bench_stdio(db: Path, pages: Sequence[Page], plan: Plan, result: SizeResult) -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    serve = StdioServerParameters(
        command=sys.executable, args=["-m", "clawvm_mcp.replay.bench", "--serve", str(db)], env=_child_env()
    )
    noop = StdioServerParameters(
        command=sys.executable, args=["-m", "clawvm_mcp.replay.bench", "--noop-server"], env=_child_env()
    )
    prov = {"source": "model", "ref": "ext:bench", "turn": 0}
    ids = [p.page_id for p in pages]
    convo = [p.page_id for p in pages if p.type == "conversation"] or ids[-1:]

    t0 = time.perf_counter()
    async with Client(noop, cache=None) as base:
        await base.call_tool("noop", {})
        noop_cold = (time.perf_counter() - t0) * 1e3
        for _ in range(10):
            await base.call_tool("noop", {})
        noop_rt = await _timed(plan.reads, lambda i: base.call_tool("noop", {}))

    t0 = time.perf_counter()
    async with Client(serve, cache=None) as c:
        t1 = time.perf_counter()
        _check(await c.call_tool("session_start", {"session_id": SESSION, "budget": BUDGET}))
        cold = (time.perf_counter() - t0) * 1e3
        started = (time.perf_counter() - t1) * 1e3
        for i in range(10):
            _check(await c.call_tool("page_read", {"session_id": SESSION, "page_id": ids[i % len(ids)]}))

        async def read(i: int) -> object:
            return _check(
                await c.call_tool("page_read", {"session_id": SESSION, "page_id": ids[(i * 7919) % len(ids)]})
            )

        async def write(i: int) -> object:
            out = _check(
                await c.call_tool(
                    "page_write",
                    {
                        "session_id": SESSION,
                        "page_id": convo[i % min(len(convo), 8)],
                        "op": "append",
                        "content": f"stdio write {i}",
                        "provenance": prov,
                        "commit": "now",
                    },
                )
            )
            if out["status"] != "committed":
                raise RuntimeError(f"write not committed: {out}")
            return out

        async def create(i: int) -> object:
            out = _check(
                await c.call_tool(
                    "page_write",
                    {
                        "session_id": SESSION,
                        "page_id": f"evid/stdio/{i:06d}",
                        "op": "create",
                        "type": "evidence",
                        "content": f"stdio create {i}: the deploy rule for config server",
                        "provenance": prov,
                        "commit": "now",
                    },
                )
            )
            if out["status"] != "committed":
                raise RuntimeError(f"create not committed: {out}")
            return out

        async def assemble(i: int) -> object:
            return _check(
                await c.call_tool(
                    "context_assemble",
                    {"session_id": SESSION, "demands": [{"page_id": ids[(i * 31) % len(ids)], "fidelity": "full"}]},
                )
            )

        rd = await _timed(plan.reads, read)
        wr = await _timed(plan.writes, write)
        asm = await _timed(plan.assembles, assemble)
        cr = await _timed(plan.writes, create)
    result.put("noop_rt_ms", median=noop_rt.median, p95=noop_rt.p95)
    result.put("page_read_ms", median=rd.median, p95=rd.p95)
    result.put("page_write_ms", median=wr.median, p95=wr.p95)
    result.put("context_assemble_ms", median=asm.median, p95=asm.p95)
    result.put("page_create_ms", median=cr.median, p95=cr.p95)
    result.put("cold_start_ms", value=cold, baseline=noop_cold)
    result.put("stdio_session_start_ms", value=started)


def bench_server(db: str) -> None:
    """``clawvm-mcp serve --db DB`` with the bench's page limit: the same create_server, only EngineConfig differs."""
    import logging

    from ..server import ServerConfig, create_server

    logging.basicConfig(level=os.environ.get("CLAWVM_LOG", "WARNING"), stream=sys.stderr)
    create_server(ServerConfig(db=db, engine=bench_config())).run()


def noop_server() -> None:
    """The round-trip baseline: a bare MCPServer with one no-op tool, on the same SDK and transport."""
    from mcp.server.mcpserver import MCPServer

    server: MCPServer[Any] = MCPServer("noop")

    @server.tool()
    def noop() -> str:
        """Does nothing."""
        return "ok"

    server.run()


# ---------------------------------------------------------------------------------------------------- versus


VERSUS_OPS = ("write", "create", "read", "search_common", "search_rare")


def _seed_graph(path: Path, pages: Sequence[Page]) -> None:
    """The same notes as the official memory server's JSONL file (its own line format): one entity per page, named
    by page id, typed by page type, its content as the one observation. Setup, not measured."""
    with path.open("w", encoding="utf-8") as out:
        out.write(
            "\n".join(
                json.dumps({"type": "entity", "name": p.page_id, "entityType": p.type, "observations": [p.content]})
                for p in pages
            )
        )


async def bench_versus(db: Path, pages: Sequence[Page], plan: Plan, server: str, result: SizeResult) -> None:
    """clawvm-mcp and the official MCP memory server (npm @modelcontextprotocol/server-memory, at ``server``), both
    over stdio with the same client, on the same notes: an append to a note (page_write commit now /
    add_observations), a new note (create / create_entities), a read of one note (page_read / open_nodes) and a
    search (recall, top 10 / search_nodes, every match) for a word most notes hold and for one note's number."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    graph = db.with_name(db.stem + "-graph.jsonl")
    _seed_graph(graph, pages)
    ours = StdioServerParameters(
        command=sys.executable, args=["-m", "clawvm_mcp.replay.bench", "--serve", str(db)], env=_child_env()
    )
    theirs = StdioServerParameters(command=server, args=[], env={**_child_env(), "MEMORY_FILE_PATH": str(graph)})
    ids = [p.page_id for p in pages]
    hot = _hot(pages)
    prov = {"source": "model", "ref": "ext:bench", "turn": 0}
    rare = ids[len(ids) // 2].rsplit("/", 1)[-1]  # a note's number: in its id (clawvm) and its name (official)

    def clawvm(op: str, i: int) -> tuple[str, dict[str, Any]]:
        sid = {"session_id": SESSION}
        if op == "write":
            text = f"versus note {i}"
            return "page_write", {
                **sid,
                "page_id": hot[i % len(hot)],
                "op": "append",
                "content": text,
                "provenance": prov,
            }
        if op == "create":
            text = f"versus create {i}: the deploy rule"
            args = {"page_id": f"evid/vs/{i:06d}", "op": "create", "type": "evidence", "content": text}
            return "page_write", {**sid, **args, "provenance": prov}
        if op == "read":
            return "page_read", {**sid, "page_id": ids[(i * 7919) % len(ids)]}
        return "recall", {**sid, "query": "deploy" if op == "search_common" else rare}

    def official(op: str, i: int) -> tuple[str, dict[str, Any]]:
        if op == "write":
            return "add_observations", {
                "observations": [{"entityName": hot[i % len(hot)], "contents": [f"versus note {i}"]}]
            }
        if op == "create":
            entity = {"name": f"evid/vs/{i:06d}", "entityType": "evidence", "observations": [f"versus create {i}"]}
            return "create_entities", {"entities": [entity]}
        if op == "read":
            return "open_nodes", {"names": [ids[(i * 7919) % len(ids)]]}
        return "search_nodes", {"query": "deploy" if op == "search_common" else rare}

    async def drive(
        params: StdioServerParameters, call: Callable[[str, int], tuple[str, dict[str, Any]]]
    ) -> dict[str, Stats]:
        out: dict[str, Stats] = {}
        async with Client(params, cache=None) as c:
            if params is ours:
                _check(await c.call_tool("session_start", {"session_id": SESSION, "budget": BUDGET}))
            for op in VERSUS_OPS:

                async def one(i: int, op: str = op) -> object:
                    tool, args = call(op, i)
                    return _check(await c.call_tool(tool, args))

                for i in range(3):
                    await one(10_000 + i)  # warm-up, ids of their own
                out[op] = await _timed(plan.reads if op != "create" else plan.writes, one)
        return out

    mine = await drive(ours, clawvm)
    other = await drive(theirs, official)
    for op in VERSUS_OPS:
        result.put(f"versus_{op}_ms", clawvm=mine[op].median, official=other[op].median, clawvm_p95=mine[op].p95)


# ---------------------------------------------------------------------------------------------------- commits


async def bench_commits(db: Path, pages: Sequence[Page], plan: Plan, result: SizeResult) -> None:
    """page_write (commit now) through the engine on the WAL file, against raw sqlite3 commits of one small row
    with the same pragmas on a neighbouring file: the floor any durable commit pays on this disk."""
    from ..store.sqlite import SQLiteStore

    convo = _hot(pages)
    store = await SQLiteStore.open(db)
    try:
        engine = ClawVMEngine(store, TokenCounter(), bench_config())
        t0, c0 = time.perf_counter(), time.process_time()
        await engine.session_start(SESSION, PROJECT, BUDGET)
        # process CPU too (this thread and aiosqlite's): on a shared machine wall time measures the neighbours
        wall, cpu = (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3
        result.put("session_start_ms", value=wall, cpu=cpu)
        prov = Provenance("model", "ext:bench", 0)
        t0 = time.perf_counter()
        for i in range(plan.commits):
            req = WriteRequest("append", convo[i % len(convo)], prov, content=f"commit {i}")
            out = await engine.write(SESSION, req)
            if out.status != "committed":
                raise RuntimeError(f"write not committed: {out}")
        engine_rate = plan.commits / (time.perf_counter() - t0)
        synchronous = await store.synchronous()
    finally:
        await store.close()

    mcp_rate = await _mcp_commits(db, convo, plan.commits)
    result.put("mcp_commits_per_s", value=mcp_rate, in_process=engine_rate)
    raw_full = _raw_commits(db.with_name(db.stem + "-raw.db"), synchronous, plan.commits)
    raw_normal = _raw_commits(db.with_name(db.stem + "-raw-normal.db"), 1, plan.commits)
    result.put(
        "commits_per_s", value=engine_rate, baseline=raw_full, synchronous=float(synchronous), raw_normal=raw_normal
    )


async def _mcp_commits(db: Path, hot: Sequence[str], n: int) -> float:
    """The same commit-now appends as page_write calls through a real in-process MCP client (no pipe, no child):
    what the tool layer adds (argument validation, result models, the SDK's dispatch) to the engine's write."""
    from mcp import Client

    from ..server import ServerConfig, create_server

    prov = {"source": "model", "ref": "ext:bench", "turn": 0}
    async with Client(create_server(ServerConfig(db=db, engine=bench_config()))) as c:
        _check(await c.call_tool("session_start", {"session_id": SESSION, "budget": BUDGET}))
        t0 = time.perf_counter()
        for i in range(n):
            args = {"session_id": SESSION, "page_id": hot[i % len(hot)], "op": "append", "content": f"mcp {i}"}
            out = _check(await c.call_tool("page_write", {**args, "provenance": prov, "commit": "now"}))
            if out["status"] != "committed":
                raise RuntimeError(f"write not committed: {out}")
        return n / (time.perf_counter() - t0)


def _raw_commits(path: Path, synchronous: int, n: int) -> float:
    """Commits/s of one small row per transaction with sqlite3 directly: the disk's durable-commit floor."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {int(synchronous)}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT)")
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(body) VALUES (?)", (f"commit {i}",))
            conn.execute("COMMIT")
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------- report


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def render(results: Sequence[SizeResult]) -> str:
    lines = []
    for r in results:
        f = r.figures
        lines.append(f"== {r.pages:,} pages (budget {BUDGET} tokens) ==")
        if "engine_turn_us" in f:
            n = f["naive_turn_us"]
            for key in ("paper", "engine"):
                e, a, w = f[f"{key}_turn_us"], f[f"{key}_assemble_us"], f[f"{key}_write_us"]
                t, p = f[f"{key}_tokenize_us"], f[f"{key}_policy_us"]
                lines.append(
                    f"  engine per turn @{int(e['budget'])} tok   median {e['median']:.1f} µs  p95 "
                    f"{e['p95']:.1f}  max {e['max']:.1f}  (assembly+faults {a['median']:.1f}, "
                    f"validated write {w['median']:.1f}, of which tokenizing it {t['median']:.1f})"
                )
                lines.append(
                    f"    policy overhead (the turn less tokenizing) median {p['median']:.1f} µs  p95 {p['p95']:.1f}"
                    f"  max {p['max']:.1f}"
                )
            e, a = f["engine_turn_us"], f["engine_assemble_us"]
            ref_turn, ref_sel = f["reference_turn_us"], f["reference_select_us"]
            lines.append(
                f"    baseline: reference whole-table selector over cached pages @{BUDGET} tok: turn median"
                f" {ref_turn['median']:.1f} µs (selection {ref_sel['median']:.1f}) -> engine turn"
                f" {_ratio(ref_turn['median'], e['median'])} faster,"
                f" assembly {_ratio(ref_sel['median'], a['median'])} faster"
            )
            lines.append(
                f"    second row, naive re-tokenize-everything turn @{BUDGET} tok: median {n['median']:.1f} µs"
                f" -> engine {_ratio(n['median'], e['median'])} faster"
            )
            m = f["engine_peak_turn_kb"]
            table = (
                f"{f['page_table_kb']['value']:.1f} KB" if "page_table_kb" in f else "not measured past 20,000 pages"
            )
            lines.append(
                f"  engine peak memory / turn  median {m['median']:.1f} KB  max {m['max']:.1f} KB"
                f"   (page table resident: {table})"
            )
        if "write_append_now_us" in f:
            for key, label in (
                ("append_now", "append, commit now"),
                ("staged", "append, staged"),
                ("create", "create"),
            ):
                v = f[f"write_{key}_us"]
                lines.append(
                    f"  engine.write over MemoryStore, {label:<19} median {v['median']:.1f} µs  p95 {v['p95']:.1f}"
                    f"  max {v['max']:.1f}"
                )
        if "page_read_ms" in f:
            base = f["noop_rt_ms"]
            for name in ("page_read", "page_write", "page_create", "context_assemble"):
                v = f[f"{name}_ms"]
                lines.append(
                    f"  stdio {name:<20} median {v['median']:.2f} ms  p95 {v['p95']:.2f}"
                    f"   (no-op tool {base['median']:.2f} ms: {_ratio(v['median'], base['median'])})"
                )
            cs, ss = f["cold_start_ms"], f["stdio_session_start_ms"]
            lines.append(
                f"  cold start to first result {cs['value']:.0f} ms"
                f"   (no-op server {cs['baseline']:.0f} ms: {_ratio(cs['value'], cs['baseline'])});"
                f" of which the session_start call {ss['value']:.1f} ms"
            )
        if "versus_write_ms" in f:
            for op in VERSUS_OPS:
                v = f[f"versus_{op}_ms"]
                lines.append(
                    f"  vs official memory server, {op:<14} clawvm {v['clawvm']:.2f} ms  official {v['official']:.2f} ms"
                    f"  -> clawvm takes {_ratio(v['clawvm'], v['official'])} the official server's time"
                )
        if "commits_per_s" in f:
            c = f["commits_per_s"]
            lines.append(
                f"  committed writes (WAL)     {c['value']:.0f} /s   (raw sqlite commit, same synchronous="
                f"{int(c['synchronous'])}: {c['baseline']:.0f} /s: {_ratio(c['value'], c['baseline'])};"
                f" raw at synchronous=NORMAL: {c['raw_normal']:.0f} /s)"
            )
            m = f["mcp_commits_per_s"]
            lines.append(
                f"  committed writes over MCP  {m['value']:.0f} /s   (in-process client; engine.write in process"
                f" {m['in_process']:.0f} /s: {_ratio(m['value'], m['in_process'])})"
            )
            s = f["session_start_ms"]
            lines.append(
                f"  session_start in process  {s['value']:.1f} ms (SQLite file; process CPU {s.get('cpu', 0):.1f} ms)"
            )
    return "\n".join(lines)


# (label, figure, key): the per-call costs issue 12 asks to stay flat as the table grows
GROWTH: tuple[tuple[str, str, str], ...] = (
    ("engine turn (µs)", "engine_turn_us", "median"),
    ("reference turn (µs)", "reference_turn_us", "median"),
    ("engine.write create (µs)", "write_create_us", "median"),
    ("stdio context_assemble (ms)", "context_assemble_ms", "median"),
    ("stdio create (ms)", "page_create_ms", "median"),
    ("stdio page_write (ms)", "page_write_ms", "median"),
    ("session_start in process (ms)", "session_start_ms", "value"),
    ("session_start in process, CPU (ms)", "session_start_ms", "cpu"),
    ("session_start over stdio (ms)", "stdio_session_start_ms", "value"),
)


def _growth_rows(results: Sequence[SizeResult]) -> list[tuple[str, list[float | None]]]:
    rows = []
    for label, name, key in GROWTH:
        values = [r.figures[name][key] if name in r.figures else None for r in results]
        if any(v is not None for v in values):
            rows.append((label, values))
    return rows


def render_growth(results: Sequence[SizeResult]) -> str:
    """One line per cost, one column per table size, and the largest size's figure over the smallest's."""
    rows = _growth_rows(results)
    if len(results) < 2 or not rows:
        return ""
    head = "| cost | " + " | ".join(f"{r.pages:,} pages" for r in results) + " | largest / smallest |"
    lines = ["== growth with the page table ==", head, "|---|" + "---:|" * (len(results) + 1)]
    for label, values in rows:
        cells = ["n/a" if v is None else f"{v:,.3g}" if v < 100 else f"{v:,.0f}" for v in values]
        first, last = values[0], values[-1]
        ratio = _ratio(last, first) if first is not None and last is not None else "n/a"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def plot_growth(results: Sequence[SizeResult], path: Path) -> str | None:
    """The growth table as a log-log PNG; returns why it was skipped (no ``plot`` extra), or None when written."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "matplotlib is not installed (pip install 'clawvm-mcp[plot]'); skipped the plot"
    sizes = [r.pages for r in results]
    fig, (us_ax, ms_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    for i, (label, values) in enumerate(_growth_rows(results)):
        points = [(n, v) for n, v in zip(sizes, values, strict=True) if v is not None]
        ax = us_ax if "(µs)" in label else ms_ax
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", color=f"C{i % 10}", label=label)
    for ax, unit in ((us_ax, "µs"), (ms_ax, "ms")):
        ax.set(xscale="log", yscale="log", xlabel="pages in the session", ylabel=f"median ({unit})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return None


def run(
    sizes: Sequence[int], quick: bool, parts: set[str], out: Path | None = None, memory_server: str | None = None
) -> list[SizeResult]:
    counter = TokenCounter(cache_size=65_536)
    results = []
    all_requests = make_requests(max(sizes))
    with tempfile.TemporaryDirectory(prefix="clawvm-bench-", dir=out.parent if out else None) as tmp:
        for n in sizes:
            plan = plan_for(n, quick)
            pages = make_pages(all_requests[:n], counter)
            result = SizeResult(n)
            if "engine" in parts:
                bench_engine(pages, plan, result)
            if "writes" in parts:
                anyio.run(bench_writes, pages, plan, result)
            if "versus" in parts and memory_server is not None:
                db = Path(tmp) / f"versus-{n}.db"
                anyio.run(populate, db, pages)
                anyio.run(bench_versus, db, pages, plan, memory_server, result)
            if parts & {"stdio", "commits"}:
                db = Path(tmp) / f"bench-{n}.db"
                anyio.run(populate, db, pages)
                if "stdio" in parts:
                    anyio.run(bench_stdio, db, pages, plan, result)
                if "commits" in parts:
                    anyio.run(bench_commits, db, pages, plan, result)
            results.append(result)
            print(render([result]), flush=True)
    return results


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--pages takes sizes like 50,1000,10000, got {text!r}") from None
    if not sizes or any(s < 3 for s in sizes):
        raise argparse.ArgumentTypeError("each size must be at least 3 pages")
    return sizes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pages",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        metavar="N[,N...]",
        help="page-table sizes to measure (default 50,1000,10000)",
    )
    p.add_argument("--quick", action="store_true", help="a tenth of the iterations (CI smoke run)")
    p.add_argument(
        "--only",
        choices=["engine", "writes", "stdio", "commits", "versus"],
        action="append",
        default=None,
        help="run only these parts (repeatable; default all)",
    )
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON")
    p.add_argument(
        "--memory-server",
        default=None,
        metavar="PATH",
        help="the official MCP memory server's mcp-server-memory (npm @modelcontextprotocol/server-memory, installed"
        " beforehand) to run the side-by-side part against",
    )
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="draw the growth table (plot extra)")


def cmd_bench(args: argparse.Namespace) -> int:
    parts = set(args.only or ("engine", "writes", "stdio", "commits", *(("versus",) if args.memory_server else ())))
    if "versus" in parts and not args.memory_server:
        print(
            "Error: --only versus needs --memory-server PATH (npm @modelcontextprotocol/server-memory)", file=sys.stderr
        )
        return 2
    print(
        f"clawvm-mcp bench: python {sys.version.split()[0]}, {os.cpu_count()} cpus, sizes "
        f"{', '.join(f'{n:,}' for n in args.pages)}{' (quick)' if args.quick else ''}",
        flush=True,
    )
    started = time.perf_counter()
    results = run(args.pages, args.quick, parts, memory_server=args.memory_server)
    growth = render_growth(results)
    if growth:
        print(growth, flush=True)
    if args.plot is not None:
        print(plot_growth(results, args.plot) or f"growth plot: {args.plot}", flush=True)
    print(f"done in {time.perf_counter() - started:.1f} s", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps([{"pages": r.pages, **r.figures} for r in results], indent=2) + "\n")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``bench`` verb to the clawvm-mcp CLI (``subparsers`` from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "bench",
        help="measure engine, stdio and commit overhead against baselines",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_bench)
    from .bench_recall import register as register_recall  # `clawvm-mcp bench recall`: LoCoMo quality
    from .bench_scaling import register as register_scaling  # `clawvm-mcp bench scaling`: N servers, one database

    modes = p.add_subparsers(dest="bench_mode", metavar="MODE")
    register_recall(modes)
    register_scaling(modes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--noop-server"]:
        noop_server()
        return 0
    if len(argv) == 2 and argv[0] == "--serve":
        bench_server(argv[1])
        return 0
    parser = argparse.ArgumentParser(prog="python -m clawvm_mcp.replay.bench", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    code: int = cmd_bench(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
