"""A Python agent loop's side of clawvm-mcp, over a real MCP client and the stdio transport.

An MCP server cannot see the harness's compactions, resets or turn boundaries; the harness has to say so. These
are the calls, one method per harness event:

    start        session_start once, with the agent's bootstrap pages (they stay hard-pinned)
    context      context_assemble before every model call: the prompt for the token budget, floors guaranteed
    run_tool     tool_execute around every tool call: an idempotent repeat whose stored result is still valid is
                 served from memory; a tool with side effects always runs and invalidates what it may have changed
    remember     page_write for what the agent decides to keep (staged until the next boundary by default)
    lifecycle    turn_end after each turn; compaction / reset / session_end when the harness does them

    async with ClawVMHarness.connect(Path("memory.db"), "s1", idempotent={"read_file": True}) as vm:
        await vm.start([{"page_id": "rules", "content": "- never push to main"}])
        prompt = (await vm.context())["prompt"]
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.types import TextContent

Json = dict[str, Any]
ToolFn = Callable[[Mapping[str, Any]], str]

__all__ = ["ClawVMError", "ClawVMHarness", "ToolFn"]


class ClawVMError(RuntimeError):
    """A tool call the server refused (its message says what to do next)."""


@dataclass
class ClawVMHarness:
    """The calls a harness makes into clawvm-mcp for one session."""

    client: Client
    session_id: str
    # tool name -> idempotent; a tool not named here takes the server's default (read-only tools it knows)
    idempotent: Mapping[str, bool] = field(default_factory=lambda: {})
    tool_runs: int = 0  # tools actually executed (a duplicate_signature answer is not one)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        db: Path,
        session_id: str,
        command: Sequence[str] | None = None,
        idempotent: Mapping[str, bool] | None = None,
    ) -> AsyncIterator[ClawVMHarness]:
        """Start ``clawvm-mcp serve --db DB`` over stdio (the SDK gives the child a minimal environment: pass it)."""
        argv = list(command or [sys.executable, "-m", "clawvm_mcp", "serve"])
        env = {**os.environ, "CLAWVM_LOG": os.environ.get("CLAWVM_LOG", "WARNING")}
        params = StdioServerParameters(command=argv[0], args=[*argv[1:], "--db", str(db)], env=env)
        async with Client(params) as client:
            yield cls(client, session_id, dict(idempotent or {}))

    async def call(self, name: str, /, **args: Any) -> Json:
        """Call one clawvm-mcp tool for this session; a refusal raises ClawVMError with the server's message."""
        result = await self.client.call_tool(name, {"session_id": self.session_id, **args})
        if result.is_error:
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            raise ClawVMError(text or f"{name} failed")
        if result.structured_content is None:
            raise ClawVMError(f"{name} returned no structured content")
        return dict(result.structured_content)

    async def start(self, bootstrap: Sequence[Mapping[str, str]] = (), budget: int = 1200) -> Json:
        return await self.call("session_start", budget=budget, bootstrap=[dict(b) for b in bootstrap])

    async def context(self, demands: Sequence[tuple[str, str]] = (), budget: int | None = None) -> Json:
        """Call before every model call; the result's ``prompt`` goes in front of the model's messages."""
        args: Json = {"demands": [{"page_id": p, "fidelity": f} for p, f in demands]}
        if budget is not None:
            args["budget"] = budget
        return await self.call("context_assemble", **args)

    async def run_tool(
        self, name: str, args: Mapping[str, Any], fn: ToolFn, idempotent: bool | None = None
    ) -> tuple[str, str]:
        """Run a tool through the memory: (result, status). An idempotent repeat whose stored result is still valid
        is not run again (``duplicate_signature``); any other call runs and is recorded (``recorded``, ``updated``
        when a repeat brought a different result, ``duplicate_tool`` when a lost result forced the rerun)."""
        flag = self.idempotent.get(name) if idempotent is None else idempotent
        extra: Json = {} if flag is None else {"idempotent": flag}
        first: Json | None = None
        if flag is not False:  # a tool with side effects is never answered from memory: no need to ask
            first = await self.call("tool_execute", tool=name, args=dict(args), **extra)
            if first["status"] == "duplicate_signature":
                return str(first.get("stored_result") or ""), "duplicate_signature"
        self.tool_runs += 1
        result = fn(args)
        done = await self.call("tool_execute", tool=name, args=dict(args), result=result, **extra)
        if first is not None and first["status"] == "duplicate_tool":
            return result, "duplicate_tool"
        return result, str(done["status"])

    async def remember(self, page_id: str, page_type: str, content: str, commit: str = "boundary") -> Json:
        """Create the page, or append to it; with commit="boundary" it is committed at the next lifecycle event."""
        prov = {"source": "model", "ref": "ext:agent-loop", "turn": 0}
        read = await self.call("page_read", page_id=page_id, fidelity="pointer")
        op = "append" if read["outcome"] == "hit" else "create"
        extra: Json = {"type": page_type} if op == "create" else {}
        return await self.call(
            "page_write", page_id=page_id, op=op, content=content, provenance=prov, commit=commit, **extra
        )

    async def lifecycle(self, event: str) -> Json:
        return await self.call("lifecycle", event=event)

    async def stats(self) -> Json:
        return await self.call("session_stats")
