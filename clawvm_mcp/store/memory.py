"""In-memory ``Store`` for replays and sweeps: same semantics as SQLiteStore, none of its per-call thread hops.

Pages are kept as canonical JSON and decoded on every read, so the engine never shares a mutable object with
the store (as with SQLite, a read returns a fresh page).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace

from ..canonical import dumps
from ..faults import FaultEvent
from ..pages import Fidelity, Page
from . import search
from .base import (
    Committed,
    Conflict,
    JournalEntry,
    JournalStatus,
    PageCommit,
    Rejection,
    SearchHit,
    SessionCounters,
    SessionRecord,
    ToolCall,
    page_from_json,
    page_to_json,
)


class MemoryStore:
    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._seq = 0  # the change sequence
        self._page_seq: dict[tuple[str, str], int] = {}
        self._pages: dict[tuple[str, str], tuple[Page, str]] = {}  # (ns, id) -> (page for version checks, body)
        self._journal: dict[int, JournalEntry] = {}
        self._calls: dict[tuple[str, str], ToolCall] = {}
        self._faults: dict[str, list[FaultEvent]] = {}
        self._open_rows: dict[str, dict[int, None]] = {}  # session -> txn ids of its staged rows

    async def close(self) -> None:
        return None

    async def get_session(self, session_id: str) -> SessionRecord | None:
        record = self._sessions.get(session_id)
        return None if record is None else _copy(record)

    async def claim_session(
        self, session_id: str, principal: str, project_id: str, budget: int | None
    ) -> tuple[SessionRecord, bool] | None:
        record = self._sessions.get(session_id)
        if record is None:
            self._sessions[session_id] = SessionRecord(session_id, principal, project_id, budget or 4000)
            self._tick(session_id)
            return _copy(self._sessions[session_id]), True
        if record.principal != principal or project_id not in ("default", record.project_id):
            return None
        record.ended = False
        record.budget = record.budget if budget is None else budget
        self._tick(session_id)
        return _copy(record), False

    async def save_session(self, record: SessionRecord, added: SessionCounters) -> SessionRecord:
        stored = self._sessions[record.session_id]
        stored.budget, stored.ended = record.budget, record.ended
        stored.turn = max(stored.turn, record.turn)
        stored.state = json.loads(dumps(record.state))
        stored.counters = stored.counters.plus(added)
        self._tick(record.session_id)
        return _copy(stored)

    async def data_version(self) -> int:
        return 0  # one process, one connection: nothing else can change this store

    async def change_seq(self) -> int:
        return self._seq

    async def pages_since(self, namespaces: list[str], seq: int) -> list[tuple[str, Page]]:
        changed = [(self._page_seq[key], key) for key in self._pages if key[0] in namespaces]
        return [
            (ns, page_from_json(json.loads(self._pages[(ns, pid)][1]))) for at, (ns, pid) in sorted(changed) if at > seq
        ]

    def _tick(self, session_id: str | None = None) -> int:
        """Move the change sequence; a session's own changes move its record's ``seq`` too."""
        self._seq += 1
        record = self._sessions.get(session_id) if session_id is not None else None
        if record is not None:
            record.seq = self._seq
        return self._seq

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
        self._set(replace(entry, txn_id=txn_id, request=json.loads(dumps(entry.request))))
        return txn_id

    async def stage(self, entry: JournalEntry) -> int:
        return self._insert(entry)

    async def try_commit(self, write: PageCommit) -> Committed | None:
        committed, conflicts = await self.commit([write])
        return None if conflicts else committed[0]

    def _version(self, namespace: str, page_id: str) -> int:
        found = self._pages.get((namespace, page_id))
        return found[0].version if found is not None else 0

    def _open(self, txn_ids: tuple[int, ...]) -> bool:
        return all(self._journal[t].status in ("staged", "validated") for t in txn_ids)

    async def commit(
        self,
        writes: list[PageCommit],
        rejections: Sequence[Rejection] = (),
    ) -> tuple[list[Committed], list[Conflict]]:
        conflicts: list[Conflict] = []
        committed: list[Committed] = []
        for r in rejections:
            current = self._version(r.namespace, r.page_id)
            if current != r.expected_version or not self._open(r.txn_ids):
                conflicts.append(Conflict(r.page_id, current))
                continue
            self._mark(list(r.txn_ids), "rejected", list(r.reasons))
        for w in writes:
            key = (w.namespace, w.page.page_id)
            current = self._version(*key)
            if current != w.expected_version or not self._open(w.txn_ids):
                conflicts.append(Conflict(w.page.page_id, current))
                continue
            if w.page.version != w.expected_version + 1:
                raise ValueError(f"page {w.page.page_id!r} v{w.page.version} cannot follow v{w.expected_version}")
            body = dumps(page_to_json(w.page))
            self._pages[key] = (page_from_json(json.loads(body)), body)
            self._page_seq[key] = self._tick()
            txns = list(w.txn_ids)
            entry_txn = None
            if w.new_entry is not None:
                entry_txn = self._insert(replace(w.new_entry, status="committed", version=w.page.version))
                txns.append(entry_txn)
            for txn in txns:
                self._set(replace(self._journal[txn], status="committed", version=w.page.version))
            committed.append(Committed(w.page.page_id, w.page.version, tuple(txns), entry_txn))
        return committed, conflicts

    def _mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        for txn in txn_ids:
            row = self._journal[txn]
            if row.status in ("staged", "validated"):  # a settled row is history: never rewritten
                self._set(replace(row, status=status, reasons=[dict(r) for r in reasons]))

    def _set(self, row: JournalEntry) -> None:
        """Store a journal row and keep the per-session index of open (staged) rows in step."""
        self._journal[row.txn_id] = row
        open_rows = self._open_rows.setdefault(row.session_id, {})
        if row.status in ("staged", "validated"):
            open_rows[row.txn_id] = None
        else:
            open_rows.pop(row.txn_id, None)
        self._tick(row.session_id)

    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        self._mark(txn_ids, status, reasons)

    async def pending(self, session_id: str) -> list[JournalEntry]:
        return [replace(self._journal[t]) for t in sorted(self._open_rows.get(session_id, {}))]

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
        self._tick(call.session_id)

    async def tool_calls(self, session_id: str) -> list[ToolCall]:
        calls = [c for (sid, _), c in self._calls.items() if sid == session_id]
        return sorted(calls, key=lambda c: (c.turn, c.call_id))

    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None:
        self._faults.setdefault(session_id, []).extend(events)
        if events:
            self._tick(session_id)

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
        hits = []
        for score, page_id, ns in scored[:limit]:
            page = self._pages[(ns, page_id)][0]
            held = sum(any(t in c for c in docs[(ns, page_id)]) for t in terms)
            hits.append(SearchHit(ns, page_id, page.type, page.title, page.text_at(Fidelity.POINTER), -score, held))
        return hits

    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        rows = sorted(self._sessions.items())
        return [sid for sid, r in rows if sid.startswith(prefix) and r.principal == principal and not r.ended][:limit]


def _copy(record: SessionRecord) -> SessionRecord:
    """A record as a fresh object, as SQLite would hand back: the engine never shares one with the store."""
    return replace(record, state=json.loads(dumps(record.state)))
