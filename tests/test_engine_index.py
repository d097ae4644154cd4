"""The page table's index is kept true by convention: pages are replaced, never mutated in what the index reads.
This drives the real engine through random writes, pins, deletes, tool calls and boundaries (two engines on one
SQLite file, so refreshes from another writer happen too) and checks every assembly against the plain
whole-table selector run on the engine's pages as they are at that moment."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from clawvm_mcp.engine import ClawVMEngine, EngineError, PageInput
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import PAGE_TYPES, Fidelity, Provenance
from clawvm_mcp.replay import reference_selector as ref
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio
PROV = Provenance("user", "ext:test", 0)
LEVELS = ("pointer", "structured", "compressed", "full")


def _text(rng: random.Random) -> str:
    words = ["plan", "step", "fix", "read", "path/a.py", "key: value", "- [x] done", "- [ ] next", "rule"]
    return "\n".join(" ".join(rng.choices(words, k=rng.randint(1, 8))) for _ in range(rng.randint(1, 6)))


async def _random_op(rng: random.Random, engine: ClawVMEngine, ids: list[str]) -> None:
    await engine.stats("s")  # the cache as the next operation will see it
    state = engine.state_of("s")
    live = sorted(p.page_id for p in state.live())
    roll = rng.random()
    commit = rng.choice(["now", "now", "boundary"])
    if roll < 0.25 or not live:
        pid = f"{rng.choice(['ev', 'note', 'plan'])}/{rng.randint(0, 40)}"
        ids.append(pid)
        req = WriteRequest("create", pid, PROV, rng.choice(PAGE_TYPES[2:]), _text(rng), commit=commit)
        await engine.write("s", req)
    elif roll < 0.5:
        await engine.write("s", WriteRequest("append", rng.choice(live), PROV, content=_text(rng), commit=commit))
    elif roll < 0.6:
        page = state.pages[rng.choice(live)]
        base = state.staged_base.get(page.page_id, page.version)
        await engine.write(
            "s", WriteRequest("set", page.page_id, PROV, content=_text(rng), base_version=base, commit=commit)
        )
    elif roll < 0.68:
        page = state.pages[rng.choice(live)]
        base = state.staged_base.get(page.page_id, page.version)
        await engine.write("s", WriteRequest("delete", page.page_id, PROV, base_version=base, commit=commit))
    elif roll < 0.78:
        try:
            await engine.pin("s", rng.choice(live), rng.choice(["hard", "soft", "none"]))
        except EngineError:
            pass
    elif roll < 0.86:
        await engine.tool_execute("s", "grep", {"q": rng.randint(0, 5)}, _text(rng))
    else:
        await engine.lifecycle("s", rng.choice(["turn_end", "turn_end", "flush", "compaction", "reset"]))


@pytest.mark.parametrize("seed", range(6))
async def test_every_engine_assembly_matches_the_whole_table_selector(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    db = tmp_path / "m.db"
    engine = ClawVMEngine(await SQLiteStore.open(db))
    other = ClawVMEngine(await SQLiteStore.open(db))  # a second writer on the same file, for refreshes
    await engine.session_start("s", budget=rng.choice([150, 400, 2000]), bootstrap=[PageInput("rules", "- be brief")])
    await other.session_start("s")
    ids: list[str] = []
    checked = 0
    for step in range(160):
        await _random_op(rng, engine, ids)
        if rng.random() < 0.1:  # the other writer moves a page this engine holds
            live = sorted(p.page_id for p in await other.pages("s"))
            if live:
                await other.write("s", WriteRequest("append", rng.choice(live), PROV, content="from elsewhere"))
        if rng.random() < 0.35:
            await engine.stats("s")  # revalidates the cache (the other writer's moves), as assemble will first
            state = engine.state_of("s")
            live = sorted(p.page_id for p in state.live())
            demands = [(pid, rng.choice(LEVELS)) for pid in rng.sample(live, min(len(live), rng.randint(0, 2)))]
            budget = rng.choice([None, 60, 200, 900])
            wanted: dict[str, Fidelity] = {}
            for pid, fidelity in demands:
                wanted[pid] = max(Fidelity.parse(fidelity), wanted.get(pid, Fidelity.NONE))
            want = ref.select(
                list(state.pages.values()),
                wanted,
                state.record.budget if budget is None else budget,
                ref.SelectorPolicy(),
                dict(state.recency),
            )
            got = await engine.assemble("s", budget, demands, trace="full")
            assert [(p.page_id, p.level, p.tokens, p.reason) for p in got.pages] == [
                (c.page_id, c.level.label, c.tokens, c.reason) for c in want.choices
            ], (seed, step)
            assert (got.tokens_used, got.unmet_required) == (want.tokens_used, list(want.unmet_required))
            checked += 1
    assert checked >= 30
    await engine.store.close()
    await other.store.close()
