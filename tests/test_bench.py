"""Smoke test of ``clawvm-mcp bench``: it runs at tiny sizes and prints every figure. No timing assertions.

The side-by-side with the official memory server runs when CLAWVM_MEMORY_SERVER names its ``mcp-server-memory``
(``npm install --prefix DIR @modelcontextprotocol/server-memory``); nothing here reaches the network."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import pytest

from clawvm_mcp.replay import bench


def test_bench_quick_prints_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "growth.png"
    assert bench.main(["--quick", "--pages", "5,12", "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    for name in (
        "== 5 pages",
        "== 12 pages",
        "engine per turn @300 tok",
        "engine per turn @4000 tok",
        "baseline: reference whole-table selector over cached pages",
        "second row, naive re-tokenize-everything",
        "engine peak memory / turn",
        "stdio page_read",
        "stdio page_write",
        "stdio page_create",
        "engine.write over MemoryStore, append, commit now",
        "engine.write over MemoryStore, append, staged",
        "engine.write over MemoryStore, create",
        "of which the session_start call",
        "committed writes over MCP",
        "session_start in process",
        "stdio context_assemble",
        "no-op tool",
        "cold start to first result",
        "committed writes (WAL)",
        "raw sqlite commit",
        "== growth with the page table ==",
        "| stdio context_assemble (ms) |",
        "| stdio create (ms) |",
        "| session_start in process (ms) |",
    ):
        assert name in text, name
    data = json.loads(out.read_text())
    assert [d["pages"] for d in data] == [5, 12]
    assert {"engine_turn_us", "naive_turn_us", "engine_peak_turn_kb", "page_read_ms", "commits_per_s"} <= set(data[0])
    assert {"reference_turn_us", "reference_select_us"} <= set(data[0])
    assert {"write_append_now_us", "write_staged_us", "write_create_us", "page_create_ms"} <= set(data[0])
    assert {"mcp_commits_per_s", "session_start_ms", "stdio_session_start_ms"} <= set(data[0])
    assert all(d["write_create_us"]["n"] >= 1 and d["mcp_commits_per_s"]["value"] > 0 for d in data)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the test extra installs matplotlib
    growth = text[text.index("== growth") :].splitlines()
    assert growth[1] == "| cost | 5 pages | 12 pages | largest / smallest |"
    assert len([line for line in growth if line.startswith("| ")]) == 1 + len(bench.GROWTH)  # every cost has a row


def test_register_adds_the_bench_verb() -> None:
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["bench", "--pages", "50,1000", "--quick", "--only", "engine"])
    assert args.pages == [50, 1000] and args.quick and args.only == ["engine"]
    assert args.func is bench.cmd_bench
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--pages", "lots"])


def test_versus_needs_the_official_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--pages", "5", "--only", "versus"]) == 2
    assert "--memory-server" in capsys.readouterr().err


OFFICIAL = os.environ.get("CLAWVM_MEMORY_SERVER") or shutil.which("mcp-server-memory")


@pytest.mark.skipif(
    OFFICIAL is None, reason="set CLAWVM_MEMORY_SERVER to npm @modelcontextprotocol/server-memory's bin"
)
def test_versus_runs_every_op_on_both_servers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "versus.json"
    args = ["--quick", "--pages", "12", "--only", "versus", "--memory-server", str(OFFICIAL), "--json", str(out)]
    assert bench.main(args) == 0
    figures, text = json.loads(out.read_text())[0], capsys.readouterr().out
    for op in bench.VERSUS_OPS:
        assert figures[f"versus_{op}_ms"]["clawvm"] > 0 and figures[f"versus_{op}_ms"]["official"] > 0, op
        assert f"vs official memory server, {op}" in text, op
