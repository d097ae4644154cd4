"""The client-side examples, run for real: the Python harness adapter over stdio, the Claude Code hooks and the
.mcp.json / Claude Desktop server configs (issue 6)."""

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

import anyio
import pytest
from mcp import Client, StdioServerParameters

from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CLAUDE_CODE = EXAMPLES / "claude_code"
HOOK_EVENTS = {"SessionStart", "PreCompact", "Stop", "SessionEnd"}


def load_adapter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("harness_adapter", EXAMPLES / "harness_adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


def console_script() -> str:
    """The installed ``clawvm-mcp`` (what the hooks and configs call by name)."""
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
    adapter = load_adapter()
    lines: list[str] = []
    summary = await adapter.run_demo(tmp_path / "demo.db", "demo", lines.append)
    assert summary["statuses"] == ["recorded", "recorded", "duplicate_signature", "duplicate_signature"]
    assert summary["tool_runs"] == 2  # repeats were served from memory, not rerun
    assert summary["rules_after_compaction"] is True
    assert summary["end"]["committed"] == 1  # the last staged note was committed at session_end
    stats = summary["stats"]
    assert stats["faults_total"] == 0 and stats["duplicate_signature"] == 2
    assert stats["journal"] == {"committed": 6}
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
    adapter = load_adapter()
    async with adapter.ClawVMHarness.connect(tmp_path / "x.db", "nobody") as vm:
        with pytest.raises(adapter.ClawVMError, match="call session_start first"):
            await vm.context()


def test_demo_script_runs_standalone(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "harness_adapter.py"), "--db", str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "tools actually run: 2 of 4 calls" in done.stdout
    assert "prompt after compaction has the rules: True" in done.stdout


# ------------------------------------------------------------------------------------------------ Claude Code hooks


def hooks() -> dict[str, list[dict[str, Any]]]:
    settings = load_json(CLAUDE_CODE / ".claude" / "settings.json")
    result = settings["hooks"]
    assert isinstance(result, dict)
    return result


def hook_commands(event: str, matcher: str | None = None) -> list[str]:
    groups = hooks()[event]
    return [
        h["command"]
        for g in groups
        if matcher is None or matcher in g.get("matcher", "").split("|")
        for h in g["hooks"]
    ]


def test_hooks_cover_the_harness_boundaries() -> None:
    assert set(hooks()) == HOOK_EVENTS
    assert all(h["type"] == "command" for groups in hooks().values() for g in groups for h in g["hooks"])
    expected = {
        ("PreCompact", None): "compaction",
        ("Stop", None): "turn_end",
        ("SessionEnd", None): "session_end",
        ("SessionStart", "clear"): "reset",
    }
    for (event, matcher), lifecycle in expected.items():
        (command,) = hook_commands(event, matcher)
        assert f'clawvm-mcp lifecycle --session "${{CLAWVM_SESSION:-claude-code}}" --event {lifecycle}' in command
    for matcher in ("startup", "resume", "compact"):
        (command,) = hook_commands("SessionStart", matcher)
        assert "context_assemble" in command or "session_start" in command


def run_hook(command: str, env: dict[str, str], payload: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", command],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def session_state(db: Path, session_id: str) -> tuple[int, bool, int]:
    store = await SQLiteStore.open(db)
    try:
        record = await store.get_session(session_id)
        assert record is not None
        return record.turn, record.ended, len(await store.pending(session_id))
    finally:
        await store.close()


def test_hooks_run_the_lifecycle_cli_and_fail_open(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    settings = load_json(CLAUDE_CODE / ".claude" / "settings.json")
    session = settings["env"]["CLAWVM_SESSION"]
    scripts = str(Path(console_script()).parent)
    env = {
        **os.environ,
        **settings["env"],
        "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
        "CLAWVM_DB": str(db),
        "CLAWVM_LOG": "WARNING",
    }
    payload = {"session_id": "0b9d3f2e", "hook_event_name": "Stop", "cwd": str(tmp_path)}

    # before the model ever called session_start: every hook exits 0 (a Stop hook exiting 2 would block Claude)
    for event in HOOK_EVENTS:
        for command in hook_commands(event):
            assert run_hook(command, env, payload).returncode == 0, (event, command)
    (startup,) = hook_commands("SessionStart", "startup")
    assert f"your session_id is {session}" in run_hook(startup, env, payload).stdout

    async def start_with_a_staged_write() -> None:
        store = await SQLiteStore.open(db)
        try:
            engine = ClawVMEngine(store)
            await engine.session_start(session)
            await engine.write(
                session,
                WriteRequest(
                    "create",
                    "plan/main",
                    Provenance("model", "ext:chat", 0),
                    "plan",
                    "Ship it\n- [ ] tests",
                    commit="boundary",
                ),
            )
        finally:
            await store.close()

    anyio.run(start_with_a_staged_write)
    assert anyio.run(session_state, db, session) == (0, False, 1)
    (stop,) = hook_commands("Stop")
    done = run_hook(stop, env, payload)
    assert done.returncode == 0 and json.loads(done.stdout)["event"] == "turn_end"
    # the hook's process loads the session as a restart would: the staged row is settled (committed), never lost
    assert anyio.run(session_state, db, session) == (1, False, 0)
    (pre_compact,) = hook_commands("PreCompact")
    done = run_hook(pre_compact, env, {**payload, "hook_event_name": "PreCompact", "trigger": "auto"})
    assert done.returncode == 0 and json.loads(done.stdout)["event"] == "compaction"
    (clear,) = hook_commands("SessionStart", "clear")
    done = run_hook(clear, env, {**payload, "hook_event_name": "SessionStart", "source": "clear"})
    assert done.returncode == 0 and "context_assemble" in done.stdout
    (end,) = hook_commands("SessionEnd")
    assert run_hook(end, env, {**payload, "hook_event_name": "SessionEnd", "reason": "exit"}).returncode == 0
    assert anyio.run(session_state, db, session) == (1, True, 0)


# ------------------------------------------------------------------------------------------------ server configs


@pytest.mark.parametrize("config", ["claude_code/.mcp.json", "claude_desktop_config.json"])
async def test_server_configs_start_a_working_server(config: str, tmp_path: Path) -> None:
    (entry,) = load_json(EXAMPLES / config)["mcpServers"].values()
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
