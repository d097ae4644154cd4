"""The console script: every verb explains itself, and harness hooks can commit staged writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from clawvm_mcp.cli import VERBS, main
from clawvm_mcp.engine import ClawVMEngine
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import SQLiteStore


async def stage_one_boundary_write(db: Path) -> None:
    """Session s1 with one write staged for the next boundary, left behind by a process that has exited."""
    store = await SQLiteStore.open(db)
    engine = ClawVMEngine(store)
    await engine.session_start("s1")
    prov = Provenance("harness", "ext:hook", 0)
    await engine.write("s1", WriteRequest("create", "pref/a", prov, "preference", "k: v", commit="boundary"))
    await store.close()


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([verb, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: clawvm-mcp {verb}")


def test_lifecycle_hook_commits_staged_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "hook.db"

    anyio.run(stage_one_boundary_write, db)
    assert main(["lifecycle", "--db", str(db), "--session", "s1", "--event", "compaction"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["committed"] == 1 and result["faults"] == [] and result["event"] == "compaction"
    assert main(["lifecycle", "--db", str(db), "--session", "nope", "--event", "flush"]) == 2
    assert "No session 'nope'" in capsys.readouterr().err


def test_inspect_is_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "i.db"

    anyio.run(stage_one_boundary_write, db)
    assert main(["inspect", "--db", str(db), "--session", "s1"]) == 0
    out = capsys.readouterr().out
    assert "s1" in out and "validated" in out  # the staged row is shown, not settled by looking at it


def test_http_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLAWVM_TOKEN"}
    out = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "serve", "--http", "--db", str(tmp_path / "h.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2
    assert "CLAWVM_TOKEN" in out.stderr


@pytest.mark.parametrize("url", ["postgresql:///memory?host=/run/pg", "postgresql://u@db.example:5433/memory"])
@pytest.mark.parametrize("verb", ["serve", "inspect"])
def test_db_url_is_kept_as_typed(verb: str, url: str) -> None:
    """A Path folded "postgresql:///memory?host=/run/pg" into "postgresql:/memory?...", which then named host
    "memory": the socket URL could not be given at all."""
    from clawvm_mcp.cli import build_parser
    from clawvm_mcp.cli_options import db_path
    from clawvm_mcp.store.open import database_url

    extra = ["--session", "s1"] if verb == "inspect" else []
    args = build_parser().parse_args([verb, "--db", url, *extra])
    assert db_path(args) == url
    assert database_url(db_path(args)) == url
    assert build_parser().parse_args([verb, "--db", "mem.db", *extra]).db == Path("mem.db")
