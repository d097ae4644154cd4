"""One real subprocess over stdio, in both protocol eras: what a desktop host actually runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from .conftest import PROV, call

pytestmark = pytest.mark.anyio


def server_params(db: Path) -> StdioServerParameters:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(db.parent), "CLAWVM_LOG": "WARNING"}
    return StdioServerParameters(command=sys.executable, args=["-m", "clawvm_mcp", "serve", "--db", str(db)], env=env)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_session_roundtrip(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "stdio.db"
    async with Client(server_params(db), mode=mode) as c:  # type: ignore[arg-type]
        started = await call(
            c, "session_start", session_id="s1", bootstrap=[{"page_id": "rules", "content": "# Rules\n- be careful"}]
        )
        assert started["bootstrap"][0]["status"] == "committed"
        staged = await call(
            c,
            "page_write",
            session_id="s1",
            page_id="plan/p",
            op="create",
            type="plan",
            content="Goal\n- [ ] step",
            provenance=PROV,
            commit="boundary",
        )
        assert staged["status"] == "staged"
        life = await call(c, "lifecycle", session_id="s1", event="compaction")
        assert life["committed"] == 1 and life["reinjected"] == ["rules"]
        assembled = await call(c, "context_assemble", session_id="s1", budget=200)
        assert assembled["prompt"].startswith('<page id="rules" type="bootstrap" v="1" level="full">\n# Rules')
    assert db.exists() and db.stat().st_size > 0


def test_default_db_lives_in_user_data_dir(tmp_path: Path) -> None:
    from clawvm_mcp.paths import default_db_path

    old = dict(os.environ)
    try:
        os.environ.pop("CLAWVM_DB", None)
        os.environ["XDG_DATA_HOME"] = str(tmp_path)
        if sys.platform.startswith("linux"):
            assert default_db_path() == tmp_path / "clawvm-mcp" / "memory.db"
        os.environ["CLAWVM_DB"] = str(tmp_path / "x.db")
        assert default_db_path() == tmp_path / "x.db"
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_readme_demo_runs_with_zero_faults() -> None:
    """The README's first command ends in this script; it must run and show no fault of any kind."""
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    out = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fault_lines = [line for line in out.stdout.splitlines() if line.strip().startswith("faults:")]
    assert len(fault_lines) == 3
    for line in fault_lines:
        counts = line.split("|")[0].strip().removeprefix("faults: ").split(", ")
        assert all(c.endswith("=0") for c in counts), line
    assert "compaction: committed=1 reinjected=['constraint/prod', 'rules'] faults=[]" in out.stdout
    assert (
        'prompt after reset:\n   | <page id="rules" type="bootstrap" v="1" level="full">\n   | # House rules'
        in out.stdout
    )
