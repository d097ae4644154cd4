"""The cache-coherence rule (DESIGN section 9): the store is the one truth, and a session's in-memory state is a
cache that every operation revalidates before it answers.

Revalidation is cheap when nothing moved: one ``data_version`` look (SQLite tells whether any other connection
committed since this one last asked), plus a flag another session of this process sets when it writes. When
something moved, only what changed after the cache's last change sequence is read back: pages of the session's
namespaces, and (when the session's own row moved) its record, staged rows, tool calls and faults."""

from __future__ import annotations

from ..faults import FaultObserver
from ..pages import Page
from ..store.base import JournalEntry, SessionRecord
from .runtime import Runtime
from .session import EngineError, SavedState, SessionState, advance_turn, load_calls, take_counters
from .session import load as load_state
from .writeback import install, plan_page, reload_page, show_plan


async def refresh(rt: Runtime, state: SessionState) -> None:
    """Bring the cache in line with the store; raise EngineError when the session has ended or gone meanwhile."""
    version = await rt.store.data_version()
    if version == state.data_version and not state.stale:
        return
    seq = await rt.store.change_seq()
    record = await rt.store.get_session(state.session_id)
    if record is None or record.principal != state.record.principal:
        raise EngineError(f"No session {state.session_id!r}; call session_start first")
    readable = rt.config.can_read_project(record.project_id)
    pending_pages: dict[tuple[str, str], list[int]] = {}
    rows: dict[tuple[str, str], list[JournalEntry]] = {}
    if record.seq > state.synced_seq:
        _take_record(state, record)
        rows = _by_page(await rt.store.pending(state.session_id))
        pending_pages = {key: [e.txn_id for e in staged] for key, staged in rows.items()}
        for (ns, page_id), txns in sorted(pending_pages.items()):
            if state.staged.get(page_id) != txns:  # staged (or settled) by another process: rebuild the view
                stored = await rt.store.get_page(ns, page_id)
                show_plan(state, plan_page(rt, state, ns, page_id, stored, rows[(ns, page_id)]))
        for page_id in sorted(set(state.staged) - {pid for _, pid in pending_pages}):
            await reload_page(rt, state, state.namespace.get(page_id, state.session_ns), page_id)
        load_calls(state, await rt.store.tool_calls(state.session_id))
        observer = FaultObserver()
        obs = state.observer
        observer.restore(
            await rt.store.faults(state.session_id), obs.duplicate_signature, obs.hits, obs.physical_insufficiency
        )
        state.observer = observer
    else:
        pending_pages = {(state.namespace.get(pid, ""), pid): txns for pid, txns in state.staged.items()}
    # every page the cache now shows staged, the ones rebuilt above included: installing one of them clean would
    # leave its staged rows settled by the next write without their text
    staged_ids = {pid for _, pid in pending_pages} | set(state.staged)
    moved_staged: list[tuple[str, Page]] = []
    for ns, page in await rt.store.pages_since(state.namespaces(readable), state.synced_seq):
        if page.page_id in staged_ids:
            moved_staged.append((ns, page))
        else:
            install(state, ns, page)
    if moved_staged:  # their staged rows, read after the pages (rows read before may miss one), replayed on them
        rows = _by_page(await rt.store.pending(state.session_id))
        for ns, page in moved_staged:
            show_plan(state, plan_page(rt, state, ns, page.page_id, page, rows.get((ns, page.page_id), [])))
    state.synced_seq, state.data_version, state.stale = seq, version, False
    if record.ended:
        raise EngineError(f"Session {state.session_id!r} has ended; call session_start to resume it")


def _take_record(state: SessionState, record: SessionRecord) -> None:
    """What another process changed in the session's row: turn, budget, counters, and any boundary it reported."""
    advance_turn(state, record.turn)
    state.record.budget, state.record.ended = record.budget, record.ended
    if record.counters.boundaries > state.saved.boundaries:  # a compaction, reset or end reported elsewhere
        saved = SavedState.of(record)
        state.evicted |= set(state.resident)
        state.resident = {}
        state.after_boundary = saved.after_boundary
        state.recency = saved.recency
    take_counters(state, record.counters)
    state.record.counters = record.counters


def _by_page(pending: list[JournalEntry]) -> dict[tuple[str, str], list[JournalEntry]]:
    """A session's staged rows grouped by (namespace, page), each group in staging order."""
    rows: dict[tuple[str, str], list[JournalEntry]] = {}
    for entry in pending:
        rows.setdefault((entry.namespace, entry.page_id), []).append(entry)
    return rows


async def load(rt: Runtime, record: SessionRecord) -> SessionState:
    """A session's cache from the store, its staged rows (whoever staged them) replayed into the pages they change:
    a process that joins a live session sees its dirty pages as the process that staged them does."""
    state = await load_state(rt, record)
    rows = _by_page(await rt.store.pending(record.session_id))
    for (ns, page_id), staged in sorted(rows.items()):
        show_plan(state, plan_page(rt, state, ns, page_id, await rt.store.get_page(ns, page_id), staged))
    return state
