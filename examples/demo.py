"""A scripted agent session (no LLM) against `clawvm-mcp serve` over stdio, through a real MCP client.

It walks session_start -> writes -> assemble -> compaction -> assemble -> reset -> assemble and prints what is
resident at each assembly and the fault counters (all zero under ClawVM). Then it replays the same session in
process under a baseline policy and under ClawVM, side by side, to show what ClawVM prevented.
Run: python examples/demo.py [--db PATH] [--baseline POLICY]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from clawvm_mcp.faults import FAULT_KINDS
from clawvm_mcp.replay import POLICY_NAMES, parse_lines, replay

RULES = """# House rules
- Never push directly to main; open a pull request.
- Run the full test suite before asking for review.
- Ask before deleting any user data."""
CONSTRAINT = "Production database is read-only for this task."
PLAN = "Release 1.2\n- [x] bump version\n- [ ] update changelog\n- [ ] tag and publish"
TEST_RESULT = "412 passed, 0 failed in 38.2s\n" + "ok tests/test_api.py\n" * 30
PROV = {"source": "harness", "ref": "ext:demo", "turn": 0}
BUDGET = 220
# what each fault means in this session (DESIGN section 5 has the general definitions)
MEANING = {
    "post_compaction_bootstrap": "the house rules missing from the first prompt after compaction or reset",
    "pinned_invariant_miss": "a hard-pinned page (rules, constraint) absent or below its floor in a prompt",
    "flush_miss": "the staged plan edit lost at a boundary instead of committed",
    "duplicate_tool": "run_tests run again because its stored result was gone",
    "refetch": "an evicted tool result retrieved again by recall",
    "silent_recall": "an empty recall hiding a backend that denied or failed",
}
THRASH = (
    "thrash = (faults + duplicate_signature alerts) / (hits + 1). A duplicate_signature alert is a repeated tool\n"
    "call answered from memory (the second run_tests): not a fault, but work asked for twice; a hit is a demanded\n"
    "page that was already in the prompt. ClawVM's 1.0 here is that one alert with no hit yet, and no fault."
)


def session_trace() -> list[dict[str, Any]]:
    """The session driven over MCP below, as a replay trace (DESIGN section 8), turn by turn."""
    page = "page"
    return [
        {"op": "session_start", "session": "demo", "budget": BUDGET},
        {"op": page, "turn": 0, "page": {"page_id": "rules", "type": "bootstrap", "content": RULES}},
        {"op": page, "turn": 0, "page": {"page_id": "constraint/prod", "type": "constraint", "content": CONSTRAINT}},
        {"op": page, "turn": 0, "page": {"page_id": "plan/release", "type": "plan", "content": PLAN}},
        {"op": page, "turn": 0, "page": {"page_id": "ev/run_tests", "type": "evidence", "content": TEST_RESULT}},
        {"op": "tool", "turn": 0, "name": "run_tests", "args": {"suite": "all"}, "result_page": "ev/run_tests"},
        {"op": "tool", "turn": 0, "name": "run_tests", "args": {"suite": "all"}, "result_page": "ev/run_tests"},
        {
            "op": page,
            "turn": 0,
            "dirty": True,
            "page": {"page_id": "plan/release", "type": "plan", "content": PLAN + "\n- [ ] announce"},
        },
        {"op": "demand", "turn": 0, "page_id": "ev/run_tests", "fidelity": "compressed"},
        {"op": "assemble", "turn": 0},
        {"op": "compaction", "turn": 1},
        {"op": "assemble", "turn": 1},
        {"op": "reset", "turn": 2},
        {"op": "assemble", "turn": 2},
    ]


async def compare(baseline: str) -> dict[str, dict[str, Any]]:
    """Replays the session under ``baseline`` and under ClawVM (the same engine, in process); prints both."""
    trace = parse_lines([json.dumps(e) for e in session_trace()], "demo.jsonl")
    runs: dict[str, dict[str, Any]] = {
        name: (await replay(trace, name, BUDGET)).metrics for name in (baseline, "clawvm")
    }
    print(f"\n== the same session replayed in process, budget {BUDGET}: {baseline} (a baseline) beside clawvm")
    print(f"   {'':<28} {baseline:>17} {'clawvm':>8}   what it counts")
    for kind in FAULT_KINDS:
        row = [int(runs[name]["faults"][kind]) for name in runs]
        print(f"   {kind:<28} {row[0]:>17} {row[1]:>8}   {MEANING[kind]}")
    for key, about in (
        ("duplicate_signature", "repeats answered from memory (alerts, not faults)"),
        ("hits", "demands already in the prompt"),
    ):
        print(f"   {key:<28} {runs[baseline][key]:>17} {runs['clawvm'][key]:>8}   {about}")
    print(f"   {'thrash':<28} {runs[baseline]['thrash']:>17} {runs['clawvm']['thrash']:>8}")
    print("\n" + THRASH)
    return runs


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise SystemExit(f"{tool} failed: {result.content}")
    structured: dict[str, Any] = result.structured_content
    return structured


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


async def main(db: Path, baseline: str = "retrieval") -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", str(db.parent)), "CLAWVM_LOG": "WARNING"}
    server = StdioServerParameters(command=sys.executable, args=["-m", "clawvm_mcp", "serve", "--db", str(db)], env=env)
    async with Client(server) as client:  # type: ignore[arg-type]
        started = await call(
            client,
            "session_start",
            session_id="demo",
            budget=BUDGET,
            bootstrap=[{"page_id": "rules", "content": RULES}],
        )
        print(f"session {started['session_id']} (resumed={started['resumed']}), budget {started['budget']} tokens")
        await call(
            client,
            "page_write",
            session_id="demo",
            page_id="constraint/prod",
            op="create",
            type="constraint",
            content=CONSTRAINT,
            provenance=PROV,
        )
        await call(
            client,
            "page_write",
            session_id="demo",
            page_id="plan/release",
            op="create",
            type="plan",
            content=PLAN,
            provenance=PROV,
        )
        tool = await call(
            client,
            "tool_execute",
            session_id="demo",
            tool="run_tests",
            args={"suite": "all"},
            result=TEST_RESULT,
            idempotent=True,  # the harness declares it read-only: a repeat may be answered from memory
        )
        again = await call(
            client, "tool_execute", session_id="demo", tool="run_tests", args={"suite": "all"}, idempotent=True
        )
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
        print("   (the prompt is whole again: pinned pages re-injected, the staged plan edit committed; the replay")
        print("    at the end shows a baseline policy losing them at this point)")

        life = await call(client, "lifecycle", session_id="demo", event="reset")
        print(f"\nreset: committed={life['committed']} reinjected={life['reinjected']} faults={life['faults']}")
        after = await call(client, "context_assemble", session_id="demo", budget=70)
        show("assemble after reset (budget 70)", after)
        await faults(client)
        print("\nprompt after reset:\n" + "\n".join("   | " + line for line in after["prompt"].splitlines()))
    await compare(baseline)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", type=Path, default=None, help="database file (default: a fresh temporary file)")
    parser.add_argument(
        "--baseline",
        choices=[p for p in POLICY_NAMES if p != "clawvm"],
        default="retrieval",
        help="the policy replayed beside clawvm (default: retrieval)",
    )
    args = parser.parse_args()
    if args.db is not None:
        anyio.run(main, args.db, args.baseline)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(main, Path(tmp) / "demo.db", args.baseline)
