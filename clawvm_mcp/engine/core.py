"""ClawVMEngine: the facade every caller drives (the MCP server, the harness verbs, the replay driver).

It keeps the session registry, checks arguments, takes the session's lock, revalidates the session's cache
against the store (``coherence``) and makes one call per operation into the modules that do the work:
``session`` (state, load, save), ``writeback`` (the journal pipeline), ``assembly`` (the I/O-free turn and its
rendering), ``reads``, ``tool_calls``, ``lifecycle`` and ``views``. None of those imports this module.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio

from ..canonical import tool_signature
from ..journal import WriteRequest
from ..pages import PAGE_ID_RE, Fidelity, Page, Pin, Provenance
from ..selector import SelectorPolicy, select
from ..store.base import Store, StoreBusy, StoreError
from ..tokens import TokenCounter
from . import assembly, coherence, lifecycle, reads, tool_calls, writeback
from .policy import EngineConfig
from .results import (
    AssembleResult,
    FaultOut,
    JournalResult,
    LifecycleResult,
    ListResult,
    ReadResult,
    RecallResult,
    SessionStartResult,
    StatsResult,
    ToolExecuteResult,
    WriteResult,
)
from .runtime import Runtime
from .session import PROJECT_ID_RE, SESSION_ID_RE, EngineError, PageInput, SessionState, require_unicode, save
from .views import fault_outs, journal_rows, stats

log = logging.getLogger(__name__)
MAX_TOOL_NAME = 128
# the floor check a replay judges every policy by: hard pins and demands at their floors, nothing else
FLOOR_ONLY = SelectorPolicy(auto_pin_hard=True, prefetch_pointer=False, upgrade_mode="none")


class ClawVMEngine:
    def __init__(self, store: Store, counter: TokenCounter | None = None, config: EngineConfig | None = None) -> None:
        self.store = store
        self.counter = counter or TokenCounter()
        self.config = config or EngineConfig()
        self.policy = self.config.policy
        self._rt = Runtime(store, self.counter, self.config)
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
        for page in bootstrap:
            require_unicode(f"bootstrap page {page.page_id!r}", (page.content, page.fields))
        state, created = await self._claim(session_id, project_id, budget)
        async with self._locked(state):
            settled_ok, settled_bad = await writeback.settle_pending(self._rt, state)
            results = [await writeback.ingest_bootstrap(self._rt, state, page) for page in bootstrap]
            await save(self._rt, state)
            self._touch(state)
            return self._started(state, created, results, settled_ok, settled_bad)

    async def open_session(
        self, session_id: str, project_id: str = "default", budget: int | None = None
    ) -> SessionStartResult:
        """Create the session, or resume it (an ended one too), without settling its staged rows: for a harness
        process that joins a live session on every event (a Claude Code hook), where only a boundary may commit
        what is staged. ``session_start`` is the explicit start: it also settles what a crash left staged."""
        state, created = await self._claim(session_id, project_id, budget)
        async with self._locked(state):
            await save(self._rt, state)
            return self._started(state, created, [], 0, 0)

    @staticmethod
    def _started(
        state: SessionState, created: bool, bootstrap: list[WriteResult], settled_ok: int, settled_bad: int
    ) -> SessionStartResult:
        return SessionStartResult(
            session_id=state.session_id,
            project_id=state.record.project_id,
            budget=state.record.budget,
            turn=state.turn,
            resumed=not created,
            pages=len(state.pages.sizes),
            bootstrap=bootstrap,
            settled_committed=settled_ok,
            settled_rejected=settled_bad,
        )

    async def _claim(self, session_id: str, project_id: str, budget: int | None) -> tuple[SessionState, bool]:
        """Own the session in the store (one conditional statement) and join or build its cache in this process."""
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
        claim = await self.store.claim_session(session_id, self.config.principal, project_id, budget)
        if claim is None:
            existing = await self.store.get_session(session_id)
            if existing is not None and existing.principal == self.config.principal:
                raise EngineError(
                    f"Session {session_id!r} belongs to project {existing.project_id!r}, not {project_id!r}"
                )
            raise EngineError(f"Session id {session_id!r} is not available; choose another id")
        record, created = claim
        async with self._open_lock:  # one cache per session in this process: a re-run joins it, never replaces it
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = await coherence.load(self._rt, record)
            else:
                state.record.budget, state.record.ended, state.stale = record.budget, False, True
        return state, created

    async def _session(self, session_id: str) -> SessionState:
        state = self._sessions.get(session_id)
        if state is not None:
            return state
        record = await self.store.get_session(session_id) if SESSION_ID_RE.match(session_id) else None
        if record is None or record.principal != self.config.principal:
            raise EngineError(f"No session {session_id!r}; call session_start first")
        if record.ended:
            raise EngineError(f"Session {session_id!r} has ended; call session_start to resume it")
        async with self._open_lock:  # another process's session, or ours before a restart: join, settle nothing
            state = self._sessions.get(session_id)
            if state is None:
                state = self._sessions[session_id] = await coherence.load(self._rt, record)
        return state

    @asynccontextmanager
    async def _locked(self, state: SessionState) -> AsyncIterator[SessionState]:
        """The session's lock (waited for at most ``store_timeout``), then the cache revalidated against the store.
        The operation inside is shielded from cancellation: every wait in it is bounded, and a client that gives up
        must never leave a write half-applied to the cache (the store has it, the cache would not)."""
        with anyio.move_on_after(self.config.store_timeout) as waited:
            await state.lock.acquire()
        if waited.cancelled_caught:
            raise StoreBusy(f"session {state.session_id!r} stayed busy with other calls; retry")
        try:
            with anyio.CancelScope(shield=True):
                try:
                    await coherence.refresh(self._rt, state)
                    yield state
                except EngineError:
                    state.stale = True
                    if state.record.ended:
                        self._sessions.pop(state.session_id, None)
                    raise
                except BaseException:
                    state.stale = True  # whatever the failure left half-done, the next call re-reads it
                    raise
        finally:
            state.lock.release()

    @asynccontextmanager
    async def _op(self, session_id: str) -> AsyncIterator[SessionState]:
        """One operation on a session: found (or resumed), locked, revalidated."""
        async with self._locked(await self._session(session_id)) as state:
            yield state

    def _touch(self, state: SessionState) -> None:
        """This session wrote: the other sessions of its project in this process share its project pages (and one
        store connection, whose data_version does not move for its own writes), so they refresh next time."""
        for other in self._sessions.values():
            if other is not state and other.record.project_id == state.record.project_id:
                other.stale = True

    def _check_budget(self, budget: int) -> None:
        if budget < 1 or budget > self.config.max_budget:
            raise EngineError(f"budget must be between 1 and {self.config.max_budget} tokens, got {budget}")

    # ------------------------------------------------------------------ writes

    async def write(self, session_id: str, req: WriteRequest) -> WriteResult:
        require_unicode("content", req.content)
        require_unicode("fields", req.fields)
        require_unicode("provenance", None if req.provenance is None else req.provenance.ref)
        try:
            async with self._op(session_id) as state:
                self._touch(state)
                result = await writeback.write(self._rt, state, replace(req, turn=state.turn))
                reads.note_written(self._rt, state, req.page_id)  # the semantic extra's embedding pass, if on
                return result
        except StoreBusy as exc:
            return writeback.busy(req, req.base_version or 0, str(exc))

    async def pin(self, session_id: str, page_id: str, pin: Pin) -> WriteResult:
        async with self._op(session_id) as state:
            if page_id not in state.pages or state.pages[page_id].deleted:
                raise EngineError(f"No page {page_id!r} in session {session_id!r}; call page_list")
            prov = Provenance("harness", f"ext:page_{'pin' if pin != 'none' else 'unpin'}", state.turn)
            self._touch(state)
            return await writeback.write(self._rt, state, WriteRequest("pin", page_id, prov, pin=pin, turn=state.turn))

    # ------------------------------------------------------------------ reads

    async def read(self, session_id: str, page_id: str, fidelity: str = "full") -> ReadResult:
        level = self._level(fidelity)
        if level is Fidelity.NONE:
            raise EngineError("fidelity 'none' has no text; ask for pointer, structured, compressed or full")
        async with self._op(session_id) as state:
            return await reads.read(self._rt, state, page_id, level)

    @staticmethod
    def _level(fidelity: str) -> Fidelity:
        try:
            return Fidelity.parse(fidelity)
        except ValueError as exc:
            raise EngineError(str(exc)) from None

    async def list_pages(self, session_id: str, page_type: str | None = None, scope: str | None = None) -> ListResult:
        reads.check_type(page_type)
        if scope not in (None, "session", "project"):
            raise EngineError(f"Unknown scope {scope!r}; use session or project")
        async with self._op(session_id) as state:
            return reads.list_pages(self._rt, state, page_type, scope)

    async def recall(
        self, session_id: str, query: str, page_type: str | None = None, limit: int = 10, backend: reads.Backend = "ok"
    ) -> RecallResult:
        """``backend`` lets a replay trace say what the retrieval backend did; the server always passes ``ok``."""
        reads.check_type(page_type)
        if not 1 <= limit <= 100:
            raise EngineError(f"limit must be between 1 and 100, got {limit}")
        require_unicode("query", query)
        try:
            async with self._op(session_id) as state:
                return await reads.recall(self._rt, state, query, page_type, limit, backend)
        except StoreError as exc:  # the backend failed before recall could run: typed, never an empty list
            return RecallResult(outcome="backend_error", detail=f"the page store failed: {exc}")

    async def pages(self, session_id: str) -> list[Page]:
        """Copies of the session's live pages (staged updates applied), for callers that plan writes (import)."""
        async with self._op(session_id) as state:
            return [replace(p) for p in state.live()]

    async def version_of(self, session_id: str, page_id: str) -> int | None:
        """The committed version of a page this session can see (0 for a page created staged), None if none."""
        async with self._op(session_id) as state:
            page = state.pages.get(page_id)
            if page is not None:
                return None if page.deleted else page.version
            if not PAGE_ID_RE.match(page_id):
                return None
            for ns in state.namespaces(self.config.can_read_project(state.record.project_id)):
                stored = await self.store.get_page(ns, page_id)
                if stored is not None and not stored.deleted:
                    writeback.install(state, ns, stored)
                    return stored.version
            return None

    # ------------------------------------------------------------------ assembly

    async def assemble(
        self,
        session_id: str,
        budget: int | None = None,
        demands: Sequence[tuple[str, str]] = (),
        future: Mapping[str, int] | None = None,
        trace: assembly.Trace = "shown",
    ) -> AssembleResult:
        if trace not in ("shown", "full"):
            raise EngineError(f"trace must be shown or full, got {trace!r}")
        if budget is not None and budget < 0:
            raise EngineError(f"budget must be >= 0 tokens, got {budget}")
        async with self._op(session_id) as state:
            wanted: dict[str, Fidelity] = {}
            for page_id, fidelity in demands:
                level = self._level(fidelity)
                page = state.pages.get(page_id)
                if page is None or page.deleted:
                    raise EngineError(f"No page {page_id!r} in session {session_id!r}; call page_list")
                wanted[page_id] = max(level, wanted.get(page_id, Fidelity.NONE))
            selection, new_faults = assembly.assemble_turn(
                self.policy, state, state.record.budget if budget is None else budget, wanted, future
            )
            await self.store.add_faults(state.session_id, new_faults)
            return assembly.render(state, selection, trace)

    async def floor_fits(self, session_id: str, demands: Mapping[str, str], budget: int) -> bool:
        """Whether hard pins and ``demands`` fit ``budget`` at their floors: a replay's policy-independent check."""
        wanted = {pid: self._level(f) for pid, f in demands.items()}
        async with self._op(session_id) as state:
            return not select(state.pages, wanted, budget, FLOOR_ONLY, {}).unmet_required

    async def set_utility(
        self, session_id: str, page_id: str, base_utility: float | None, recompute_cost: float | None
    ) -> None:
        """Trace-given utility and recompute cost (replay only; the write API has no such fields): kept in the
        session's cache and applied to every copy of the page it holds. A session that has ended takes none."""
        state = self._sessions.get(session_id)
        if state is None:
            return
        async with self._locked(state):
            state.utilities[page_id] = (base_utility, recompute_cost)
            page = state.pages.get(page_id)
            if page is not None:
                writeback.install(state, state.namespace[page_id], page)

    # ------------------------------------------------------------------ tools

    async def tool_execute(
        self,
        session_id: str,
        tool: str,
        args: Mapping[str, object],
        result: str | None = None,
        idempotent: bool | None = None,
    ) -> ToolExecuteResult:
        """``idempotent`` None takes the configured default: the read-only tools the harness declares."""
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
            signature = tool_signature(tool, args)
        except (TypeError, ValueError) as exc:
            raise EngineError(f"args must be a JSON object: {exc}") from None
        async with self._op(session_id) as state:
            self._touch(state)
            flag = tool in self.config.idempotent_tools if idempotent is None else idempotent
            return await tool_calls.execute(self._rt, state, tool, signature, result, flag)

    # ------------------------------------------------------------------ lifecycle

    async def lifecycle(self, session_id: str, event: str) -> LifecycleResult:
        if event not in lifecycle.EVENTS:
            raise EngineError(f"Unknown event {event!r}; use one of {', '.join(lifecycle.EVENTS)}")
        async with self._op(session_id) as state:
            self._touch(state)
            result = await lifecycle.boundary(self._rt, state, event)  # type: ignore[arg-type]
            if event == "session_end":
                self._sessions.pop(session_id, None)
            return result

    # ------------------------------------------------------------------ introspection

    async def stats(self, session_id: str) -> StatsResult:
        async with self._op(session_id) as state:
            return stats(state, await self.store.journal_counts(state.session_id))

    async def faults_total(self, session_id: str) -> int:
        """Faults observed so far, without the journal counts ``stats`` reads from the store."""
        async with self._op(session_id) as state:
            return state.observer.total

    async def journal(self, session_id: str, limit: int = 200) -> JournalResult:
        async with self._op(session_id) as state:
            rows = await self.store.journal(state.session_id, limit)
            return JournalResult(session_id=state.session_id, entries=journal_rows(rows))

    async def fault_events(self, session_id: str) -> list[FaultOut]:
        async with self._op(session_id) as state:
            return fault_outs(state.observer.events)

    async def save_all(self) -> None:
        """Write every loaded session's counters and flags: a process that is about to exit (a hook, a server
        shutting down) calls this, so the hits and alerts it saw between boundaries are not lost with it."""
        for session_id in sorted(self._sessions):
            state = self._sessions[session_id]
            try:
                async with self._locked(state):
                    await save(self._rt, state)
            except EngineError:  # ended or gone meanwhile: nothing of it to keep
                continue
            except StoreError as exc:  # exiting anyway: say what could not be kept, keep going with the others
                log.warning("session %s: counters not saved at exit: %s", session_id, exc)

    def state_of(self, session_id: str) -> SessionState:
        """The live cache of a loaded session, for tests that check it against a reference (the selector
        exactness suite). Read it; never change it: nothing in the package calls this."""
        return self._sessions[session_id]
