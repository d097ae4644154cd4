"""Demo of the Python harness adapter (``clawvm_mcp.harness.ClawVMHarness``): a scripted agent loop, no LLM.

The "model" reads files, keeps a plan, is compacted, edits a file and reads it again. What it shows:
- a repeat of a read whose stored result is still valid is served from memory (not run again);
- after the edit, the read of the edited file runs again and its new result replaces the stored one;
- the pinned rules are back in the prompt after compaction, and the staged plan notes are committed.

    python examples/harness_adapter.py [--db PATH] [--session ID]

It starts ``python -m clawvm_mcp serve --db PATH`` as a subprocess and talks to it as any MCP host would.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from clawvm_mcp.harness import ClawVMHarness

Json = dict[str, Any]

BOOTSTRAP = [
    {
        "page_id": "rules",
        "content": "# House rules\n- never push to main\n- run the tests before merging\n- ask before deleting data",
    },
]
IDEMPOTENT = {"read_file": True, "write_file": False}


@dataclass
class Workspace:
    """The demo's files: ``write_file`` changes them, which is the side effect memory must not hide."""

    files: dict[str, str] = field(
        default_factory=lambda: {
            "app.py": "def handler(event):\n    return {'status': 200, 'body': render(event)}\n",
            "render.py": "def render(event):\n    return f\"hello {event['name']}\"\n",
        }
    )

    def read_file(self, args: Mapping[str, Any]) -> str:
        path = str(args["path"])
        return self.files.get(path, f"error: no file {path}")

    def write_file(self, args: Mapping[str, Any]) -> str:
        self.files[str(args["path"])] = str(args["content"])
        return f"wrote {args['path']}"


PATCHED = "def render(event):\n    return f\"Hello, {event['name']}!\"\n"
# A scripted "model": per turn, the tool calls it asks for and the note it keeps. No LLM involved.
SCRIPT: list[Json] = [
    {"tools": [("read_file", {"path": "app.py"})], "note": "Fix the greeting\n- [x] read app.py\n- [ ] read render.py"},
    {
        "tools": [("read_file", {"path": "render.py"}), ("read_file", {"path": "app.py"})],
        "note": "- [ ] patch render.py",
    },
    {"compact": True},
    {
        "tools": [("write_file", {"path": "render.py", "content": PATCHED}), ("read_file", {"path": "render.py"})],
        "note": "- [x] patch render.py",
    },
]


async def run_demo(db: Path, session_id: str = "demo", out: Callable[[str], None] = print) -> Json:
    """Drive the scripted agent through the adapter; returns a summary (also what the test checks)."""
    workspace = Workspace()
    tools = {"read_file": workspace.read_file, "write_file": workspace.write_file}
    calls: list[tuple[str, str, str]] = []  # (tool, status, result)
    async with ClawVMHarness.connect(db, session_id, idempotent=IDEMPOTENT) as vm:
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
                result, status = await vm.run_tool(name, args, tools[name])
                calls.append((name, status, result))
                out(f"turn {turn}: {name}({json.dumps(args)[:60]}) -> {status}")
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
        out(f"tools actually run: {vm.tool_runs} of {len(calls)} calls")
        return {
            "calls": calls,
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
