"""A scripted agent session (no LLM) against `clawvm-mcp serve` over stdio, through a real MCP client.

It walks session_start -> writes -> assemble -> compaction -> assemble -> reset -> assemble and prints what is
resident at each assembly and the fault counters (all zero under ClawVM). Run: python examples/demo.py [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

RULES = """# House rules
- Never push directly to main; open a pull request.
- Run the full test suite before asking for review.
- Ask before deleting any user data."""
PROV = {"source": "harness", "ref": "ext:demo", "turn": 0}


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise SystemExit(f"{tool} failed: {result.content}")
    return result.structured_content


def show(title: str, assembly: dict[str, Any]) -> None:
    print(
        f"\n== {title}: {assembly['tokens_used']}/{assembly['budget']} tokens"
        f"{'  PHYSICAL INSUFFICIENCY' if assembly['physical_insufficiency'] else ''}"
    )
    for page in assembly["pages"]:
        print(f"   {page['page_id']:<28} {page['level']:<11} {page['tokens']:>5} tok  {page['reason']}")


async def faults(client: Client) -> None:
    stats = await call(client, "session_stats", session_id="demo")
    counts = ", ".join(f"{k}={v}" for k, v in stats["faults"].items())
    print(
        f"   faults: {counts}  | duplicate_signature={stats['duplicate_signature']} hits={stats['hits']}"
        f" thrash={stats['thrash']}"
    )


async def main(db: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(db.parent)), "CLAWVM_LOG": "WARNING"}
    server = StdioServerParameters(command=sys.executable, args=["-m", "clawvm_mcp", "serve", "--db", str(db)], env=env)
    async with Client(server) as client:  # type: ignore[arg-type]
        started = await call(
            client, "session_start", session_id="demo", budget=220, bootstrap=[{"page_id": "rules", "content": RULES}]
        )
        print(f"session {started['session_id']} (resumed={started['resumed']}), budget {started['budget']} tokens")
        await call(
            client,
            "page_write",
            session_id="demo",
            page_id="constraint/prod",
            op="create",
            type="constraint",
            content="Production database is read-only for this task.",
            provenance=PROV,
        )
        await call(
            client,
            "page_write",
            session_id="demo",
            page_id="plan/release",
            op="create",
            type="plan",
            content="Release 1.2\n- [x] bump version\n- [ ] update changelog\n- [ ] tag and publish",
            provenance=PROV,
        )
        tool = await call(
            client,
            "tool_execute",
            session_id="demo",
            tool="run_tests",
            args={"suite": "all"},
            result="412 passed, 0 failed in 38.2s\n" + "ok tests/test_api.py\n" * 30,
        )
        again = await call(client, "tool_execute", session_id="demo", tool="run_tests", args={"suite": "all"})
        print(f"tool_execute run_tests: {tool['status']}, repeat: {again['status']} (stored result reused)")
        staged = await call(
            client,
            "page_write",
            session_id="demo",
            page_id="plan/release",
            op="append",
            content="- [ ] announce",
            provenance=PROV,
            commit="boundary",
        )
        print(f"boundary write: {staged['status']} (committed at the next lifecycle boundary)")

        show(
            "assemble",
            await call(
                client,
                "context_assemble",
                session_id="demo",
                demands=[{"page_id": tool["evidence_page_id"], "fidelity": "compressed"}],
            ),
        )
        await faults(client)

        life = await call(client, "lifecycle", session_id="demo", event="compaction")
        print(f"\ncompaction: committed={life['committed']} reinjected={life['reinjected']} faults={life['faults']}")
        show("assemble after compaction", await call(client, "context_assemble", session_id="demo"))
        await faults(client)

        life = await call(client, "lifecycle", session_id="demo", event="reset")
        print(f"\nreset: committed={life['committed']} reinjected={life['reinjected']} faults={life['faults']}")
        after = await call(client, "context_assemble", session_id="demo", budget=70)
        show("assemble after reset (budget 70)", after)
        await faults(client)
        print("\nprompt after reset:\n" + "\n".join("   | " + line for line in after["prompt"].splitlines()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", type=Path, default=None, help="database file (default: a fresh temporary file)")
    args = parser.parse_args()
    if args.db is not None:
        anyio.run(main, args.db)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(main, Path(tmp) / "demo.db")
