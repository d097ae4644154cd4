"""The ``replay``, ``sweep``, ``workloads`` and ``trace`` verbs; ``clawvm_mcp.cli`` mounts them with ``register``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from ..engine import EngineError
from . import claude_code
from .driver import ReplayError, ReplayResult, replay, summarize
from .policies import POLICY_NAMES
from .report import BUDGETS, Progress, ablation, policies_from, sweep, write_reports
from .trace import Trace, TraceError, load_trace
from .workloads import FAMILIES, GENERATORS, STRESS, write_workloads

SubParsers = Any  # argparse's _SubParsersAction is private; its type is not part of any public API


def register(subparsers: SubParsers) -> None:
    rp = subparsers.add_parser(
        "replay",
        help="replay JSONL traces through the engine under a policy",
        description="Replay traces through the real engine with one policy and budget; prints fault counts.",
    )
    rp.add_argument("traces", nargs="+", type=Path, metavar="TRACE.jsonl")
    rp.add_argument("--policy", default="clawvm", choices=POLICY_NAMES)
    rp.add_argument("--budget", type=int, default=None, help="tokens per assembly (default: the trace's budget)")
    rp.add_argument("--json", action="store_true", help="print the full result as JSON")
    rp.add_argument(
        "--via",
        choices=("engine", "mcp"),
        default="engine",
        help="mcp: drive a real 'clawvm-mcp serve' over stdio (clawvm policy, content traces only)",
    )
    rp.set_defaults(func=cmd_replay)

    sw = subparsers.add_parser(
        "sweep",
        help="replay workloads x policies x budgets and write reports",
        description="Writes summary.json, runs.csv, summary.md, timing.json and faults.png (with the plot extra).",
    )
    sw.add_argument("--workloads", type=Path, required=True, help="directory of *.jsonl traces")
    sw.add_argument("--policies", default="all", help="'all' or a comma list of " + ", ".join(POLICY_NAMES))
    sw.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="comma list of token budgets")
    sw.add_argument("--out", type=Path, required=True, help="output directory")
    sw.add_argument("--no-ablation", action="store_true", help="skip the budget-180 subtractive ablation")
    sw.set_defaults(func=cmd_sweep)

    wl = subparsers.add_parser(
        "workloads",
        help="write the synthetic workload families and stress traces",
        description=f"Families: {', '.join(FAMILIES)}; stress: {', '.join(STRESS)}.",
    )
    wl.add_argument("--out", type=Path, required=True, help="directory to write the *.jsonl traces into (created)")
    wl.add_argument(
        "--seed", type=int, default=0, help="random seed; the same seed writes byte-identical traces (default 0)"
    )
    wl.add_argument("--content", action="store_true", help="generated text instead of token counts (for --via mcp)")
    wl.add_argument("--only", default="", help="comma list of workload names (default: all)")
    wl.set_defaults(func=cmd_workloads)

    tr = subparsers.add_parser(
        "trace",
        help="convert harness logs into replay traces",
        description="Convert a harness's own logs into DESIGN section 8 traces for 'clawvm-mcp replay'.",
    )
    claude_code.register(tr.add_subparsers(dest="source", required=True, metavar="SOURCE"))


def _error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 2


async def _replay_one(trace: Trace, args: argparse.Namespace) -> ReplayResult:
    if args.via == "mcp":
        from .mcp_backend import McpBackend

        return await replay(trace, args.policy, args.budget, await McpBackend.launch())
    return await replay(trace, args.policy, args.budget)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.budget is not None and args.budget < 1:
        return _error("--budget must be a positive number of tokens")
    try:
        traces = [load_trace(p) for p in args.traces]
    except TraceError as exc:
        return _error(str(exc))
    if args.via == "mcp":
        if args.policy != "clawvm":
            return _error(f"--via mcp runs the server, which enforces the clawvm policy only (got {args.policy})")
        bad = [t.name for t in traces if t.has_token_pages]
        if bad:
            return _error(
                f"{bad[0]} has token-only pages, which MCP cannot carry; "
                "generate it with 'clawvm-mcp workloads --content'"
            )
    outputs = []
    for trace in traces:
        try:
            result = anyio.run(_replay_one, trace, args)
        except (ReplayError, EngineError) as exc:
            return _error(str(exc))
        outputs.append(result)
        if not args.json:
            print(summarize(result.metrics))
    if args.json:
        docs = [{**r.metrics, "timing": r.timing} for r in outputs]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, sort_keys=True, indent=2))
    return 0


def _budgets(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--budgets takes comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError("--budgets needs at least one positive budget")
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        budgets = _budgets(args.budgets)
        policies = policies_from(args.policies)
    except ValueError as exc:
        return _error(str(exc))
    files = sorted(args.workloads.glob("*.jsonl")) if args.workloads.is_dir() else []
    if not files:
        return _error(f"no *.jsonl traces in {args.workloads}; 'clawvm-mcp workloads --out DIR' writes some")
    try:
        traces = [load_trace(p) for p in files]
    except TraceError as exc:
        return _error(str(exc))
    family = [t for t in traces if Path(t.name).stem in FAMILIES] or traces
    total = len(traces) * len(policies) * len(budgets) + (0 if args.no_ablation else 8 * len(family))
    bar = Progress(total)

    async def run() -> list[str]:
        result = await sweep(traces, policies, budgets, bar.step)
        rows = [] if args.no_ablation else await _ablation(family, bar)
        return write_reports(args.out, result, budgets, rows)

    try:
        notes = anyio.run(run)
    except (ReplayError, EngineError) as exc:
        return _error(str(exc))
    for note in notes:
        print(note, file=sys.stderr)
    print(f"wrote {args.out}/summary.json, runs.csv, summary.md, timing.json" + ("" if notes else ", faults.png"))
    return 0


async def _ablation(traces: list[Trace], bar: Progress) -> list[dict[str, object]]:
    rows = await ablation(traces)
    for _ in range(8 * len(traces)):
        bar.step("ablation")
    return rows


def cmd_workloads(args: argparse.Namespace) -> int:
    names = tuple(n.strip() for n in args.only.split(",") if n.strip()) or tuple(GENERATORS)
    unknown = [n for n in names if n not in GENERATORS]
    if unknown:
        return _error(f"unknown workload {unknown[0]!r}; use one of {', '.join(GENERATORS)}")
    paths = write_workloads(args.out, args.seed, names, args.content)
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m clawvm_mcp.replay.cli``) until the main CLI mounts these verbs."""
    parser = argparse.ArgumentParser(prog="clawvm-mcp")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
