"""Sweeps (workloads x policies x budgets) and their reports: JSON, CSV, Markdown and an optional PNG.

The summary files are deterministic; wall-clock overhead goes to ``timing.json`` only.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..faults import FAULT_KINDS
from .driver import replay
from .policies import ABLATION_SWITCHES, POLICIES, ReplayPolicy, get_policy, with_switch
from .trace import Trace
from .workloads import FAMILIES

BUDGETS = (120, 180, 240, 300, 380, 500)
PAPER_TABLE4 = {  # paper Table 4: mean explicit faults and thrash over 4 workloads x 6 budgets
    "retrieval": (67.8, 3.993),
    "retrieval_cache": (10.8, 1.642),
    "compaction_hybrid": (1.5, 1.017),
    "clawvm": (0.0, 0.901),
    "oracle": (0.0, 0.901),
}
PAPER_TABLE6 = {  # paper Table 6: faults summed over the 4 workloads at budget 180 (bootstrap, flush, dup+refetch)
    "full": (0, 0, 0),
    "pointer_resolution": (0, 0, 126),
    "writeback_compaction": (0, 20, 0),
    "auto_pin": (9, 0, 0),
    "writeback_reset": (0, 3, 0),
    "upgrade_scoring": (0, 0, 0),
    "prefetch": (0, 0, 0),
}
Row = dict[str, object]


class Progress:
    """A plain-text progress bar on stderr, redrawn in place; silent when stderr is not a terminal."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.total, self.done, self.width = max(1, total), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        filled = self.width * self.done // self.total
        line = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label}"
        if self.live:
            self.stream.write("\r" + line[:100].ljust(100))
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done == self.total or self.done % max(1, self.total // 10) == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


@dataclass(frozen=True, slots=True)
class SweepResult:
    rows: list[Row]
    timing: list[Row]


async def sweep(
    traces: Sequence[Trace],
    policies: Sequence[ReplayPolicy],
    budgets: Sequence[int],
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    rows: list[Row] = []
    timing: list[Row] = []
    for trace in traces:
        for policy in policies:
            for budget in budgets:
                result = await replay(trace, policy, budget)
                rows.append(result.metrics)
                timing.append({"trace": trace.name, "policy": policy.name, "budget": budget, **result.timing})
                if progress is not None:
                    progress(f"{trace.name} {policy.name} {budget}")
    return SweepResult(rows, timing)


def _bootstrap(row: Row) -> int:
    return _fault(row, "post_compaction_bootstrap")


def _fault(row: Row, kind: str) -> int:
    faults = row["faults"]
    assert isinstance(faults, dict)
    return int(faults[kind])


def summarize(rows: Sequence[Row]) -> dict[str, Row]:
    """Per policy: mean faults and thrash over every (workload, budget), plus the fits-only view."""
    out: dict[str, Row] = {}
    for name in dict.fromkeys(str(r["policy"]) for r in rows):
        mine = [r for r in rows if r["policy"] == name]
        fit = [r for r in mine if r["fits"]]
        out[name] = {
            "runs": len(mine),
            "mean_faults": round(statistics.fmean(int(str(r["faults_total"])) for r in mine), 3),
            "mean_thrash": round(statistics.fmean(float(str(r["thrash"])) for r in mine), 3),
            "mean_faults_where_fits": round(statistics.fmean(int(str(r["faults_total"])) for r in fit), 3)
            if fit
            else None,
            "runs_physically_insufficient": len(mine) - len(fit),
            "mean_faults_without_pinned_miss": round(
                statistics.fmean(int(str(r["faults_total"])) - _fault(r, "pinned_invariant_miss") for r in mine), 3
            ),
            "faults_by_kind": {k: sum(_fault(r, k) for r in mine) for k in FAULT_KINDS},
        }
    return out


def to_csv(rows: Sequence[Row]) -> str:
    cols = [
        "trace",
        "policy",
        "budget",
        "effective_budget",
        "faults_total",
        *FAULT_KINDS,
        "duplicate_signature",
        "hits",
        "thrash",
        "fits",
        "physical_insufficiency",
        "faults_under_insufficiency",
        "assemblies",
        "rejected_writes",
        "missing_demands",
    ]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow([_fault(r, c) if c in FAULT_KINDS else r[c] for c in cols])
    return buf.getvalue()


def table4_markdown(summary: dict[str, Row]) -> str:
    lines = [
        "| policy | mean faults | without pinned-invariant misses | mean thrash | mean faults where the floor fits |"
        " insufficient runs | paper faults | paper thrash |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        paper = PAPER_TABLE4.get(name)
        pf, pt = (f"{paper[0]}", f"{paper[1]}") if paper else ("—", "—")
        fits = "—" if s["mean_faults_where_fits"] is None else f"{s['mean_faults_where_fits']}"
        lines.append(
            f"| {name} | {s['mean_faults']} | {s['mean_faults_without_pinned_miss']} | {s['mean_thrash']} | {fits} | "
            f"{s['runs_physically_insufficient']} | {pf} | {pt} |"
        )
    return "\n".join(lines) + "\n"


def breakdown_markdown(rows: Sequence[Row], budgets: Sequence[int]) -> str:
    """Faults per policy and budget (summed over the workloads): where each baseline's gaps show."""
    names = list(dict.fromkeys(str(r["policy"]) for r in rows))
    head = "| policy | " + " | ".join(str(b) for b in budgets) + " |"
    lines = [head, "|---|" + "---|" * len(budgets)]
    for name in names:
        cells = [
            str(sum(int(str(r["faults_total"])) for r in rows if r["policy"] == name and r["budget"] == b))
            for b in budgets
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


async def ablation(traces: Sequence[Trace], budget: int = 180) -> list[Row]:
    """Paper Table 6: ClawVM minus one mechanism at a time, faults summed over the workloads."""
    base = get_policy("clawvm")
    variants = [("full", base)] + [(s, with_switch(base, s, False)) for s in (*ABLATION_SWITCHES, "typed_recall")]
    out: list[Row] = []
    for label, policy in variants:
        result = await sweep(traces, [policy], [budget])
        rows = result.rows
        boot = sum(_bootstrap(r) for r in rows)
        flush = sum(_fault(r, "flush_miss") for r in rows)
        dup = sum(_fault(r, "duplicate_tool") + _fault(r, "refetch") for r in rows)
        other = sum(int(str(r["faults_total"])) for r in rows) - boot - flush - dup
        out.append(
            {
                "removed": label,
                "bootstrap": boot,
                "flush": flush,
                "dup_refetch": dup,
                "other": other,
                "total": boot + flush + dup + other,
            }
        )
    return out


def table6_markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| remove | bootstrap | flush | dup+refetch | other | total | paper total |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        paper = PAPER_TABLE6.get(str(r["removed"]))
        ptotal = "—" if paper is None else str(sum(paper))
        label = "(full ClawVM)" if r["removed"] == "full" else f"− {r['removed']}"
        lines.append(
            f"| {label} | {r['bootstrap']} | {r['flush']} | {r['dup_refetch']} | {r['other']} | "
            f"{r['total']} | {ptotal} |"
        )
    return "\n".join(lines) + "\n"


THRASH_LABEL = "(faults + dup. alerts) / (hits + 1)"
# one (marker, line style) per policy, so that lines lying on each other still differ in shape
STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("X", "--"), ("P", "-."), ("*", ":"))


def _means(rows: Sequence[Row], name: str, budgets: Sequence[int], key: str) -> list[float]:
    mine = [r for r in rows if r["policy"] == name]
    return [statistics.fmean(float(str(r[key])) for r in mine if r["budget"] == b) for b in budgets]


def _covered(series: dict[str, list[float]]) -> dict[str, int]:
    """Per line, how many lines drawn after it lie on it (within 1% of the panel's span at every budget)."""
    values = [v for ys in series.values() for v in ys]
    tol = 0.01 * ((max(values) - min(values)) or 1.0) if values else 0.0
    names = list(series)

    def same(a: str, b: str) -> bool:
        return all(abs(x - y) <= tol for x, y in zip(series[a], series[b], strict=True))

    return {a: sum(same(a, b) for b in names[i + 1 :]) for i, a in enumerate(names)}


def _pyplot() -> Any:
    """matplotlib.pyplot drawing off screen, or None without the ``plot`` extra."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return plt


def figure(rows: Sequence[Row], budgets: Sequence[int]) -> Any:
    """Faults and thrash per policy across budgets, as a matplotlib Figure (None without matplotlib).

    Several policies often share a line (lru, clawvm and oracle all at 0 faults). Each policy has its own colour,
    marker and line style, markers are hollow, and a line that later lines lie on is drawn wider with bigger
    markers, so the lines on top leave it visible as a border and a ring. A policy whose faults equal an earlier
    one's says so in the legend, which sits below the plots so that it hides no data."""
    plt = _pyplot()
    if plt is None:
        return None
    names = list(dict.fromkeys(str(r["policy"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    panels = (("faults_total", "mean faults per workload", "faults"), ("thrash", "mean thrash", THRASH_LABEL))
    for ax, (key, title, ylabel) in zip(axes, panels, strict=True):
        series = {n: _means(rows, n, budgets, key) for n in names}
        covered = _covered(series)
        for i, name in enumerate(names):
            marker, style = STYLES[i % len(STYLES)]
            same = [other for other in names[:i] if series[other] == series[name]]
            ax.plot(
                list(budgets),
                series[name],
                marker=marker,
                linestyle=style,
                linewidth=1.5 + 1.5 * covered[name],
                markersize=6 + 4 * covered[name],
                markerfacecolor="none",
                markeredgewidth=1.5,
                color=f"C{i % 10}",
                label=name + (f" (faults = {same[0]})" if same and key == "faults_total" else ""),
            )
        ax.set(title=title, xlabel="budget (tokens)", ylabel=ylabel)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    return fig


def plot(rows: Sequence[Row], budgets: Sequence[int], path: Path) -> str | None:
    """Writes ``figure`` as a PNG; returns why it was skipped, or None when written."""
    fig = figure(rows, budgets)
    if fig is None:
        return "matplotlib is not installed (pip install 'clawvm-mcp[plot]'); skipped the PNG"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    _pyplot().close(fig)
    return None


def stress_markdown(rows: Sequence[Row], budgets: Sequence[int]) -> str:
    """Per stress workload and policy: faults per budget, with budgets whose floor did not fit marked '*'."""
    head = "| workload | policy | " + " | ".join(str(b) for b in budgets) + " |"
    lines = [head, "|---|---|" + "---|" * len(budgets)]
    for trace in dict.fromkeys(str(r["trace"]) for r in rows):
        for name in dict.fromkeys(str(r["policy"]) for r in rows):
            cells = []
            for b in budgets:
                match = [r for r in rows if r["trace"] == trace and r["policy"] == name and r["budget"] == b]
                cells.append("" if not match else f"{match[0]['faults_total']}{'' if match[0]['fits'] else '*'}")
            lines.append(f"| {Path(trace).stem} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _is_family(row: Row) -> bool:
    return Path(str(row["trace"])).stem in FAMILIES


def write_reports(
    out: Path, result: SweepResult, budgets: Sequence[int], ablation_rows: Sequence[Row] = ()
) -> list[str]:
    """Writes summary.json, runs.csv, summary.md, timing.json and faults.png; returns notes for the user."""
    out.mkdir(parents=True, exist_ok=True)
    family = [r for r in result.rows if _is_family(r)] or result.rows
    stress = [r for r in result.rows if not _is_family(r)] if family is not result.rows else []
    summary = summarize(family)
    data = {
        "budgets": list(budgets),
        "policies": summary,
        "runs": result.rows,
        "ablation": list(ablation_rows),
        "summary_over": sorted({str(r["trace"]) for r in family}),
    }
    (out / "summary.json").write_text(json.dumps(data, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    (out / "runs.csv").write_text(to_csv(result.rows), encoding="utf-8")
    md = [
        "# Sweep summary\n",
        "## Mean faults and thrash per policy (our Table 4)\n",
        table4_markdown(summary),
        "\n## Faults per budget, summed over the workloads\n",
        breakdown_markdown(family, budgets),
    ]
    if stress:
        md += [
            "\n## Stress workloads: faults per budget ('*': the floor set did not fit)\n",
            stress_markdown(stress, budgets),
        ]
    if ablation_rows:
        md += ["\n## Subtractive ablation at budget 180 (our Table 6)\n", table6_markdown(ablation_rows)]
    (out / "summary.md").write_text("".join(md), encoding="utf-8")
    (out / "timing.json").write_text(json.dumps(result.timing, sort_keys=True, indent=2) + "\n", encoding="utf-8")
    notes = []
    skipped = plot(family, budgets, out / "faults.png")
    if skipped:
        notes.append(skipped)
    return notes


def policies_from(spec: str) -> list[ReplayPolicy]:
    names = list(POLICIES) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    return [get_policy(n) for n in names]
