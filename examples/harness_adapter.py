"""A minimal agent-harness adapter for clawvm-mcp, with a demo agent loop that needs no LLM.

An MCP server cannot see the harness's compactions, resets or turn boundaries; the harness has to say so. This
adapter is the whole integration for a Python agent loop, over a real MCP client and the stdio transport:

    session_start      once, with the agent's bootstrap pages (they stay hard-pinned)
    context_assemble   before every model call: the prompt for the token budget, floors guaranteed
    tool_execute       around every tool call: a repeat whose result is still resolvable is served from memory
    page_write         for what the agent decides to keep (here staged until the next boundary)
    lifecycle          turn_end after each turn; compaction / reset / session_end when the harness does them

Run the demo (a scripted "model" reads files, keeps a plan, gets compacted, and finishes):

    python examples/harness_adapter.py [--db PATH] [--session ID]

It starts ``python -m clawvm_mcp serve --db PATH`` as a subprocess and talks to it as any MCP host would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import TextContent

Json = dict[str, Any]
ToolFn = Callable[[Mapping[str, Any]], str]


class ClawVMError(RuntimeError):
    """A tool call the server refused (its message says what to do next)."""


@dataclass
class ClawVMHarness:
    """The calls a harness makes into clawvm-mcp, one method per harness event."""

    client: Client
    session_id: str
    tool_runs: int = 0  # tools actually executed (a duplicate_signature hit is not one)
    log: list[str] = field(default_factory=lambda: [])

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, db: Path, session_id: str, command: Sequence[str] | None = None
    ) -> AsyncIterator[ClawVMHarness]:
        """Start ``clawvm-mcp serve --db DB`` over stdio (the SDK gives the child a minimal environment: pass it)."""
        argv = list(command or [sys.executable, "-m", "clawvm_mcp", "serve"])
        env = {**os.environ, "CLAWVM_LOG": os.environ.get("CLAWVM_LOG", "WARNING")}
        params = StdioServerParameters(command=argv[0], args=[*argv[1:], "--db", str(db)], env=env)
        async with Client(params) as client:
            yield cls(client, session_id)

    async def call(self, name: str, /, **args: Any) -> Json:
        """Call one clawvm-mcp tool for this session; a refusal raises ClawVMError with the server's message."""
        result = await self.client.call_tool(name, {"session_id": self.session_id, **args})
        if result.is_error:
            text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
            raise ClawVMError(text or f"{name} failed")
        if result.structured_content is None:
            raise ClawVMError(f"{name} returned no structured content")
        return dict(result.structured_content)

    # -- harness events ---------------------------------------------------------------------------------------

    async def start(self, bootstrap: Sequence[Mapping[str, str]] = (), budget: int = 1200) -> Json:
        return await self.call("session_start", budget=budget, bootstrap=[dict(b) for b in bootstrap])

    async def context(self, demands: Sequence[tuple[str, str]] = (), budget: int | None = None) -> Json:
        """Call before every model call; the result's ``prompt`` goes in front of the model's messages."""
        args: Json = {"demands": [{"page_id": p, "fidelity": f} for p, f in demands]}
        if budget is not None:
            args["budget"] = budget
        return await self.call("context_assemble", **args)

    async def run_tool(self, name: str, args: Mapping[str, Any], fn: ToolFn) -> tuple[str, str]:
        """Run a tool through the memory: (result, status). A resolvable repeat is not run again."""
        first = await self.call("tool_execute", tool=name, args=dict(args))
        if first["status"] == "duplicate_signature":
            return str(first.get("stored_result") or ""), "duplicate_signature"
        self.tool_runs += 1
        result = fn(args)
        await self.call("tool_execute", tool=name, args=dict(args), result=result)
        return result, str(first["status"])

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


# ------------------------------------------------------------------------------------------------------ demo

FILES = {
    "app.py": "def handler(event):\n    return {'status': 200, 'body': render(event)}\n",
    "render.py": "def render(event):\n    return f\"hello {event['name']}\"\n",
}
BOOTSTRAP = [
    {
        "page_id": "rules",
        "content": "# House rules\n- never push to main\n- run the tests before merging\n- ask before deleting data",
    },
]


def read_file(args: Mapping[str, Any]) -> str:
    path = str(args["path"])
    return FILES.get(path, f"error: no file {path}")


TOOLS: dict[str, ToolFn] = {"read_file": read_file}

# A scripted "model": per turn, the tool calls it asks for and the note it keeps. No LLM involved.
SCRIPT: list[Json] = [
    {"tools": [("read_file", {"path": "app.py"})], "note": "Fix the greeting\n- [x] read app.py\n- [ ] read render.py"},
    {
        "tools": [("read_file", {"path": "render.py"}), ("read_file", {"path": "app.py"})],
        "note": "- [ ] patch render.py",
    },
    {"compact": True},
    {"tools": [("read_file", {"path": "app.py"})], "note": "- [x] patch render.py"},
]


async def run_demo(db: Path, session_id: str = "demo", out: Callable[[str], None] = print) -> Json:
    """Drive the scripted agent through the adapter; returns a summary (also what the test checks)."""
    statuses: list[str] = []
    async with ClawVMHarness.connect(db, session_id) as vm:
        started = await vm.start(BOOTSTRAP)
        out(f"session {started['session_id']}: {started['pages']} pages, budget {started['budget']}")
        rules_after_compaction = False
        for turn, step in enumerate(SCRIPT, start=1):
            if step.get("compact"):
                life = await vm.lifecycle("compaction")  # the harness is about to summarise its transcript
                out(f"turn {turn}: compaction -> committed {life['committed']}, re-injected {life['reinjected']}")
                ctx = await vm.context()
                rules_after_compaction = "never push to main" in ctx["prompt"]
                out(f"turn {turn}: prompt after compaction has the rules: {rules_after_compaction}")
                continue
            ctx = await vm.context()
            out(
                f"turn {turn}: prompt {ctx['tokens_used']}/{ctx['budget']} tokens, "
                f"{sum(1 for p in ctx['pages'] if p['level'] != 'none')} pages resident"
            )
            for name, args in step.get("tools", []):
                _, status = await vm.run_tool(name, args, TOOLS[name])
                statuses.append(status)
                out(f"turn {turn}: {name}({json.dumps(args)}) -> {status}")
            if note := step.get("note"):
                wrote = await vm.remember("plan/main", "plan", str(note))
                out(f"turn {turn}: plan note {wrote['status']}")
            await vm.lifecycle("turn_end")
        end = await vm.lifecycle("session_end")  # commits the last staged note
        out(f"session_end: committed {end['committed']} staged writes")
        await vm.start()  # resume the ended session (as the next run would) to read back what was kept
        stats = await vm.stats()
        plan = await vm.call("page_read", page_id="plan/main")
        out("plan/main as kept:\n  " + "\n  ".join(plan["page"]["text"].splitlines()))
        out(
            f"stats: faults {stats['faults_total']}, duplicate_signature {stats['duplicate_signature']}, "
            f"hits {stats['hits']}, thrash {stats['thrash']}, journal {stats['journal']}"
        )
        out(f"tools actually run: {vm.tool_runs} of {len(statuses)} calls")
        return {
            "statuses": statuses,
            "tool_runs": vm.tool_runs,
            "stats": stats,
            "end": end,
            "rules_after_compaction": rules_after_compaction,
            "plan": plan["page"]["text"],
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Demo: a scripted agent loop driving clawvm-mcp over stdio.")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file (default: a temporary one)")
    parser.add_argument("--session", default="demo", help="session id (default: demo)")
    args = parser.parse_args(argv)
    if args.db is not None:
        anyio.run(run_demo, args.db, args.session)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        anyio.run(run_demo, Path(tmp) / "demo.db", args.session)
    return 0


if __name__ == "__main__":
    sys.exit(main())
