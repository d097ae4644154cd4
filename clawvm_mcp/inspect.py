"""Read-only rendering of one session: page table, resident levels, journal and fault counts."""

from __future__ import annotations

import html
from pathlib import Path

from .faults import FAULT_KINDS
from .pages import Fidelity
from .store import SQLiteStore


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


async def inspect_session(db: Path, session_id: str, html_out: Path | None = None) -> str:
    """Never settles or writes anything: inspecting a crashed session must not change it."""
    store = await SQLiteStore.open(db)
    try:
        record = await store.get_session(session_id)
        if record is None:
            raise LookupError(f"no session {session_id!r} in {db}")
        pages = await store.load_pages([f"s:{session_id}", f"p:{record.project_id}"])
        journal = await store.journal(session_id, 50)
        faults = await store.faults(session_id)
        counts = await store.journal_counts(session_id)
    finally:
        await store.close()
    page_rows = [
        [p.page_id, p.type, p.scope, p.pin, p.min_fidelity.label, f"v{p.version}", str(p.tokens_at(Fidelity.FULL))]
        for _, p in sorted(pages, key=lambda x: x[1].page_id)
    ]
    journal_rows = [
        [str(e.txn_id), e.page_id, e.op, e.status, e.commit_mode, "" if e.version is None else f"v{e.version}",
         ",".join(r["code"] for r in e.reasons)]
        for e in journal
    ]
    fault_counts = {k: 0 for k in FAULT_KINDS}
    for f in faults:
        fault_counts[f.kind] += 1
    parts = [
        f"session {session_id}  project {record.project_id}  principal {record.principal}  turn {record.turn}"
        f"  budget {record.budget}{'  (ended)' if record.ended else ''}",
        "",
        _table(["page", "type", "scope", "pin", "floor", "version", "tokens@full"], page_rows),
        "",
        "journal: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
        _table(["txn", "page", "op", "status", "commit", "version", "reasons"], journal_rows),
        "",
        _table(["fault", "count"], [[k, str(v)] for k, v in fault_counts.items()]),
    ]
    text = "\n".join(parts)
    if html_out is not None:
        html_out.write_text(
            "<!doctype html><meta charset=utf-8><title>clawvm-mcp session "
            f"{html.escape(session_id)}</title><style>body{{font-family:monospace}}</style><pre>"
            f"{html.escape(text)}</pre>",
            encoding="utf-8",
        )
    return text
