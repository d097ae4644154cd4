"""ClawVMEngine: the lifecycle operations over one store, for every session of one principal.

The MCP server and the replay driver both drive this class; neither holds policy of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Literal

from ..faults import FaultEvent, FaultKind
from ..journal import Reason, ValidationContext, WriteRequest, validate
from ..pages import (
    PAGE_ID_RE,
    PROMPT_ORDER,
    TYPE_POLICIES,
    Fidelity,
    Fields,
    Page,
    Pin,
    Provenance,
)
from ..selector import Selection, decay_recency, select
from ..store.base import JournalEntry, PageCommit, SessionRecord, Store, ToolCall, dumps
from ..tokens import TokenCounter
from .merge import PageMerger, floor_tokens
from .policy import EngineConfig
from .results import (
    AssembledPage,
    AssembleResult,
    FaultOut,
    JournalResult,
    JournalRow,
    LifecycleResult,
    ListResult,
    PageSummary,
    PageView,
    ProvenanceModel,
    ReadResult,
    ReasonOut,
    RecallHit,
    RecallResult,
    SessionStartResult,
    StatsResult,
    ToolExecuteResult,
    WriteResult,
)
from .session import PROJECT_ID_RE, SESSION_ID_RE, EngineError, PageInput, SessionState, require_unicode

log = logging.getLogger(__name__)


Event = Literal["turn_end", "compaction", "reset", "flush", "session_end"]
EVENTS: tuple[Event, ...] = ("turn_end", "compaction", "reset", "flush", "session_end")
Backend = Literal["ok", "denied", "error"]
MAX_TOOL_NAME = 128
MAX_QUERY_TERMS = 16


def canonical_signature(tool: str, args: Mapping[str, object]) -> str:
    """Tool name + canonical JSON of its arguments: key order and whitespace never make two calls differ."""
    return f"{tool}\x00{dumps(args)}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (slug or "tool")[:40]


class ClawVMEngine:
    def __init__(self, store: Store, counter: TokenCounter | None = None, config: EngineConfig | None = None) -> None:
        self.store = store
        self.counter = counter or TokenCounter()
        self.config = config or EngineConfig()
        self.policy = self.config.policy
        self._sessions: dict[str, SessionState] = {}
        self._open_lock = asyncio.Lock()

    # ------------------------------------------------------------------ sessions

    async def session_start(
        self,
        session_id: str,
        project_id: str = "default",
        budget: int | None = None,
        bootstrap: Sequence[PageInput] = (),
    ) -> SessionStartResult:
        if not SESSION_ID_RE.match(session_id):
            raise EngineError(
                f"Invalid session_id {session_id!r}: use 1-128 of A-Z a-z 0-9 . _ : - (letter/digit first)"
            )
        if not PROJECT_ID_RE.match(project_id):
            raise EngineError(
                f"Invalid project_id {project_id!r}: use 1-128 of A-Z a-z 0-9 . _ : - (letter/digit first)"
            )
        if budget is not None:
            self._check_budget(budget)
        for page in bootstrap:
            require_unicode(f"bootstrap page {page.page_id!r}", (page.content, page.fields))
        async with self._open_lock:
            record = await self.store.get_session(session_id)
            resumed = record is not None
            if record is not None:
                if record.principal != self.config.principal:
                    raise EngineError(f"Session id {session_id!r} belongs to another principal; choose another id")
                if project_id not in ("default", record.project_id):
                    raise EngineError(
                        f"Session {session_id!r} belongs to project {record.project_id!r}, not {project_id!r}"
                    )
                record.ended = False
                if budget is not None:
                    record.budget = budget
            else:
                record = SessionRecord(session_id, self.config.principal, project_id, budget or 4000)
            await self.store.put_session(record)
            state = await self._load(record)
            self._sessions[session_id] = state
        async with state.lock:
            settled_ok, settled_bad = await self._settle_pending(state)
            results = [await self._ingest_bootstrap(state, page) for page in bootstrap]
            await self._save(state)
            return SessionStartResult(
                session_id=session_id,
                project_id=record.project_id,
                budget=record.budget,
                turn=record.turn,
                resumed=resumed,
                pages=len(state.pages.sizes),
                bootstrap=results,
                settled_committed=settled_ok,
                settled_rejected=settled_bad,
            )

    async def _load(self, record: SessionRecord) -> SessionState:
        state = SessionState(record)
        namespaces = [state.session_ns]
        if self.config.can_read_project(record.project_id):
            namespaces.append(state.project_ns)
        for ns, page in await self.store.load_pages(namespaces):
            state.pages[page.page_id] = page
            state.namespace[page.page_id] = ns
        for call in await self.store.tool_calls(record.session_id):
            state.calls[call.signature] = call
            state.call_ids.add(call.call_id)
        saved = record.state
        state.recency = {str(k): float(v) for k, v in dict(saved.get("recency", {})).items()}
        state.after_boundary = bool(saved.get("after_boundary", False))
        counters = dict(saved.get("counters", {}))
        state.observer.restore(
            await self.store.faults(record.session_id),
            int(counters.get("duplicate_signature", 0)),
            int(counters.get("hits", 0)),
            int(counters.get("physical_insufficiency", 0)),
        )
        return state

    async def _save(self, state: SessionState) -> None:
        obs = state.observer
        state.record.state = {
            "recency": {k: round(v, 9) for k, v in sorted(state.recency.items())},
            "after_boundary": state.after_boundary,
            "counters": {
                "duplicate_signature": obs.duplicate_signature,
                "hits": obs.hits,
                "physical_insufficiency": obs.physical_insufficiency,
            },
        }
        await self.store.put_session(state.record)

    async def _session(self, session_id: str) -> SessionState:
        state = self._sessions.get(session_id)
        if state is not None:
            return state
        record = await self.store.get_session(session_id) if SESSION_ID_RE.match(session_id) else None
        if record is None or record.principal != self.config.principal:
            raise EngineError(f"No session {session_id!r}; call session_start first")
        if record.ended:
            raise EngineError(f"Session {session_id!r} has ended; call session_start to resume it")
        resumed = await self.session_start(session_id, record.project_id)
        state = self._sessions[session_id]
        state.unreported_settled = (resumed.settled_committed, resumed.settled_rejected)
        return state

    def _check_budget(self, budget: int) -> None:
        if budget < 1 or budget > self.config.max_budget:
            raise EngineError(f"budget must be between 1 and {self.config.max_budget} tokens, got {budget}")

    async def _settle_pending(self, state: SessionState) -> tuple[int, int]:
        """Staged rows left by a crash are re-validated and committed (or rejected with reasons), never dropped."""
        pending = await self.store.pending(state.session_id)
        if not pending:
            return 0, 0
        # Re-stage the rows as they were staged (same base versions), then commit them the way a boundary flush
        # would have: one version per page. Replaying them one commit each would make a staged ``set`` that
        # followed a staged ``append`` stale, turning a write the crash interrupted into a rejection.
        rejected = 0
        for entry in pending:
            req = replace(WriteRequest.from_json(entry.request), commit="boundary")
            result = await self._write(state, req, settles=entry.txn_id)
            if result.status == "rejected":
                rejected += 1
        committed, conflicts = await self._flush(state)
        rejected += conflicts
        log.info("session %s: settled %d staged rows (%d rejected)", state.session_id, committed, rejected)
        return committed, rejected

    async def _ingest_bootstrap(self, state: SessionState, page: PageInput) -> WriteResult:
        prov = page.provenance or Provenance("harness", "ext:session_start", state.turn)
        current = state.pages.get(page.page_id)
        if current is not None and not current.deleted:
            if current.content == page.content and (page.fields is None or page.fields == current.explicit_fields):
                return WriteResult(status="committed", page_id=page.page_id, version=current.version, txn_id=0)
            req = WriteRequest(
                "set",
                page.page_id,
                prov,
                page.type,
                page.content,
                page.fields,
                current.version,
                page.scope,
                page.pin,
                "now",
                state.turn,
            )
        else:
            req = WriteRequest(
                "create",
                page.page_id,
                prov,
                page.type,
                page.content,
                page.fields,
                None,
                page.scope,
                page.pin,
                "now",
                state.turn,
            )
        return await self._write(state, req)

    # ------------------------------------------------------------------ writes

    async def write(self, session_id: str, req: WriteRequest) -> WriteResult:
        require_unicode("content", req.content)
        require_unicode("fields", req.fields)
        require_unicode("provenance", None if req.provenance is None else req.provenance.ref)
        state = await self._session(session_id)
        async with state.lock:
            return await self._write(state, replace(req, turn=state.turn))

    async def pin(self, session_id: str, page_id: str, pin: Pin) -> WriteResult:
        state = await self._session(session_id)
        async with state.lock:
            if page_id not in state.pages or state.pages[page_id].deleted:
                raise EngineError(f"No page {page_id!r} in session {session_id!r}; call page_list")
            prov = Provenance("harness", f"ext:page_{'pin' if pin != 'none' else 'unpin'}", state.turn)
            return await self._write(state, WriteRequest("pin", page_id, prov, pin=pin, turn=state.turn))

    def _namespace_for(self, state: SessionState, req: WriteRequest) -> str:
        if req.page_id in state.namespace:
            return state.namespace[req.page_id]
        scope = req.scope
        if scope is None and req.type in TYPE_POLICIES:
            scope = TYPE_POLICIES[req.type].default_scope  # type: ignore[index]
        return state.project_ns if scope == "project" else state.session_ns

    def _merge(self, state: SessionState, committed_version: int) -> PageMerger:
        return PageMerger(self.counter, state.turn, committed_version)

    def _validation_context(
        self, state: SessionState, req: WriteRequest, current: Page | None, committed_version: int
    ) -> ValidationContext:
        """What the five checks may consult; the hard-floor total is summed only for a write that pins hard."""
        project_id = state.record.project_id
        return ValidationContext(
            current=current,
            committed_version=committed_version,
            page_exists=lambda pid: pid in state.pages and not state.pages[pid].deleted,
            tool_call_exists=lambda cid: cid in state.call_ids,
            can_write_scope=lambda scope: scope == "session" or self.config.can_write_project(project_id),
            hard_floor_tokens=lambda: sum(
                floor_tokens(state.pages.sizes[pid].page) for pid in state.pages.hard if pid != req.page_id
            ),
            budget=state.record.budget,
            floor_tokens=floor_tokens,
            max_page_bytes=self.config.max_page_bytes,
        )

    async def _write(self, state: SessionState, req: WriteRequest, settles: int | None = None) -> WriteResult:
        """Stage, validate, commit. ``settles`` names an existing journal row to settle instead of a new one."""
        ns = self._namespace_for(state, req)
        if req.commit == "now" and settles is None:
            done = await self._commit_unread(state, req, ns)
            if done is not None:
                return done
        stored = await self.store.get_page(ns, req.page_id) if PAGE_ID_RE.match(req.page_id) else None
        committed_version = stored.version if stored is not None else 0
        current = state.pages.get(req.page_id)
        if stored is not None and (current is None or (not current.dirty and current.version != stored.version)):
            current = stored  # another session or process committed since we loaded: validate against that
            if not stored.deleted:
                state.pages[req.page_id], state.namespace[req.page_id] = stored, ns
        ctx = self._validation_context(state, req, current, committed_version)
        reasons, merged = validate(req, ctx, self._merge(state, committed_version))
        if req.op == "create" and not reasons and ns == state.session_ns:
            # creates staged for a boundary are pages too: without them, commit="boundary" skipped the limit
            staged_new = sum(
                1 for pid, base in state.staged_base.items() if base == 0 and state.namespace.get(pid) == ns
            )
            if await self.store.count_pages(ns) + staged_new >= self.config.max_pages_per_session:
                reasons = [
                    Reason("SCHEMA_INVALID", f"session page limit of {self.config.max_pages_per_session} reached")
                ]
                merged = None
        entry = self._entry(state, ns, req, reasons)
        if merged is None:
            entry.status = "rejected"
            if settles is None:
                txn = await self.store.stage(entry)
            else:
                txn = settles
                await self.store.mark([settles], "rejected", entry.reasons)
            return WriteResult(
                status="rejected",
                page_id=req.page_id,
                version=committed_version,
                txn_id=txn,
                reasons=[ReasonOut(code=r.code, detail=r.detail) for r in reasons],
            )
        if req.commit == "boundary":
            entry.status = "validated"
            txn = await self.store.stage(entry) if settles is None else settles
            merged.dirty = True
            merged.version = committed_version
            state.pages[req.page_id], state.namespace[req.page_id] = merged, ns
            state.staged.setdefault(req.page_id, []).append(txn)
            state.staged_base.setdefault(req.page_id, committed_version)
            return WriteResult(status="staged", page_id=req.page_id, version=committed_version, txn_id=txn)
        merged.dirty = False
        earlier = state.staged.pop(req.page_id, [])
        state.staged_base.pop(req.page_id, None)
        if settles is not None:
            earlier, entry.txn_id = [*earlier, settles], settles
        _, conflicts = await self.store.commit(
            [PageCommit(ns, merged, committed_version, earlier, None if settles is not None else entry)]
        )
        if conflicts:
            await self._refresh(state, ns, req.page_id)
            detail = f"stale base: current version is {conflicts[0].current_version}"
            return WriteResult(
                status="rejected",
                page_id=req.page_id,
                version=conflicts[0].current_version,
                txn_id=entry.txn_id,
                reasons=[ReasonOut(code="DESTRUCTIVE_OP", detail=detail)],
            )
        self._install(state, ns, merged)
        return WriteResult(status="committed", page_id=req.page_id, version=merged.version, txn_id=entry.txn_id)

    async def _commit_unread(self, state: SessionState, req: WriteRequest, ns: str) -> WriteResult | None:
        """A commit-now write to a page this session holds clean, validated against that copy and committed only if
        the store still has its version: one trip instead of a read and then a commit. A rejection, or another
        writer's newer version, leaves nothing behind, and the write takes the checked way (None), which reads the
        store first; so the result is the checked way's in every case, only faster when nothing moved."""
        current = state.pages.get(req.page_id)
        if req.op == "create" or current is None or current.dirty or current.deleted or req.page_id in state.staged:
            return None
        reasons, merged = validate(
            req,
            self._validation_context(state, req, current, current.version),
            self._merge(state, current.version),
        )
        if reasons or merged is None:
            return None
        entry = self._entry(state, ns, req, reasons)
        merged.dirty = False
        if await self.store.try_commit(PageCommit(ns, merged, current.version, [], entry)) is None:
            return None
        self._install(state, ns, merged)
        return WriteResult(status="committed", page_id=req.page_id, version=merged.version, txn_id=entry.txn_id)

    @staticmethod
    def _entry(state: SessionState, ns: str, req: WriteRequest, reasons: list[Reason]) -> JournalEntry:
        """The journal row of a write, before the store settles its status."""
        rows = [{"code": r.code, "detail": r.detail} for r in reasons]
        return JournalEntry(
            state.session_id, ns, req.page_id, req.op, "staged", req.commit, req.to_json(), state.turn, rows
        )

    def _install(self, state: SessionState, ns: str, page: Page) -> None:
        if page.deleted:
            state.pages.pop(page.page_id, None)
            state.namespace.pop(page.page_id, None)
            state.resident.pop(page.page_id, None)
        else:
            state.pages[page.page_id], state.namespace[page.page_id] = page, ns

    async def _refresh(self, state: SessionState, ns: str, page_id: str) -> None:
        fresh = await self.store.get_page(ns, page_id)
        if fresh is None or fresh.deleted:
            state.pages.pop(page_id, None)
            state.namespace.pop(page_id, None)
        else:
            self._install(state, ns, fresh)

    async def _flush(self, state: SessionState) -> tuple[int, int]:
        """Commit every staged page in one transaction; a page changed underneath is rejected, not overwritten."""
        if not state.staged:
            return 0, 0
        # Another process (a harness hook running `clawvm-mcp lifecycle`, a second server) may have settled some
        # of our staged rows already; those are done, and re-committing them would look like a conflict.
        still_pending = {e.txn_id for e in await self.store.pending(state.session_id)}
        for page_id in sorted(state.staged):
            state.staged[page_id] = [t for t in state.staged[page_id] if t in still_pending]
            if not state.staged[page_id]:
                del state.staged[page_id]
                state.staged_base.pop(page_id, None)
                await self._refresh(state, state.namespace[page_id], page_id)
        writes = []
        for page_id in sorted(state.staged):
            page = replace(state.pages[page_id], dirty=False) if page_id in state.pages else None
            if page is None:
                continue
            writes.append(PageCommit(state.namespace[page_id], page, state.staged_base[page_id], state.staged[page_id]))
        committed, conflicts = await self.store.commit(writes)
        for w in writes:
            if any(c.page_id == w.page.page_id for c in conflicts):
                await self._refresh(state, w.namespace, w.page.page_id)
            else:
                self._install(state, w.namespace, w.page)
        rejected = sum(len(state.staged[c.page_id]) for c in conflicts)
        state.staged.clear()
        state.staged_base.clear()
        return len(committed), rejected

    async def _drop_staged(self, state: SessionState, event: str) -> list[FaultEvent]:
        """A policy without writeback at this boundary destroys the only copy of dirty state: flush_miss."""
        faults = []
        for page_id in sorted(state.staged):
            faults.append(state.observer.fault("flush_miss", state.turn, page_id, f"dirty at {event}, not committed"))
            await self.store.mark(state.staged[page_id], "lost", [{"code": "FLUSH_MISS", "detail": event}])
            await self._refresh(state, state.namespace[page_id], page_id)
        state.staged.clear()
        state.staged_base.clear()
        return faults

    # ------------------------------------------------------------------ reads

    def _view(self, page: Page, level: Fidelity) -> PageView:
        return PageView(
            page_id=page.page_id,
            type=page.type,
            scope=page.scope,
            pin=page.pin,
            min_fidelity=page.min_fidelity.label,
            version=page.version,
            fidelity=level.label,
            text=page.text_at(level),
            tokens=page.tokens_at(level),
            title=page.title,
            fields=page.fields,
            provenance=ProvenanceModel(
                source=page.provenance.source, ref=page.provenance.ref, turn=page.provenance.turn
            ),
            dirty=page.dirty,
            created_turn=page.created_turn,
            last_access_turn=page.last_access_turn,
        )

    async def read(self, session_id: str, page_id: str, fidelity: str = "full") -> ReadResult:
        level = self._level(fidelity)
        if level is Fidelity.NONE:
            raise EngineError("fidelity 'none' has no text; ask for pointer, structured, compressed or full")
        state = await self._session(session_id)
        async with state.lock:
            page = state.pages.get(page_id)
            if page is None and PAGE_ID_RE.match(page_id):
                if not self.config.can_read_project(state.record.project_id):
                    if await self.store.get_page(state.project_ns, page_id) is not None:
                        return ReadResult(
                            outcome="denied",
                            detail=f"page {page_id!r} is a project page this principal has no read grant for",
                        )
                page = await self.store.get_page(state.session_ns, page_id)
                if page is None and self.config.can_read_project(state.record.project_id):
                    page = await self.store.get_page(state.project_ns, page_id)
                if page is not None and not page.deleted:
                    self._install(state, state.session_ns if page.scope == "session" else state.project_ns, page)
            if page is None or page.deleted:
                return ReadResult(
                    outcome="no_match",
                    detail=f"No page {page_id!r} in session {session_id!r}; call page_list or recall",
                )
            if state.resident.get(page_id, Fidelity.NONE) > Fidelity.NONE:
                state.observer.hits += 1
            state.turn_demands.add(page_id)
            page.last_access_turn = state.turn
            return ReadResult(outcome="hit", page=self._view(page, level))

    @staticmethod
    def _level(fidelity: str) -> Fidelity:
        try:
            return Fidelity.parse(fidelity)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

    async def list_pages(self, session_id: str, page_type: str | None = None, scope: str | None = None) -> ListResult:
        state = await self._session(session_id)
        if page_type is not None and page_type not in TYPE_POLICIES:
            raise EngineError(f"Unknown type {page_type!r}; use one of {', '.join(TYPE_POLICIES)}")
        if scope not in (None, "session", "project"):
            raise EngineError(f"Unknown scope {scope!r}; use session or project")
        if scope == "project" and not self.config.can_read_project(state.record.project_id):
            return ListResult(outcome="denied", detail="this principal has no read grant for this project's pages")
        pages = [
            PageSummary(
                page_id=p.page_id,
                type=p.type,
                scope=p.scope,
                pin=p.pin,
                min_fidelity=p.min_fidelity.label,
                version=p.version,
                dirty=p.dirty,
                title=p.title,
                tokens_full=p.tokens_at(Fidelity.FULL),
            )
            for p in sorted(state.live(), key=lambda p: p.page_id)
            if (page_type is None or p.type == page_type) and (scope is None or p.scope == scope)
        ]
        if not pages:
            return ListResult(outcome="no_match", detail="no pages match; page_write creates one")
        return ListResult(outcome="hit", pages=pages)

    async def recall(
        self, session_id: str, query: str, page_type: str | None = None, limit: int = 10, backend: Backend = "ok"
    ) -> RecallResult:
        """``backend`` lets a replay trace say what the retrieval backend did; the server always passes ``ok``."""
        if page_type is not None and page_type not in TYPE_POLICIES:
            raise EngineError(f"Unknown type {page_type!r}; use one of {', '.join(TYPE_POLICIES)}")
        if not 1 <= limit <= 100:
            raise EngineError(f"limit must be between 1 and 100, got {limit}")
        require_unicode("query", query)
        state = await self._session(session_id)
        async with state.lock:
            terms = list(dict.fromkeys(re.findall(r"[\w./-]+", query.lower())))[:MAX_QUERY_TERMS]
            if not terms:
                raise EngineError("query has no searchable words")
            if backend != "ok":
                if not self.policy.typed_recall:
                    state.observer.fault("silent_recall", state.turn, query[:80], f"backend {backend}, empty result")
                    await self.store.add_faults(state.session_id, state.observer.events[-1:])
                    return RecallResult(outcome="no_match")
                outcome: Literal["denied", "backend_error"] = "denied" if backend == "denied" else "backend_error"
                return RecallResult(outcome=outcome, detail=f"the retrieval backend reported {backend}")
            namespaces = [state.session_ns]
            readable = self.config.can_read_project(state.record.project_id)
            if readable:
                namespaces.append(state.project_ns)
            try:
                found = await self.store.search(namespaces, terms, page_type, limit)
                hidden = [] if readable or found else await self.store.search([state.project_ns], terms, page_type, 1)
            except Exception as exc:  # the backend failed: say so, never an empty list
                log.exception("recall failed for session %s", state.session_id)
                return RecallResult(outcome="backend_error", detail=f"the page store failed: {exc}")
            if not found:
                if hidden:
                    return RecallResult(
                        outcome="denied",
                        detail="matches exist only in project pages this principal has no read grant for",
                    )
                return RecallResult(outcome="no_match", detail=f"no page matches {query!r}")
            new_faults = []
            hits = []
            for page in found:
                matched = sum(
                    t in f"{page.page_id}\n{page.title}\n{page.content}\n{dumps(page.fields)}".lower() for t in terms
                )
                view = state.pages.get(page.page_id, page)
                hits.append(
                    RecallHit(
                        page_id=page.page_id,
                        type=page.type,
                        title=page.title,
                        matched_terms=matched,
                        pointer=view.text_at(Fidelity.POINTER),
                    )
                )
                if self._evicted_unresolvably(state, page.page_id):
                    new_faults.append(state.observer.fault("refetch", state.turn, page.page_id, "recall"))
                state.turn_demands.add(page.page_id)
            await self.store.add_faults(state.session_id, new_faults)
            return RecallResult(outcome="hit", results=hits)

    def _evicted_unresolvably(self, state: SessionState, page_id: str) -> bool:
        page = state.pages.get(page_id)
        return (
            page is not None
            and page.type == "evidence"
            and not self.policy.pointer_resolution
            and page_id in state.evicted
            and state.resident.get(page_id, Fidelity.NONE) is Fidelity.NONE
        )

    # ------------------------------------------------------------------ assembly

    async def assemble(
        self,
        session_id: str,
        budget: int | None = None,
        demands: Sequence[tuple[str, str]] = (),
        future: Mapping[str, int] | None = None,
    ) -> AssembleResult:
        if budget is not None and budget < 0:
            raise EngineError(f"budget must be >= 0 tokens, got {budget}")
        state = await self._session(session_id)
        async with state.lock:
            wanted: dict[str, Fidelity] = {}
            for page_id, fidelity in demands:
                level = self._level(fidelity)
                page = state.pages.get(page_id)
                if page is None or page.deleted:
                    raise EngineError(f"No page {page_id!r} in session {session_id!r}; call page_list")
                wanted[page_id] = max(level, wanted.get(page_id, Fidelity.NONE))
            selection, new_faults = self._assemble(
                state, state.record.budget if budget is None else budget, wanted, future
            )
            await self.store.add_faults(state.session_id, new_faults)
            return self._render(state, selection)

    def _assemble(
        self, state: SessionState, budget: int, wanted: Mapping[str, Fidelity], future: Mapping[str, int] | None
    ) -> tuple[Selection, list[FaultEvent]]:
        """The hot path: no I/O here, so the replay driver and the benchmark measure exactly this."""
        obs = state.observer
        faults: list[FaultEvent] = []
        for page_id in wanted:
            if state.resident.get(page_id, Fidelity.NONE) > Fidelity.NONE:
                obs.hits += 1
            elif self._evicted_unresolvably(state, page_id):
                faults.append(obs.fault("refetch", state.turn, page_id, "demand"))
        table = state.pages
        selection = select(table, wanted, budget, self.policy.selector, state.recency, future)
        unmet = set(selection.unmet_required)
        if unmet:
            obs.physical_insufficiency += 1
        for page_id in sorted(table.hard):
            page = table.sizes[page_id].page
            held = selection.level_of(page_id)
            if page_id in unmet or held >= page.min_fidelity:
                continue
            kind: FaultKind = (
                "post_compaction_bootstrap"
                if state.after_boundary and page.type == "bootstrap"
                else "pinned_invariant_miss"
            )
            faults.append(obs.fault(kind, state.turn, page_id, f"resident at {held.label}"))
        state.after_boundary = False
        resident = selection.resident()
        state.evicted |= state.resident.keys() - resident.keys()
        state.evicted -= resident.keys()
        state.resident = resident
        state.turn_demands.update(wanted)
        for page_id in wanted:
            state.pages[page_id].last_access_turn = state.turn
        return selection, faults

    def _render(self, state: SessionState, selection: Selection) -> AssembleResult:
        chosen = [c for c in selection.choices if c.level > Fidelity.NONE]
        chosen.sort(key=lambda c: (PROMPT_ORDER[state.pages[c.page_id].type], c.page_id))
        prompt = "\n\n".join(state.pages[c.page_id].text_at(c.level) for c in chosen)
        return AssembleResult(
            prompt=prompt,
            pages=[
                AssembledPage(page_id=c.page_id, level=c.level.label, tokens=c.tokens, reason=c.reason)
                for c in selection.choices
            ],
            tokens_used=selection.tokens_used,
            budget=selection.budget,
            unmet_required=list(selection.unmet_required),
            physical_insufficiency=selection.physical_insufficiency,
            shortfall_tokens=selection.shortfall_tokens,
            turn=state.turn,
        )

    # ------------------------------------------------------------------ tools

    async def tool_execute(
        self, session_id: str, tool: str, args: Mapping[str, object], result: str | None = None
    ) -> ToolExecuteResult:
        if not tool.strip() or len(tool) > MAX_TOOL_NAME:
            raise EngineError(f"tool must be a name of 1-{MAX_TOOL_NAME} characters")
        require_unicode("tool", tool)
        require_unicode("args", args)
        require_unicode("result", result)
        if result is not None and len(result.encode("utf-8", "surrogatepass")) > self.config.max_page_bytes:
            raise EngineError(
                f"result is {len(result.encode('utf-8', 'surrogatepass'))} bytes; evidence pages hold at most "
                f"{self.config.max_page_bytes}. Store a summary with page_write and provenance ext:<where the rest is>"
            )
        try:
            signature = canonical_signature(tool, args)
        except (TypeError, ValueError) as exc:
            raise EngineError(f"args must be a JSON object: {exc}") from None
        state = await self._session(session_id)
        async with state.lock:
            return await self._tool_execute(state, tool, signature, result)

    async def _tool_execute(
        self, state: SessionState, tool: str, signature: str, result: str | None
    ) -> ToolExecuteResult:
        earlier = state.calls.get(signature)
        if earlier is not None:
            page = state.pages.get(earlier.evidence_page_id)
            if not earlier.has_result:
                if result is not None:
                    await self._record_result(state, earlier, tool, signature, result)
                return ToolExecuteResult(
                    status="recorded", call_id=earlier.call_id, evidence_page_id=earlier.evidence_page_id
                )
            resident = state.resident.get(earlier.evidence_page_id, Fidelity.NONE) > Fidelity.NONE
            if page is not None and not page.deleted and (self.policy.pointer_resolution or resident):
                state.observer.duplicate_signature += 1
                state.turn_demands.add(page.page_id)
                return ToolExecuteResult(
                    status="duplicate_signature",
                    call_id=earlier.call_id,
                    evidence_page_id=page.page_id,
                    stored_result=page.content,
                )
            fault = state.observer.fault(
                "duplicate_tool",
                state.turn,
                earlier.evidence_page_id,
                f"{tool} reran: its result was evicted without a resolvable pointer",
            )
            await self.store.add_faults(state.session_id, [fault])
        call_id = "c" + _digest(state.session_id, signature, str(len(state.call_ids)))[:15]
        evidence_id = earlier.evidence_page_id if earlier else f"ev/{_slug(tool)}/{_digest(signature)[:12]}"
        call = ToolCall(
            state.session_id, call_id, signature, tool, signature.split("\x00", 1)[1], evidence_id, state.turn, False
        )
        state.calls[signature] = call
        state.call_ids.add(call_id)
        if result is None:
            await self.store.add_tool_call(call)
        else:  # the call is persisted with its result, so a refused result leaves no half-recorded call behind
            try:
                await self._record_result(state, call, tool, signature, result)
            except EngineError:
                state.call_ids.discard(call_id)
                if earlier is None:
                    state.calls.pop(signature, None)
                else:
                    state.calls[signature] = earlier
                raise
        status: Literal["recorded", "duplicate_tool"] = "recorded" if earlier is None else "duplicate_tool"
        return ToolExecuteResult(status=status, call_id=call_id, evidence_page_id=evidence_id)

    async def _record_result(self, state: SessionState, call: ToolCall, tool: str, signature: str, result: str) -> None:
        fields: Fields = {"tool": tool, "args_digest": _digest(signature)[:12]}
        prov = Provenance("tool", f"tool:{call.call_id}", state.turn)
        page = state.pages.get(call.evidence_page_id)
        content = result if result.strip() else "(empty result)"
        if page is None or page.deleted:
            req = WriteRequest("create", call.evidence_page_id, prov, "evidence", content, fields, turn=state.turn)
        else:
            req = WriteRequest(
                "set", call.evidence_page_id, prov, "evidence", content, fields, page.version, turn=state.turn
            )
        outcome = await self._write(state, req)
        if outcome.status == "rejected":
            raise EngineError("could not store the tool result: " + "; ".join(r.detail for r in outcome.reasons))
        state.evicted.discard(call.evidence_page_id)  # the result is in hand again: demanding it is no refetch
        done = replace(call, has_result=True)
        state.calls[signature] = done
        await self.store.add_tool_call(done)

    # ------------------------------------------------------------------ lifecycle

    async def lifecycle(self, session_id: str, event: str) -> LifecycleResult:
        if event not in EVENTS:
            raise EngineError(f"Unknown event {event!r}; use one of {', '.join(EVENTS)}")
        state = await self._session(session_id)
        async with state.lock:
            result = await self._lifecycle(state, event)  # type: ignore[arg-type]
            if event == "session_end":
                self._sessions.pop(session_id, None)
            return result

    async def _lifecycle(self, state: SessionState, event: Event) -> LifecycleResult:
        before = len(state.observer.events)
        stored = await self.store.get_session(state.session_id)
        if stored is not None and stored.turn > state.record.turn:  # a hook process advanced the turn meanwhile
            self.advance_turn(state, stored.turn)
        committed, rejected = state.unreported_settled
        state.unreported_settled = (0, 0)
        reinjected: list[str] = []
        if event == "turn_end":
            self.advance_turn(state, state.turn + 1)
        elif (
            event == "flush"
            or (event == "compaction" and self.policy.writeback_compaction)
            or (event in ("reset", "session_end") and self.policy.writeback_reset)
        ):
            flushed, refused = await self._flush(state)
            committed, rejected = committed + flushed, rejected + refused
        else:
            await self._drop_staged(state, event)
        if event in ("compaction", "reset", "session_end"):
            state.evicted |= set(state.resident)
            state.resident = {}
            state.after_boundary = event != "session_end"
            if event == "reset":
                state.recency.clear()
            if self.policy.selector.auto_pin_hard:
                reinjected = sorted(
                    pid for pid in state.pages.hard if state.pages[pid].type in ("bootstrap", "constraint")
                )
        if event == "session_end":
            state.record.ended = True
        new = state.observer.events[before:]
        await self.store.add_faults(state.session_id, [e for e in new if e.kind == "flush_miss"])
        await self._save(state)
        return LifecycleResult(
            event=event,
            turn=state.turn,
            committed=committed,
            rejected=rejected,
            reinjected=reinjected,
            faults=[FaultOut(kind=e.kind, turn=e.turn, subject=e.subject, detail=e.detail) for e in new],
        )

    def advance_turn(self, state: SessionState, turn: int) -> None:
        """Recency decays once per turn passed; pages demanded in the turn just ended gain +1."""
        while state.record.turn < turn:
            decay_recency(state.recency, sorted(state.turn_demands))
            state.turn_demands.clear()
            state.record.turn += 1

    # ------------------------------------------------------------------ introspection

    async def stats(self, session_id: str) -> StatsResult:
        state = await self._session(session_id)
        obs = state.observer
        return StatsResult(
            session_id=state.session_id,
            project_id=state.record.project_id,
            turn=state.turn,
            faults={str(k): v for k, v in obs.counts.items()},
            faults_total=obs.total,
            duplicate_signature=obs.duplicate_signature,
            hits=obs.hits,
            thrash=round(obs.thrash, 6),
            physical_insufficiency=obs.physical_insufficiency,
            journal=await self.store.journal_counts(state.session_id),
            pages=len(state.pages.sizes),
            dirty_pages=sum(1 for p in state.live() if p.dirty),
        )

    async def journal(self, session_id: str, limit: int = 200) -> JournalResult:
        state = await self._session(session_id)
        rows = await self.store.journal(state.session_id, limit)
        return JournalResult(
            session_id=state.session_id,
            entries=[
                JournalRow(
                    txn_id=e.txn_id,
                    page_id=e.page_id,
                    op=e.op,
                    status=e.status,
                    commit_mode=e.commit_mode,
                    version=e.version,
                    turn=e.turn,
                    reasons=[ReasonOut(**r) for r in e.reasons],
                )
                for e in rows
            ],
        )

    async def fault_events(self, session_id: str) -> list[FaultOut]:
        state = await self._session(session_id)
        return [FaultOut(kind=e.kind, turn=e.turn, subject=e.subject, detail=e.detail) for e in state.observer.events]

    def state_of(self, session_id: str) -> SessionState:
        """For the replay driver: direct access to a loaded session's in-memory state."""
        return self._sessions[session_id]
