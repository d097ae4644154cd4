"""Read-only rendering of one session: page table, resident levels, the prompt, lifecycle history, journal, faults.

``inspect_session`` prints a terminal report and can also write a single self-contained HTML file (inline CSS, no
script, no external resource) with the same content. It never settles staged rows or writes anything to the
database: inspecting a crashed session must not change it. The database is opened read-only (SQLite ``mode=ro``) and
copied through SQLite's backup API into a private temporary file, which the store then reads: no write lock is
taken, so a live server holding it does not block the report, and a migration never touches the original.

Page content is untrusted: every control character (C0, C1, DEL, bidi and other format characters) is rendered as a
visible escape (``\\x1b``, ``\\u202e``) in both views, so no escape sequence in a page reaches the terminal.

Resident levels are not stored (a session's residency lives in the serving process), so the report shows what the
next ``context_assemble`` at the session budget, with no demands, would choose: the same selector, the same saved
recency, the default (clawvm) policy.
"""

from __future__ import annotations

import html
import os
import sqlite3
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .engine import SavedState, SessionState
from .engine.assembly import render
from .engine.session import project_namespace, session_namespace
from .faults import FAULT_KINDS, FaultEvent, thrash
from .page_table import PageTable
from .pages import PROMPT_ORDER, Fidelity, Page
from .selector import Selection, SelectorPolicy, select
from .store import open_store
from .store.base import JournalEntry, SessionRecord, Store
from .store.open import database_url

JOURNAL_ROWS = 50
LIFECYCLE_ROWS = 10_000  # journal rows scanned for boundary writes
FAULT_ROWS = 30
CELL_MAX = 48
LAST_CELL_MAX = 120


def visible(text: str, keep: str = "") -> str:
    """``text`` with every control or format character (except those in ``keep``) as a visible escape: page content
    may carry terminal sequences (an OSC 52 clipboard write, a CSI screen clear) that must never reach a terminal."""
    out = []
    for ch in text:
        if ch not in keep and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One lifecycle fact the store keeps: a boundary-mode write's outcome, or a fault, at a turn."""

    turn: int
    kind: str  # "boundary write" or "fault"
    subject: str  # page id or tool signature
    outcome: str  # journal status or fault kind
    detail: str


LIFECYCLE_UNKNOWN = (
    "which boundary (compaction, reset, session end) happened at which turn is not stored: the store keeps their "
    "count, each boundary write's outcome (turn = when it was staged) and the faults"
)


def _lifecycle(journal: list[JournalEntry], faults: list[FaultEvent]) -> list[LifecycleEvent]:
    events = [
        LifecycleEvent(
            e.turn,
            "boundary write",
            e.page_id,
            e.status,
            "; ".join(f"{r['code']}: {r['detail']}" for r in e.reasons)
            or ("staged, waits for the next boundary" if e.status in ("staged", "validated") else ""),
        )
        for e in journal
        if e.commit_mode == "boundary"
    ]
    events += [LifecycleEvent(f.turn, "fault", f.subject, f.kind, f.detail) for f in faults]
    return sorted(events, key=lambda ev: ev.turn)  # stable: journal order, then faults, within a turn


@dataclass(frozen=True, slots=True)
class SessionReport:
    record: SessionRecord
    pages: list[Page]  # live pages, prompt order (type, then page_id)
    staged: dict[str, int]  # page_id -> staged journal rows not yet committed
    selection: Selection
    journal: list[JournalEntry]  # the last JOURNAL_ROWS rows, oldest first
    journal_counts: dict[str, int]
    faults: list[FaultEvent]
    tool_calls: int
    hits: int
    duplicate_signature: int
    prompt: str  # the prompt text the next context_assemble would build from ``selection``
    lifecycle: list[LifecycleEvent]  # boundary-write outcomes and faults, by turn

    @property
    def boundaries(self) -> int:
        return self.record.counters.boundaries

    @property
    def fault_counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        for event in self.faults:
            counts[event.kind] = counts.get(event.kind, 0) + 1
        return counts

    @property
    def thrash(self) -> float:
        return thrash(len(self.faults), self.duplicate_signature, self.hits)

    def level(self, page_id: str) -> Fidelity:
        return self.selection.level_of(page_id)

    def reason(self, page_id: str) -> str:
        return next((c.reason for c in self.selection.choices if c.page_id == page_id), "dropped")


def snapshot(db: Path, into: Path) -> None:
    """Copy ``db`` into ``into`` through a read-only connection (a consistent snapshot, no lock, no write)."""
    uri = f"{db.resolve().as_uri()}?mode=ro"
    os.close(os.open(into, os.O_CREAT | os.O_WRONLY, 0o600))  # private like the original, before SQLite creates it
    try:
        source = sqlite3.connect(uri, uri=True)
        try:
            target = sqlite3.connect(into)
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise LookupError(f"cannot read the database {db}: {exc}") from exc


@asynccontextmanager
async def read_only_store(db: Path | str) -> AsyncIterator[tuple[Store, Path | None]]:
    """The store ``db`` names, opened for reading without writing to ``db``: a SQLite file through a snapshot
    copy (also yielded, for a reader's own queries), a server database in place (the copy is then None)."""
    url = database_url(db)
    if url is None and not Path(db).is_file():
        raise LookupError(f"no database at {db}")
    with tempfile.TemporaryDirectory(prefix="clawvm-read-") as tmp:
        copy = Path(tmp) / "snapshot.db"
        if url is None:
            snapshot(Path(db), copy)
        store = await open_store(copy if url is None else url)
        try:
            yield store, copy if url is None else None
        finally:
            await store.close()


async def load_report(db: Path | str, session_id: str) -> SessionReport:
    async with read_only_store(db) as (store, _):
        record = await store.get_session(session_id)
        if record is None:
            raise LookupError(f"no session {session_id!r} in {db}")
        loaded = await store.load_pages([session_namespace(session_id), project_namespace(record.project_id)])
        pending = await store.pending(session_id)
        journal = await store.journal(session_id, LIFECYCLE_ROWS)
        counts = await store.journal_counts(session_id)
        faults = await store.faults(session_id)
        calls = await store.tool_calls(session_id)
    pages = sorted((p for _, p in loaded if not p.deleted), key=lambda p: (PROMPT_ORDER[p.type], p.page_id))
    staged: dict[str, int] = {}
    for entry in pending:
        staged[entry.page_id] = staged.get(entry.page_id, 0) + 1
    saved = SavedState.of(record)
    table = PageTable(pages)
    selection = select(table, {}, record.budget, SelectorPolicy(), saved.recency)
    prompt = render(SessionState(record=record, pages=table), selection).prompt
    return SessionReport(
        record=record,
        pages=pages,
        staged=staged,
        selection=selection,
        journal=journal[-JOURNAL_ROWS:],
        journal_counts=counts,
        faults=faults,
        tool_calls=len(calls),
        hits=saved.hits,
        duplicate_signature=saved.duplicate_signature,
        prompt=prompt,
        lifecycle=_lifecycle(journal, faults),
    )


# ---------------------------------------------------------------------------------------------- rows


def _clip(text: str, limit: int = CELL_MAX) -> str:
    text = visible(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _page_rows(report: SessionReport) -> list[list[str]]:
    rows = []
    for p in report.pages:
        level = report.level(p.page_id)
        rows.append(
            [
                p.page_id,
                p.type,
                p.scope,
                p.pin,
                p.min_fidelity.label,
                f"v{p.version}",
                level.label if level > Fidelity.NONE else "-",
                str(p.tokens_at(level)),
                str(p.tokens_at(Fidelity.FULL)),
                str(report.staged.get(p.page_id, "")),
                f"{p.provenance.source} {p.provenance.ref}",
            ]
        )
    return rows


PAGE_HEADERS = ["page", "type", "scope", "pin", "floor", "ver", "resident", "tokens", "full", "staged", "provenance"]
HTML_PAGE_HEADERS = [*PAGE_HEADERS[:7], "why", *PAGE_HEADERS[7:]]
JOURNAL_HEADERS = ["txn", "turn", "page", "op", "status", "commit", "ver", "reasons"]
FAULT_HEADERS = ["turn", "fault", "page / tool", "detail"]
LIFECYCLE_HEADERS = ["turn", "event", "page / tool", "outcome", "detail"]
NUMERIC = {"ver", "tokens", "full", "staged", "txn", "turn", "count"}


def _journal_rows(report: SessionReport) -> list[list[str]]:
    return [
        [
            str(e.txn_id),
            str(e.turn),
            e.page_id,
            e.op,
            e.status,
            e.commit_mode,
            "" if e.version is None else f"v{e.version}",
            ", ".join(f"{r['code']}: {r['detail']}" for r in e.reasons),
        ]
        for e in report.journal
    ]


def _lifecycle_rows(report: SessionReport) -> list[list[str]]:
    return [[str(ev.turn), ev.kind, ev.subject, ev.outcome, ev.detail] for ev in report.lifecycle]


def _lifecycle_head(report: SessionReport) -> str:
    n = report.boundaries
    state = "ended" if report.record.ended else "open"
    return f"{n} boundary{'' if n == 1 else ' events'} so far, state {state} at turn {report.record.turn}"


def _fault_rows(report: SessionReport) -> list[list[str]]:
    return [[str(f.turn), f.kind, f.subject, f.detail] for f in report.faults[-FAULT_ROWS:]]


def _summary(report: SessionReport) -> list[tuple[str, str]]:
    r = report.record
    sel = report.selection
    return [
        ("session", r.session_id),
        ("project", r.project_id),
        ("principal", r.principal),
        ("turn", str(r.turn)),
        ("state", "ended" if r.ended else "open"),
        ("budget", str(r.budget)),
        ("resident", f"{sel.tokens_used}/{sel.budget} tokens"),
        ("pages", f"{len(report.pages)} live, {sum(report.staged.values())} staged writes"),
        ("tool calls", str(report.tool_calls)),
        ("faults", str(len(report.faults))),
        ("hits", str(report.hits)),
        ("duplicate_signature", str(report.duplicate_signature)),
        ("thrash", f"{report.thrash:.3f}"),
    ]


# ---------------------------------------------------------------------------------------------- terminal


def table(headers: list[str], rows: list[list[str]], numeric: Collection[str] = NUMERIC) -> str:
    cells = [[_clip(c, CELL_MAX if i < len(row) - 1 else LAST_CELL_MAX) for i, c in enumerate(row)] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def fmt(row: list[str]) -> str:
        out = [c.rjust(w) if h in numeric else c.ljust(w) for c, w, h in zip(row, widths, headers, strict=True)]
        return "│ " + " │ ".join(out) + " │"

    rule = "─┼─".join("─" * w for w in widths)
    lines = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐", fmt(headers), "├─" + rule + "─┤"]
    lines += [fmt(r) for r in cells] or ["│ " + "(none)".ljust(sum(widths) + 3 * (len(widths) - 1)) + " │"]
    lines.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    return "\n".join(lines)


def render_text(report: SessionReport) -> str:
    summary = _summary(report)
    sel = report.selection
    parts = ["clawvm-mcp session report  " + "  ".join(visible(f"{k} {v}") for k, v in summary[:6]), ""]
    parts.append(
        f"PAGES  resident = what the next context_assemble at budget {sel.budget} would choose: "
        f"{sel.tokens_used}/{sel.budget} tokens"
    )
    if sel.physical_insufficiency:
        parts.append(
            f"!! physical insufficiency: {sel.shortfall_tokens} tokens short for {', '.join(sel.unmet_required)}"
        )
    parts += [table(PAGE_HEADERS, _page_rows(report)), ""]
    parts += [
        f"PROMPT  the text the next context_assemble at budget {sel.budget} would build "
        f"({len(report.prompt)} characters; control characters shown escaped)",
        visible(report.prompt, keep="\n\t") or "(empty)",
        "",
        f"LIFECYCLE  {_lifecycle_head(report).replace(', state', '  state')}",
        f"({LIFECYCLE_UNKNOWN})",
        table(LIFECYCLE_HEADERS, _lifecycle_rows(report)),
        "",
    ]
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.journal_counts.items())) or "empty"
    parts += [
        f"JOURNAL  {counts}  (last {len(report.journal)} rows)",
        table(JOURNAL_HEADERS, _journal_rows(report)),
        "",
    ]
    parts.append(
        f"FAULTS  total {len(report.faults)}  hits {report.hits}  duplicate_signature "
        f"{report.duplicate_signature}  thrash {report.thrash:.3f}  tool calls {report.tool_calls}"
    )
    parts.append(table(["fault", "count"], [[k, str(v)] for k, v in report.fault_counts.items()]))
    if report.faults:
        parts += [
            f"last {min(len(report.faults), FAULT_ROWS)} fault events",
            table(FAULT_HEADERS, _fault_rows(report)),
        ]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
:root{--fg:#1d232b;--muted:#5b6673;--line:#d8dee6;--bg:#f7f9fb;--accent:#2d6cdf}
*{box-sizing:border-box}body{margin:2rem auto;max-width:78rem;padding:0 1rem;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}h1{font-size:1.4rem;margin:0 0 .2rem}
h2{font-size:1.05rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
.muted{color:var(--muted)}dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.5rem;
margin:1rem 0}dl div{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.45rem .6rem}
dt{font-size:.75rem;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}dd{margin:0;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid var(--line);vertical-align:top}th{background:var(--bg);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}td code{font-size:12px}
.lv{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:12px;font-weight:600}
.lv-full{background:#d9f2e1;color:#145c2c}.lv-compressed{background:#e4f0d0;color:#3d5a0f}
.lv-structured{background:#fdf0c9;color:#6b4e00}.lv-pointer{background:#e6e9ee;color:#39424d}
.lv-none{background:#fde2e1;color:#8a1c17}.st-rejected,.st-lost{color:#a3211b;font-weight:600}
.st-staged,.st-validated{color:#8a5a00;font-weight:600}.warn{background:#fde2e1;border:1px solid #f2b8b5;
border-radius:6px;padding:.5rem .75rem;color:#8a1c17}.bar{display:flex;height:14px;border-radius:4px;
overflow:hidden;background:var(--bg);border:1px solid var(--line);margin:.4rem 0 1rem}.bar span{display:block}
.t-bootstrap{background:#2d6cdf}.t-constraint{background:#7b4bd6}.t-plan{background:#1f9d74}
.t-preference{background:#d08a16}.t-evidence{background:#c2417a}.t-conversation{background:#7a8694}
.legend span{margin-right:1rem;white-space:nowrap}.legend i{display:inline-block;width:.8rem;height:.8rem;
border-radius:2px;margin-right:.3rem;vertical-align:-1px}
pre.prompt{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.6rem .75rem;font-size:12px;
white-space:pre-wrap;word-break:break-word;max-height:40rem;overflow:auto}
"""


def _e(text: object) -> str:
    return html.escape(visible(str(text)), quote=True)


def _html_table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f'<th class="num">{_e(h)}</th>' if h in NUMERIC else f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="muted">(none)</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: object, numeric: bool = False) -> str:
    return f'<td class="num">{_e(value)}</td>' if numeric else f"<td>{_e(value)}</td>"


def render_html(report: SessionReport) -> str:
    sel = report.selection
    r = report.record
    cards = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in _summary(report))
    used: dict[str, int] = {}
    for p in report.pages:
        used[p.type] = used.get(p.type, 0) + p.tokens_at(report.level(p.page_id))
    total = max(sel.budget, sel.tokens_used, 1)
    bar = "".join(
        f'<span class="t-{_e(t)}" style="width:{100 * n / total:.3f}%" title="{_e(t)}: {n} tokens"></span>'
        for t, n in used.items()
        if n
    )
    legend = "".join(f'<span><i class="t-{_e(t)}"></i>{_e(t)} {n}</span>' for t, n in used.items())
    warn = ""
    if sel.physical_insufficiency:
        warn = (
            f'<p class="warn">Physical insufficiency: {sel.shortfall_tokens} tokens short for '
            f"{_e(', '.join(sel.unmet_required))}.</p>"
        )
    page_rows = []
    for p in report.pages:
        level = report.level(p.page_id)
        page_rows.append(
            "<tr>"
            + f"<td><code>{_e(p.page_id)}</code><br><span class=muted>{_e(p.title)}</span></td>"
            + "".join(_td(v) for v in (p.type, p.scope, p.pin, p.min_fidelity.label))
            + _td(f"v{p.version}", True)
            + f'<td><span class="lv lv-{_e(level.label)}">{_e(level.label)}</span></td>'
            + _td(report.reason(p.page_id))
            + _td(p.tokens_at(level), True)
            + _td(p.tokens_at(Fidelity.FULL), True)
            + _td(report.staged.get(p.page_id, ""), True)
            + f"<td>{_e(p.provenance.source)} <code>{_e(p.provenance.ref)}</code></td></tr>"
        )
    journal_rows = [
        "<tr>"
        + _td(e.txn_id, True)
        + _td(e.turn, True)
        + f"<td><code>{_e(e.page_id)}</code></td>"
        + _td(e.op)
        + f'<td class="st-{_e(e.status)}">{_e(e.status)}</td>'
        + _td(e.commit_mode)
        + _td("" if e.version is None else f"v{e.version}", True)
        + _td("; ".join(f"{x['code']}: {x['detail']}" for x in e.reasons))
        + "</tr>"
        for e in report.journal
    ]
    fault_count_rows = ["<tr>" + _td(k) + _td(v, True) + "</tr>" for k, v in report.fault_counts.items()]
    fault_rows = ["<tr>" + "".join(_td(c, i == 0) for i, c in enumerate(row)) + "</tr>" for row in _fault_rows(report)]
    journal_counts = ", ".join(f"{k} {v}" for k, v in sorted(report.journal_counts.items())) or "empty"
    lifecycle_rows = [
        "<tr>" + "".join(_td(c, i == 0) for i, c in enumerate(row)) + "</tr>" for row in _lifecycle_rows(report)
    ]
    prompt = html.escape(visible(report.prompt, keep="\n\t"), quote=True) or "(empty)"
    title = f"clawvm-mcp session {r.session_id}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="generator" content="clawvm-mcp {_e(__version__)}"><title>{_e(title)}</title><style>{_CSS}</style></head>
<body><h1>{_e(title)}</h1>
<p class="muted">project {_e(r.project_id)} · principal {_e(r.principal)} · turn {r.turn} · {
        "ended" if r.ended else "open"
    }</p>
<dl>{cards}</dl>
<h2>Pages</h2>
<p class="muted">Resident level = what the next <code>context_assemble</code> at budget {sel.budget} (no demands)
would choose: {sel.tokens_used} of {sel.budget} tokens.</p>{warn}
<div class="bar">{bar}</div><p class="legend muted">{legend}</p>
{_html_table(HTML_PAGE_HEADERS, page_rows)}
<h2>Prompt</h2><p class="muted">The text the next <code>context_assemble</code> at budget {sel.budget} would build
({len(report.prompt)} characters; control characters shown escaped).</p>
<pre class="prompt">{prompt}</pre>
<h2>Lifecycle</h2><p class="muted">{_e(_lifecycle_head(report))}. {_e(LIFECYCLE_UNKNOWN)}.</p>
{_html_table(LIFECYCLE_HEADERS, lifecycle_rows)}
<h2>Journal</h2><p class="muted">{_e(journal_counts)} (last {len(report.journal)} rows)</p>
{_html_table(JOURNAL_HEADERS, journal_rows)}
<h2>Faults</h2><p class="muted">total {len(report.faults)} · hits {report.hits} · duplicate_signature
{report.duplicate_signature} · thrash {report.thrash:.3f}</p>
{_html_table(["fault", "count"], fault_count_rows)}
<h2>Fault events</h2>{_html_table(FAULT_HEADERS, fault_rows)}
</body></html>
"""


async def inspect_session(db: Path | str, session_id: str, html_out: Path | None = None) -> str:
    """The terminal report; with ``html_out``, also the self-contained HTML report written there."""
    report = await load_report(db, session_id)
    if html_out is not None:
        html_out.write_text(render_html(report), encoding="utf-8")
    return render_text(report)
