"""The README's demo shows what ClawVM prevents (issue 15): the same session replayed under a baseline policy
beside ClawVM, and what thrash counts."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from clawvm_mcp.faults import FAULT_KINDS
from clawvm_mcp.replay import POLICY_NAMES

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("clawvm_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table(out: str) -> dict[str, tuple[str, str]]:
    """The comparison rows: name -> (baseline value, clawvm value)."""
    head = out.index("== the same session replayed in process")
    rows = {}
    for line in out[head:].splitlines()[2:]:
        m = re.match(r"^   (\w+)\s+(\S+)\s+(\S+)", line)
        if not m:
            break
        rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


def test_the_demo_shows_a_baseline_beside_clawvm() -> None:
    run = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "retrieval (a baseline) beside clawvm" in out
    rows = table(out)
    assert set(rows) == {*FAULT_KINDS, "duplicate_signature", "hits", "thrash"}
    assert all(rows[k][1] == "0" for k in FAULT_KINDS), rows
    assert int(rows["post_compaction_bootstrap"][0]) > 0 and int(rows["flush_miss"][0]) > 0, rows
    assert float(rows["thrash"][0]) > float(rows["thrash"][1])
    # the replayed ClawVM run is the live session: the same alerts, hits and thrash as the server reported
    live = re.findall(r"duplicate_signature=(\d+) hits=(\d+) thrash=(\S+)", out)[-1]
    assert (rows["duplicate_signature"][1], rows["hits"][1], rows["thrash"][1]) == live
    assert "thrash = (faults + duplicate_signature alerts) / (hits + 1)" in out
    assert "not a fault" in out


@pytest.mark.parametrize("baseline", [p for p in POLICY_NAMES if p != "clawvm"])
def test_every_baseline_can_stand_beside_clawvm(baseline: str, capsys: pytest.CaptureFixture[str]) -> None:
    runs = anyio.run(load_demo().compare, baseline)
    assert set(runs) == {baseline, "clawvm"}
    assert runs["clawvm"]["faults_total"] == 0
    if baseline.startswith("retrieval"):
        assert runs[baseline]["faults"]["post_compaction_bootstrap"] > 0
    assert f"{baseline} (a baseline) beside clawvm" in capsys.readouterr().out
