"""OpenTelemetry metrics from the MCP layer (issue 13): a real in-process client drives the server, and an SDK
InMemoryMetricReader reads what was recorded; without opentelemetry the server still serves."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint

from clawvm_mcp.engine import EngineConfig, EnginePolicy
from clawvm_mcp.server import ServerConfig, create_server, metrics

from .conftest import PROV, call

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def reader(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """A private provider for the server under test (the global one is set once per process, so not that)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    monkeypatch.setattr(metrics, "default_provider", lambda: provider)
    yield reader
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }


def counts(found: dict[str, list[Any]], name: str, key: str) -> dict[str, int]:
    return {str(p.attributes.get(key)): int(p.value) for p in found.get(name, []) if isinstance(p, NumberDataPoint)}


async def test_durations_and_domain_outcomes_are_recorded(
    reader: InMemoryMetricReader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "m.db"
    monkeypatch.setenv("CLAWVM_STORE_TIMEOUT", "0.3")  # the store's own lock wait, read when it opens
    engine = EngineConfig(policy=EnginePolicy(writeback_compaction=False), store_timeout=0.3)
    async with Client(create_server(ServerConfig(db=db, engine=engine))) as client:
        rules = [{"page_id": "rules", "content": "# Rules\n- never push to main\n- run the tests first"}]
        await call(client, "session_start", session_id="s1", bootstrap=rules)
        made = await call(
            client, "page_write", session_id="s1", page_id="notes", op="create", content="deploy on fridays",
            type="conversation", provenance=PROV,
        )  # fmt: skip
        assert made["status"] == "committed"
        staged = await call(
            client, "page_write", session_id="s1", page_id="notes", op="append", content="never on mondays",
            provenance=PROV, commit="boundary",
        )  # fmt: skip
        assert staged["status"] == "staged"
        assert (await call(client, "recall", session_id="s1", query="fridays"))["outcome"] == "hit"
        assert (await call(client, "recall", session_id="s1", query="zebra"))["outcome"] == "no_match"
        assembled = await call(client, "context_assemble", session_id="s1")
        squeezed = await call(client, "context_assemble", session_id="s1", budget=1)
        ended = await call(client, "lifecycle", session_id="s1", event="compaction")
        assert [f["kind"] for f in ended["faults"]] == ["flush_miss"]
        lock = sqlite3.connect(db, isolation_level=None)  # a writer holding the lock: the next write is STORE_BUSY
        try:
            lock.execute("BEGIN IMMEDIATE")
            busy = await call(
                client, "page_write", session_id="s1", page_id="other", op="create", content="x",
                type="conversation", provenance=PROV,
            )  # fmt: skip
        finally:
            lock.close()
        assert [r["code"] for r in busy["reasons"]] == ["STORE_BUSY"]
        with pytest.raises(MCPError):
            await client.call_tool("page_frobnicate", {})
        failed = await client.call_tool("page_read", {"session_id": "ghost", "page_id": "x"})
        assert failed.is_error
        await client.list_tools()

    found = points(reader)
    durations = {tuple(sorted(p.attributes.items())): p for p in found["mcp.server.operation.duration"]}
    write_ok = (("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "page_write"))
    write_ok += (("mcp.method.name", "tools/call"),)
    assert durations[write_ok].count == 3  # created, staged, STORE_BUSY-rejected: the call itself succeeded
    assert durations[write_ok].sum > 0
    assert isinstance(durations[write_ok], HistogramDataPoint)
    recall = (
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", "recall"),
        ("mcp.method.name", "tools/call"),
    )
    assert durations[recall].count == 2
    unknown = (("error.type", "-32602"), ("gen_ai.operation.name", "execute_tool"))
    unknown += (("gen_ai.tool.name", "page_frobnicate"), ("mcp.method.name", "tools/call"))
    assert durations[unknown].count == 1
    tool_error = (("error.type", "tool_error"), ("gen_ai.operation.name", "execute_tool"))
    tool_error += (("gen_ai.tool.name", "page_read"), ("mcp.method.name", "tools/call"))
    assert durations[tool_error].count == 1
    assert any(dict(k) == {"mcp.method.name": "tools/list"} for k in durations), "non-tool requests are timed too"

    journal = counts(found, "clawvm.journal.outcomes", "clawvm.journal.status")
    assert journal == {"committed": 1, "staged": 1, "rejected": 1}, journal
    assert counts(found, "clawvm.recall.outcomes", "clawvm.recall.outcome") == {"hit": 1, "no_match": 1}
    assert counts(found, "clawvm.store.busy", "") == {"None": 1}
    assert counts(found, "clawvm.faults", "clawvm.fault.kind") == {"flush_miss": 1}
    assert squeezed["physical_insufficiency"] and not assembled["physical_insufficiency"]
    assert counts(found, "clawvm.physical_insufficiency", "") == {"None": 1}
    [tokens] = found["clawvm.assembly.tokens"]
    assert tokens.count == 2
    assert tokens.sum == assembled["tokens_used"] + squeezed["tokens_used"]


def test_without_opentelemetry_the_server_still_answers_a_tool_call(tmp_path: Path) -> None:
    """A subprocess whose import of ``opentelemetry.metrics`` fails (the SDK itself needs ``opentelemetry.trace``,
    so the API package is always there; its metrics module is what server/metrics.py imports): no metrics
    middleware is installed and tools still work."""
    script = textwrap.dedent(
        f"""
        import builtins, sys
        real = builtins.__import__
        def blocked(name, *args, **kwargs):
            if name == "opentelemetry.metrics" or name.startswith("opentelemetry.metrics.") or (
                name == "opentelemetry" and "metrics" in (args[2] if len(args) > 2 and args[2] else ())
            ):
                raise ImportError("blocked: " + name)
            return real(name, *args, **kwargs)
        builtins.__import__ = blocked
        import anyio
        from mcp import Client
        from clawvm_mcp.server import ServerConfig, create_server, metrics
        assert metrics.otel is None
        async def main():
            server = create_server(ServerConfig(db={str(tmp_path / "n.db")!r}))
            installed = sum(getattr(m, "__module__", "") == "clawvm_mcp.server.metrics" for m in server.middleware)
            async with Client(server) as client:
                result = await client.call_tool("session_start", {{"session_id": "s1"}})
                assert not result.is_error, result.content
                print("ok", result.structured_content["session_id"], installed)
        anyio.run(main)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "s1", "0"]


@pytest.mark.parametrize("env", [{"CLAWVM_OTEL": "console"}, {"OTEL_METRICS_EXPORTER": "console"}])
def test_console_export_goes_to_stderr_never_stdout(tmp_path: Path, env: dict[str, str]) -> None:
    """stdout is the stdio transport: the console exporter (flushed when the process exits) writes to stderr."""
    script = textwrap.dedent(
        f"""
        import anyio
        from mcp import Client
        from clawvm_mcp.server import ServerConfig, create_server
        async def main():
            async with Client(create_server(ServerConfig(db={str(tmp_path / "c.db")!r}))) as client:
                assert not (await client.call_tool("session_start", {{"session_id": "s1"}})).is_error
            print("ok")
        anyio.run(main)
        """
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CLAWVM_OTEL"))}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**clean, **env}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    exported = json.loads(done.stderr[done.stderr.index("{") :])
    names = {m["name"] for rm in exported["resource_metrics"] for sm in rm["scope_metrics"] for m in sm["metrics"]}
    assert "mcp.server.operation.duration" in names, names
