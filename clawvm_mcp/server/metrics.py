"""OpenTelemetry metrics for the MCP layer (the ``otel`` extra), recorded by one outermost request middleware.

The SDK already emits a span per message but no metrics. This adds the MCP semantic conventions' histogram
``mcp.server.operation.duration`` and counters read off the tools' structured results (write status, STORE_BUSY,
recall outcome, assembled tokens, faults), so the engine stays free of telemetry imports. Instruments come from
the global MeterProvider, which an embedding app configures; the server sets one up itself only when asked
(``CLAWVM_OTEL=console`` or ``OTEL_METRICS_EXPORTER=console``, and then writes to stderr: stdout is the stdio
transport). Without ``opentelemetry`` importable, ``record_metrics`` installs nothing.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS
from pydantic import BaseModel, ValidationError

try:
    import opentelemetry.metrics as otel
except ImportError:  # the otel extra is not installed: no middleware, no cost
    otel = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
METER = "clawvm-mcp"
_WRITE_TOOLS = frozenset({"page_write", "page_pin", "page_unpin"})
_console_configured = False


def default_provider() -> otel.MeterProvider:
    """The provider instruments are created from: the global one (tests substitute their own)."""
    return otel.get_meter_provider()


class Instruments:
    """The instruments, created once per server from one provider."""

    def __init__(self, provider: otel.MeterProvider) -> None:
        meter = provider.get_meter(METER)
        self.duration = meter.create_histogram(
            "mcp.server.operation.duration", unit="s", description="Time to answer one MCP request"
        )
        self.faults = meter.create_counter("clawvm.faults", unit="{fault}", description="Faults by kind")
        self.journal = meter.create_counter(
            "clawvm.journal.outcomes", unit="{write}", description="Journal rows by status (committed/staged/rejected)"
        )
        self.busy = meter.create_counter(
            "clawvm.store.busy", unit="{write}", description="Writes rejected with STORE_BUSY (retryable)"
        )
        self.tokens = meter.create_histogram(
            "clawvm.assembly.tokens", unit="{token}", description="Tokens in each assembled context"
        )
        self.insufficient = meter.create_counter(
            "clawvm.physical_insufficiency", unit="{assembly}", description="Assemblies whose floors did not fit"
        )
        self.recall = meter.create_counter(
            "clawvm.recall.outcomes", unit="{recall}", description="recall answers by outcome"
        )

    def outcome(self, tool: str, data: Mapping[str, Any]) -> None:
        """Count the domain outcome a successful tool result reports."""
        if tool in _WRITE_TOOLS and isinstance(data.get("status"), str):
            self.journal.add(1, {"clawvm.journal.status": data["status"]})
            reasons = data.get("reasons")
            if isinstance(reasons, list) and any(
                isinstance(r, dict) and r.get("code") == "STORE_BUSY" for r in reasons
            ):
                self.busy.add(1)
        elif tool == "recall" and isinstance(data.get("outcome"), str):
            self.recall.add(1, {"clawvm.recall.outcome": data["outcome"]})
        elif tool == "context_assemble":
            if isinstance(data.get("tokens_used"), int):
                self.tokens.record(data["tokens_used"])
            if data.get("physical_insufficiency") is True:
                self.insufficient.add(1)
        elif tool == "lifecycle":  # rows settled at the boundary are journal outcomes too
            for status in ("committed", "rejected"):
                if isinstance(data.get(status), int) and data[status] > 0:
                    self.journal.add(data[status], {"clawvm.journal.status": status})
        faults = data.get("faults")
        if isinstance(faults, list):
            for fault in faults:
                if isinstance(fault, dict) and isinstance(fault.get("kind"), str):
                    self.faults.add(1, {"clawvm.fault.kind": fault["kind"]})


def _structured(result: HandlerResult) -> tuple[bool, Mapping[str, Any] | None]:
    """(isError, structuredContent) of a tools/call result, as a wire mapping or a model."""
    if isinstance(result, BaseModel):
        result = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if not isinstance(result, Mapping):
        return False, None
    data = result.get("structuredContent")
    return result.get("isError") is True, data if isinstance(data, Mapping) else None


def _error_type(exc: Exception) -> str:
    """As the SDK's span middleware says it: the JSON-RPC code, else the exception's class."""
    if isinstance(exc, MCPError):
        return str(exc.error.code)
    if isinstance(exc, ValidationError):
        return str(INVALID_PARAMS)
    return type(exc).__qualname__


def configure_console() -> None:
    """With ``CLAWVM_OTEL=console`` or ``OTEL_METRICS_EXPORTER=console`` and the SDK installed, export to stderr
    (once per process; the SDK flushes at exit). Anything else leaves the global provider to the embedding app."""
    global _console_configured
    wanted = "console" in (os.environ.get("CLAWVM_OTEL", ""), os.environ.get("OTEL_METRICS_EXPORTER", ""))
    if _console_configured or not wanted:
        return
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
    except ImportError:
        log.warning("console metrics asked for, but opentelemetry-sdk is not installed (pip install clawvm-mcp[otel])")
        return
    _console_configured = True
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr))
    otel.set_meter_provider(MeterProvider(metric_readers=[reader]))


def record_metrics(server: MCPServer[Any]) -> None:
    """Install the metrics middleware outermost, so the duration covers every other middleware's work too."""
    if otel is None:
        return
    configure_console()
    instruments = Instruments(default_provider())

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:  # a notification: no operation to time
            return await call_next(ctx)
        attributes: dict[str, str] = {"mcp.method.name": ctx.method}
        name = ctx.params.get("name") if ctx.params else None
        tool = name if ctx.method == "tools/call" and isinstance(name, str) else None
        if tool is not None:
            attributes["gen_ai.tool.name"] = tool
            attributes["gen_ai.operation.name"] = "execute_tool"
        start = time.perf_counter()
        try:
            result = await call_next(ctx)
        except Exception as exc:
            attributes["error.type"] = _error_type(exc)
            instruments.duration.record(time.perf_counter() - start, attributes)
            raise
        elapsed = time.perf_counter() - start
        if tool is not None:
            is_error, data = _structured(result)
            if is_error:
                attributes["error.type"] = "tool_error"
            elif data is not None:
                instruments.outcome(tool, data)
        instruments.duration.record(elapsed, attributes)
        return result

    server.middleware.insert(0, middleware)
