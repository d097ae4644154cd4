"""The paper's six Tier-1 lifecycle gates: each fault appears under a baseline and not under clawvm (or the
expected reason-coded rejection appears). Traces are small and token-sized, replayed through the real engine."""

from __future__ import annotations

import json

import pytest

from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.replay import get_policy, parse_lines, replay
from clawvm_mcp.replay.backends import EngineBackend
from clawvm_mcp.replay.workloads import sizes

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def trace(*records: dict[str, object]) -> str:
    return "\n".join(json.dumps(r) for r in ({"op": "session_start", "session": "s1", "budget": 120}, *records))


def page(turn: int, pid: str, kind: str, full: int, dirty: bool = False) -> dict[str, object]:
    rec: dict[str, object] = {"op": "page", "turn": turn, "page": {"page_id": pid, "type": kind, "tokens": sizes(full)}}
    if dirty:
        rec["dirty"] = True
    return rec


def tool(turn: int, path: str) -> dict[str, object]:
    return {"op": "tool", "turn": turn, "name": "read_file", "args": {"path": path}, "result_page": f"ev/{path}"}


def op(name: str, turn: int, **extra: object) -> dict[str, object]:
    return {"op": name, "turn": turn, **extra}


async def run(text: str, policy: str, budget: int = 120) -> dict[str, object]:
    return (await replay(parse_lines(text.splitlines(), "gate.jsonl"), policy, budget)).metrics


def faults(metrics: dict[str, object]) -> dict[str, int]:
    out = metrics["faults"]
    assert isinstance(out, dict)
    return out


POST_COMPACTION = trace(
    page(1, "boot/rules", "bootstrap", 60),
    *(page(1, f"conv/c{i}", "conversation", 15) for i in range(4)),
    page(1, "ev/big.log", "evidence", 100),
    tool(1, "big.log"),
    op("assemble", 1),
    op("compaction", 2),
    op("demand", 2, page_id="ev/big.log", fidelity="full"),
    op("assemble", 2),
)


async def test_gate_post_compaction_bootstrap() -> None:
    baseline = await run(POST_COMPACTION, "compaction_hybrid")
    assert faults(baseline)["post_compaction_bootstrap"] >= 1
    ours = await run(POST_COMPACTION, "clawvm")
    assert ours["faults_total"] == 0 and ours["fits"] is True


RESET_FLUSH = trace(
    page(1, "plan/main", "plan", 40),
    op("assemble", 1),
    page(2, "plan/main", "plan", 48, dirty=True),
    op("reset", 3),
    op("assemble", 3),
)


async def test_gate_reset_dirty_page_flush_miss() -> None:
    baseline = await run(RESET_FLUSH, "compaction_hybrid")
    assert faults(baseline)["flush_miss"] == 1
    policy = get_policy("clawvm")
    backend = EngineBackend(policy)
    ours = (await replay(parse_lines(RESET_FLUSH.splitlines(), "gate.jsonl"), policy, 120, backend)).metrics
    assert ours["faults_total"] == 0
    journal = await backend.engine.journal("s1")
    assert [e.status for e in journal.entries if e.page_id == "plan/main"] == ["committed", "committed"]
    assert backend.engine.state_of("s1").pages["plan/main"].version == 2


THRESHOLD_JUMP = trace(
    page(1, "boot/rules", "bootstrap", 60),
    page(1, "plan/main", "plan", 40),
    page(2, "plan/main", "plan", 44, dirty=True),
    page(3, "ev/dump.json", "evidence", 5000),
    tool(3, "dump.json"),  # one result jumps the context past the flush threshold: compaction at once
    op("compaction", 3),
    op("demand", 3, page_id="ev/dump.json", fidelity="full"),
    op("assemble", 3),
)


async def test_gate_threshold_jump_race() -> None:
    baseline = await run(THRESHOLD_JUMP, "retrieval_cache")
    assert faults(baseline)["flush_miss"] == 1
    ours = await run(THRESHOLD_JUMP, "clawvm")
    assert ours["faults_total"] == 0
    # the oversized demand is diagnosed as physical insufficiency, never counted as a success or a fault
    assert ours["physical_insufficiency"] == 1 and ours["fits"] is False


SILENT_RECALL = trace(
    page(1, "pref/tone", "preference", 14),
    op("recall", 2, query="deploy rules", backend="denied"),
    op("recall", 3, query="deploy rules", backend="error"),
    op("assemble", 3),
)


async def test_gate_silent_recall_visibility() -> None:
    baseline = await run(SILENT_RECALL, "retrieval_cache")
    assert faults(baseline)["silent_recall"] == 2
    ours = await run(SILENT_RECALL, "clawvm")
    assert ours["faults_total"] == 0
    backend = EngineBackend(get_policy("clawvm"))
    await backend.session_start("s1", "default", 1000)
    denied = await backend.recall("s1", "deploy", None, "denied")
    failed = await backend.recall("s1", "deploy", None, "error")
    assert denied is not None and denied.outcome == "denied"
    assert failed is not None and failed.outcome == "backend_error"


@pytest.mark.parametrize("policy", ["retrieval", "compaction_hybrid", "clawvm"])
async def test_gate_unsafe_persistence_rejection(policy: str) -> None:
    """Validation is not a policy switch: a destructive overwrite is refused with DESTRUCTIVE_OP under every
    configuration (the baselines differ in when they commit, not in what the journal accepts)."""
    backend = EngineBackend(get_policy(policy))
    await backend.session_start("s1", "default", 1000)
    prov = Provenance("model", "ext:memory.md", 1)
    first = await backend.write("s1", WriteRequest("create", "pref/tone", prov, "preference", "tone: terse"))
    second = await backend.write("s1", WriteRequest("set", "pref/tone", prov, content="tone: chatty", base_version=1))
    assert (first.status, second.status) == ("committed", "committed")
    stale = await backend.write("s1", WriteRequest("set", "pref/tone", prov, content="tone: lost", base_version=1))
    blind = await backend.write("s1", WriteRequest("create", "pref/tone", prov, "preference", "tone: overwrite"))
    for result in (stale, blind):
        assert result.status == "rejected"
        assert [r.code for r in result.reasons] == ["DESTRUCTIVE_OP"]
    assert backend.engine.state_of("s1").pages["pref/tone"].content == "tone: chatty"


EVIDENCE_CHURN = trace(
    page(1, "ev/a.py", "evidence", 50),
    tool(1, "a.py"),
    op("demand", 1, page_id="ev/a.py"),
    op("assemble", 1),
    *(
        rec
        for i in range(2, 6)
        for rec in (
            page(i, f"ev/b{i}.py", "evidence", 60),
            tool(i, f"b{i}.py"),
            op("demand", i, page_id=f"ev/b{i}.py"),
            op("assemble", i),
        )
    ),
    op("compaction", 6),
    tool(7, "a.py"),
    op("demand", 7, page_id="ev/a.py"),
    op("assemble", 7),
)


async def test_gate_evidence_churn_duplicate_tool() -> None:
    baseline = await run(EVIDENCE_CHURN, "retrieval")
    assert faults(baseline)["duplicate_tool"] == 1
    ours = await run(EVIDENCE_CHURN, "clawvm")
    assert ours["faults_total"] == 0
    assert ours["duplicate_signature"] == 1  # the stored result is handed back: an alert, not a fault
