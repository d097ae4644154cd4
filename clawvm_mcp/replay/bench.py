"""``clawvm-mcp bench``: policy-engine overhead per turn, comparable to the paper's 18-44 µs median.

It times the selector alone (the paper's "policy-engine overhead") and a whole engine turn
(demand, assemble, turn_end through the in-memory store), plus peak traced memory of the selector.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

from ..engine import ClawVMEngine, EngineConfig
from ..journal import WriteRequest
from ..pages import PAGE_TYPES, Fidelity, Provenance
from ..selector import select
from ..store.memory import MemoryStore
from .policies import get_policy
from .workloads import sizes

_UNPINNED = PAGE_TYPES[2:]


def _stats(samples_ns: list[int]) -> dict[str, float]:
    us = sorted(s / 1000 for s in samples_ns)
    return {
        "median_us": round(statistics.median(us), 1),
        "p95_us": round(us[min(len(us) - 1, round(0.95 * (len(us) - 1)))], 1),
        "max_us": round(us[-1], 1),
    }


async def bench(pages: int = 50, turns: int = 200, budget: int = 300) -> dict[str, object]:
    policy = get_policy("clawvm")
    engine = ClawVMEngine(MemoryStore(), config=EngineConfig(policy=policy.engine))
    await engine.session_start("bench", budget=1_000_000)
    prov = Provenance("harness", "ext:bench", 0)
    for i in range(pages):
        kind = PAGE_TYPES[i] if i < 2 else _UNPINNED[i % len(_UNPINNED)]  # one bootstrap, one constraint
        content = f"p{i}\n- [ ] step one\n- [ ] step two" if kind in ("plan", "bootstrap") else f"p{i} {kind} text"
        req = WriteRequest("create", f"p{i:04d}", prov, kind, content, tokens=sizes(20 + (i * 7) % 60))
        await engine.write("bench", req)
    state = engine.state_of("bench")
    live = sorted(p.page_id for p in state.live())
    selector_ns: list[int] = []
    turn_ns: list[int] = []
    for t in range(turns):
        demand = live[(t * 7) % len(live)]
        started = time.perf_counter_ns()
        select(state.live(), {demand: Fidelity.FULL}, budget, policy.engine.selector, state.recency)
        selector_ns.append(time.perf_counter_ns() - started)
        started = time.perf_counter_ns()
        await engine.assemble("bench", budget, [(demand, "full")])
        await engine.lifecycle("bench", "turn_end")
        turn_ns.append(time.perf_counter_ns() - started)
    tracemalloc.start()
    select(state.live(), {live[0]: Fidelity.FULL}, budget, policy.engine.selector, state.recency)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "pages": pages,
        "turns": turns,
        "budget": budget,
        "selector": _stats(selector_ns),
        "engine_turn": _stats(turn_ns),
        "selector_peak_kib": round(peak / 1024, 1),
    }
