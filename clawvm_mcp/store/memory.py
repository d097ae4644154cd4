"""In-memory ``Store`` for replays and sweeps: same semantics as SQLiteStore, none of its per-call thread hops.

Pages are kept as canonical JSON and decoded on every read, so the engine never shares a mutable object with
the store (as with SQLite, a read returns a fresh page).
"""

from __future__ import annotations

import json
from dataclasses import replace

from ..canonical import dumps
from ..faults import FaultEvent
from ..pages import Page
from . import search
from .base import (
    Committed,
    Conflict,
    JournalEntry,
    JournalStatus,
    PageCommit,
    SearchHit,
    SessionRecord,
    ToolCall,
    conflict_reasons,
    page_from_json,
    page_to_json,
)


class MemoryStore:
    def __init__(self) -> None:
        self._sessions: dict[str, str] = {}
        self._pages: dict[tuple[str, str], tuple[Page, str]] = {}  # (ns, id) -> (page for version checks, body)
        self._journal: dict[int, JournalEntry] = {}
        self._calls: dict[tuple[str, str], ToolCall] = {}
        self._faults: dict[str, list[FaultEvent]] = {}

    async def close(self) -> None:
        return None

    async def get_session(self, session_id: str) -> SessionRecord | None:
        raw = self._sessions.get(session_id)
        if raw is None:
            return None
        data = json.loads(raw)
        return SessionRecord(
            data["session_id"],
            data["principal"],
            data["project_id"],
            data["budget"],
            data["turn"],
            data["ended"],
            data["state"],
        )

    async def put_session(self, record: SessionRecord) -> None:
        self._sessions[record.session_id] = dumps(
            {
                "session_id": record.session_id,
                "principal": record.principal,
                "project_id": record.project_id,
                "budget": record.budget,
                "turn": record.turn,
                "ended": record.ended,
                "state": record.state,
            }
        )

    async def load_pages(self, namespaces: list[str]) -> list[tuple[str, Page]]:
        return [
            (ns, page_from_json(json.loads(body)))
            for (ns, _), (page, body) in sorted(self._pages.items())
            if ns in namespaces and not page.deleted
        ]

    async def get_page(self, namespace: str, page_id: str) -> Page | None:
        found = self._pages.get((namespace, page_id))
        return None if found is None else page_from_json(json.loads(found[1]))

    async def count_pages(self, namespace: str) -> int:
        return sum(1 for (ns, _), (p, _) in self._pages.items() if ns == namespace and not p.deleted)

    def _insert(self, entry: JournalEntry) -> int:
        txn_id = len(self._journal) + 1
        self._journal[txn_id] = replace(entry, txn_id=txn_id, request=json.loads(dumps(entry.request)))
        return txn_id

    async def stage(self, entry: JournalEntry) -> int:
        return self._insert(entry)

    async def try_commit(self, write: PageCommit) -> Committed | None:
        key = (write.namespace, write.page.page_id)
        if (self._pages[key][0].version if key in self._pages else 0) != write.expected_version:
            return None
        committed, _ = await self.commit([write])
        return committed[0]

    async def commit(self, writes: list[PageCommit]) -> tuple[list[Committed], list[Conflict]]:
        conflicts: list[Conflict] = []
        committed: list[Committed] = []
        for w in writes:
            key = (w.namespace, w.page.page_id)
            current = self._pages[key][0].version if key in self._pages else 0
            txns = list(w.txn_ids)
            if current != w.expected_version:
                reasons = conflict_reasons(w.page.page_id, w.expected_version, current)
                entry_txn = None
                if w.new_entry is not None:
                    entry_txn = self._insert(replace(w.new_entry, status="rejected", reasons=reasons))
                conflicts.append(Conflict(w.page.page_id, current, entry_txn))
                self._mark(txns, "rejected", reasons)
                continue
            if w.page.version != w.expected_version + 1:
                raise ValueError(f"page {w.page.page_id!r} v{w.page.version} cannot follow v{w.expected_version}")
            body = dumps(page_to_json(w.page))
            self._pages[key] = (page_from_json(json.loads(body)), body)
            entry_txn = None
            if w.new_entry is not None:
                entry_txn = self._insert(replace(w.new_entry, status="committed", version=w.page.version))
                txns.append(entry_txn)
            for txn in txns:
                row = self._journal[txn]
                if row.status in ("staged", "validated", "committed"):
                    self._journal[txn] = replace(row, status="committed", version=w.page.version)
            committed.append(Committed(w.page.page_id, w.page.version, tuple(txns), entry_txn))
        return committed, conflicts

    def _mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        for txn in txn_ids:
            row = self._journal[txn]
            if row.status in ("staged", "validated"):  # a settled row is history: never rewritten
                self._journal[txn] = replace(row, status=status, reasons=[dict(r) for r in reasons])

    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        self._mark(txn_ids, status, reasons)

    async def pending(self, session_id: str) -> list[JournalEntry]:
        return [
            replace(e)
            for _, e in sorted(self._journal.items())
            if e.session_id == session_id and e.status in ("staged", "validated")
        ]

    async def journal(self, session_id: str, limit: int) -> list[JournalEntry]:
        rows = [replace(e) for _, e in sorted(self._journal.items()) if e.session_id == session_id]
        return rows[-limit:] if limit > 0 else []

    async def journal_counts(self, session_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._journal.values():
            if e.session_id == session_id:
                counts[e.status] = counts.get(e.status, 0) + 1
        return counts

    async def add_tool_call(self, call: ToolCall) -> None:
        key = (call.session_id, call.call_id)
        earlier = self._calls.get(key)
        self._calls[key] = call if earlier is None else replace(earlier, has_result=call.has_result)

    async def tool_calls(self, session_id: str) -> list[ToolCall]:
        calls = [c for (sid, _), c in self._calls.items() if sid == session_id]
        return sorted(calls, key=lambda c: (c.turn, c.call_id))

    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None:
        self._faults.setdefault(session_id, []).extend(events)

    async def faults(self, session_id: str) -> list[FaultEvent]:
        return list(self._faults.get(session_id, []))

    async def search(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """The SQLite store's ranking recomputed in Python (same tokens, same BM25, same ties), over every page."""
        rows = [
            (ns, page, search.counts(search.columns(page.page_id, page.title, page.fields, page.content)))
            for (ns, _), (page, _) in self._pages.items()
            if not page.deleted
        ]
        if not rows or not terms:
            return []
        avg_len = sum(1 + sum(c.total() for c in doc) for _, _, doc in rows) / len(rows)
        idf = {t: search.idf(len(rows), sum(any(t in c for c in doc) for _, _, doc in rows)) for t in terms}
        scored = [
            (-search.bm25(doc, terms, idf, avg_len), page.page_id, ns)
            for ns, page, doc in rows
            if ns in namespaces
            and (page_type is None or page.type == page_type)
            and any(t in c for t in terms for c in doc)
        ]
        scored.sort()
        docs = {(ns, page.page_id): doc for ns, page, doc in rows}
        return [
            SearchHit(
                ns,
                page_from_json(json.loads(self._pages[(ns, page_id)][1])),
                -score,
                sum(any(t in c for c in docs[(ns, page_id)]) for t in terms),
            )
            for score, page_id, ns in scored[:limit]
        ]

    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        rows = ((sid, json.loads(raw)) for sid, raw in sorted(self._sessions.items()) if sid.startswith(prefix))
        return [sid for sid, data in rows if data["principal"] == principal and not data["ended"]][:limit]
