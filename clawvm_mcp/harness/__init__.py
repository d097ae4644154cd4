"""Harness integrations: how an agent loop or a coding harness drives clawvm-mcp so that the harness, not the
model, keeps the memory contract (an MCP server cannot see compactions, resets or turn boundaries by itself).

- ``ClawVMHarness`` (``clawvm_mcp.harness.adapter``): a Python agent loop's side of the integration, over a real
  MCP client and the stdio transport: session_start, context_assemble before every model call, tool_execute around
  every tool call, page_write, lifecycle at every boundary. ``examples/harness_adapter.py`` is its demo.
- ``clawvm-mcp hook claude-code EVENT`` (``clawvm_mcp.harness.claude_code``): Claude Code's hooks, one short process
  per event, driving the engine directly on the server's database. It never imports ``mcp``, so the adapter below
  is loaded only when one of its names is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adapter import ClawVMError, ClawVMHarness, ToolFn

__all__ = ["ClawVMError", "ClawVMHarness", "ToolFn"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import adapter

        return getattr(adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
