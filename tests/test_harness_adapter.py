"""The Python harness adapter (``clawvm_mcp.harness``) run for real over stdio, its demo, and the server configs a
client launches (the Claude Code plugin's .mcp.json and the Claude Desktop example)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from clawvm_mcp.harness import ClawVMError, ClawVMHarness

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PLUGIN = ROOT / "integrations" / "claude-code" / "clawvm"


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_adapter_demo", EXAMPLES / "harness_adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def console_script() -> str:
    """The installed ``clawvm-mcp`` (what the configs call by name)."""
    found = shutil.which(
        "clawvm-mcp",
        path=os.pathsep.join(
            [sysconfig.get_path("scripts"), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        ),
    )
    assert found is not None, "clawvm-mcp is not installed as a console script (pip install -e .)"
    return found


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# ------------------------------------------------------------------------------------------------ harness adapter


async def test_demo_agent_loop_through_a_real_stdio_client(tmp_path: Path) -> None:
    demo = load_demo()
    lines: list[str] = []
    summary = await demo.run_demo(tmp_path / "demo.db", "demo", lines.append)
    calls = summary["calls"]
    assert [(tool, status) for tool, status, _ in calls[:4]] == [
        ("read_file", "recorded"),
        ("read_file", "recorded"),
        ("read_file", "duplicate_signature"),  # app.py again, unchanged: served from memory
        ("write_file", "recorded"),
    ]
    tool, status, result = calls[4]
    # render.py after the write: run again and its new text stored, never the stale answer from memory
    assert tool == "read_file" and status in ("recorded", "updated")
    assert result == demo.PATCHED
    assert summary["tool_runs"] == 4  # only the unchanged repeat was not rerun
    assert summary["rules_after_compaction"] is True
    assert summary["end"]["committed"] == 1  # the last staged note was committed at session_end
    stats = summary["stats"]
    assert stats["faults_total"] == 0 and stats["duplicate_signature"] == 1
    assert set(stats["journal"]) == {"committed"}  # nothing left staged, nothing rejected
    assert summary["plan"].splitlines() == [
        "Fix the greeting",
        "- [x] read app.py",
        "- [ ] read render.py",
        "- [ ] patch render.py",
        "- [x] patch render.py",
    ]
    assert lines[0] == "session demo: 1 pages, budget 1200"
    assert "turn 3: compaction -> committed 2, re-injected ['rules']" in lines


async def test_adapter_surfaces_server_refusals(tmp_path: Path) -> None:
    async with ClawVMHarness.connect(tmp_path / "x.db", "nobody") as vm:
        with pytest.raises(ClawVMError, match="call session_start first"):
            await vm.context()


async def test_a_tool_with_side_effects_always_runs(tmp_path: Path) -> None:
    runs: list[str] = []

    def deploy(args: dict[str, Any]) -> str:
        runs.append(str(args["env"]))
        return f"deployed to {args['env']} (run {len(runs)})"

    async with ClawVMHarness.connect(tmp_path / "s.db", "s", idempotent={"deploy": False}) as vm:
        await vm.start()
        first = await vm.run_tool("deploy", {"env": "staging"}, deploy)
        second = await vm.run_tool("deploy", {"env": "staging"}, deploy)
    assert runs == ["staging", "staging"]
    assert first == ("deployed to staging (run 1)", "recorded")
    assert second[0] == "deployed to staging (run 2)" and second[1] != "duplicate_signature"


def test_demo_script_runs_standalone(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "harness_adapter.py"), "--db", str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "tools actually run: 4 of 5 calls" in done.stdout
    assert "prompt after compaction has the rules: True" in done.stdout


def test_the_package_exports_a_small_surface() -> None:
    import clawvm_mcp.harness as harness

    assert harness.__all__ == ["ClawVMError", "ClawVMHarness", "ToolFn"]
    assert harness.ClawVMHarness is ClawVMHarness
    with pytest.raises(AttributeError):
        _ = harness.not_a_name  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ server configs


@pytest.mark.parametrize("config", [PLUGIN / ".mcp.json", EXAMPLES / "claude_desktop_config.json"])
async def test_server_configs_start_a_working_server(config: Path, tmp_path: Path) -> None:
    (entry,) = load_json(config)["mcpServers"].values()
    command, args = entry["command"], list(entry["args"])
    if command == "uvx":  # uvx runs the console script named like the package; use the installed one here
        assert args[0] == "clawvm-mcp"
        args = args[1:]
    else:
        assert command == "clawvm-mcp" and entry.get("type", "stdio") == "stdio"
    env = {**os.environ, **entry.get("env", {}), "CLAWVM_DB": str(tmp_path / "cfg.db")}
    params = StdioServerParameters(command=console_script(), args=args, env=env)
    async with Client(params, mode="legacy") as client:  # desktop hosts speak the handshake era
        names = {t.name for t in (await client.list_tools()).tools}
        started = await client.call_tool("session_start", {"session_id": "cfg"})
    assert {"session_start", "page_write", "context_assemble", "lifecycle"} <= names
    assert not started.is_error
    assert (tmp_path / "cfg.db").exists()  # CLAWVM_DB reached the server through the config's environment
