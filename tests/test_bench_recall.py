"""``clawvm-mcp bench recall``: the LoCoMo loader, the scoring, and a quick cut of the bench run as CI runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clawvm_mcp.replay.bench_recall import Quality, default_data, load_locomo

DATA = default_data()
needs_data = pytest.mark.skipif(not DATA.is_file(), reason=f"LoCoMo is not at {DATA}")


def test_quality_is_recall_at_k_and_mrr() -> None:
    q = Quality()
    q.add(["a", "x", "b"], ["a", "b"])  # both found: a at rank 1
    q.add(["x"] * 4 + ["c"], ["c", "d"])  # half found, first hit at rank 5
    f = q.figures()
    assert f["r@1"] == pytest.approx((0.5 + 0) / 2)
    assert f["r@5"] == pytest.approx((1 + 0.5) / 2)
    assert f["r@10"] == pytest.approx((1 + 0.5) / 2)
    assert f["mrr"] == pytest.approx((1 + 1 / 5) / 2)
    assert f["questions"] == 2


@needs_data
def test_locomo_loads_every_turn_and_every_usable_question() -> None:
    turns = load_locomo(DATA, "turn")
    assert len(turns) == 10
    assert sum(len(c.pages) for c in turns) == 5882
    assert sum(len(c.questions) for c in turns) == 1982  # 4 of 1,986 name no evidence
    first = turns[0]
    assert first.pages["turn/d1-3"] == "Caroline: I went to a LGBTQ support group yesterday and it was so powerful."
    assert first.pages["turn/d1-5"].endswith("[shares a photo of a dog walking past a wall with a painting of a woman]")
    evidence = {e for c in turns for q in c.questions for e in q.evidence}
    assert "turn/d30-5" in evidence  # "D30:05" in the data
    sessions = load_locomo(DATA, "session")
    assert sum(len(c.pages) for c in sessions) == 272
    assert sum(len(c.questions) for c in sessions) == 1982
    assert all(e in c.pages for c in sessions for q in c.questions for e in q.evidence)


@needs_data
def test_quick_bench_through_the_cli_beats_its_baselines(tmp_path: Path) -> None:
    """The CI cut: one conversation, 60 questions, over a real MCP client, baselines in the same run."""
    out = tmp_path / "recall.json"
    run = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "bench", "recall", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "clawvm recall (MCP, in process)" in run.stdout and "FTS5 bm25 + porter" in run.stdout
    report = json.loads(out.read_text())
    assert (report["conversations"], report["pages"], report["questions"]) == (1, 419, 60)
    rows = {r["name"]: r for r in report["rows"]}
    ours, porter, plain = (
        rows["clawvm recall (MCP, in process)"],
        rows["FTS5 bm25 + porter"],
        rows["FTS5 bm25 (unicode61)"],
    )
    assert ours["r@10"] > porter["r@10"] > rows["random"]["r@10"]
    assert ours["mrr"] > plain["mrr"]
    assert ours["r@10"] >= 0.55  # 0.581 when measured; the whole set gives 0.644
    engine = rows["  same, engine call in process"]
    assert 0 < engine["p50_ms"] <= engine["p95_ms"] and engine["calls"] == 60
