"""The journal pipeline of DESIGN section 4: stage, validate, commit, and the boundary flush that settles staged
rows. Checks run before the merge and invariants after it, in ``journal.validate``; this module sequences them
against the store and keeps the session's cache in step with what the store committed."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..journal import Reason, ValidationContext, WriteRequest, validate
from ..pages import PAGE_ID_RE, TYPE_POLICIES, Page, Provenance
from ..store.base import Committed, JournalEntry, PageCommit
from .merge import PageMerger, floor_tokens
from .results import ReasonOut, WriteResult
from .runtime import Runtime
from .session import PageInput, SessionState

log = logging.getLogger(__name__)


def namespace_for(state: SessionState, req: WriteRequest) -> str:
    """A known page keeps its namespace; a new one goes where its scope (given or the type's default) says."""
    if req.page_id in state.namespace:
        return state.namespace[req.page_id]
    scope = req.scope
    if scope is None and req.type in TYPE_POLICIES:
        scope = TYPE_POLICIES[req.type].default_scope  # type: ignore[index]
    return state.project_ns if scope == "project" else state.session_ns


def validation_context(
    rt: Runtime, state: SessionState, req: WriteRequest, current: Page | None, committed_version: int
) -> ValidationContext:
    """What the five checks may consult; the hard-floor total is summed only for a write that pins hard."""
    project_id = state.record.project_id
    return ValidationContext(
        current=current,
        committed_version=committed_version,
        page_exists=lambda pid: pid in state.pages and not state.pages[pid].deleted,
        tool_call_exists=lambda cid: cid in state.call_ids,
        can_write_scope=lambda scope: scope == "session" or rt.config.can_write_project(project_id),
        hard_floor_tokens=lambda: sum(
            floor_tokens(state.pages.sizes[pid].page) for pid in state.pages.hard if pid != req.page_id
        ),
        budget=state.record.budget,
        floor_tokens=floor_tokens,
        max_page_bytes=rt.config.max_page_bytes,
    )


def check(
    rt: Runtime, state: SessionState, req: WriteRequest, current: Page | None, committed_version: int
) -> tuple[list[Reason], Page | None]:
    """The five checks and the merge of one request: its reasons, and the merged page when there are none."""
    merger = PageMerger(rt.counter, state.turn, committed_version)
    return validate(req, validation_context(rt, state, req, current, committed_version), merger)


def journal_entry(state: SessionState, ns: str, req: WriteRequest, reasons: list[Reason]) -> JournalEntry:
    """The journal row of a write, before the store settles its status."""
    rows = [{"code": r.code, "detail": r.detail} for r in reasons]
    return JournalEntry(
        state.session_id, ns, req.page_id, req.op, "staged", req.commit, req.to_json(), state.turn, rows
    )


def install(state: SessionState, ns: str, page: Page) -> None:
    """Put a committed (or staged) page into the cache, or take a tombstone out of it."""
    if page.deleted:
        state.pages.pop(page.page_id, None)
        state.namespace.pop(page.page_id, None)
        state.resident.pop(page.page_id, None)
        return
    utility = state.utilities.get(page.page_id)
    if utility is not None:
        base, recompute = utility
        page = replace(
            page,
            base_utility=page.base_utility if base is None else base,
            recompute_cost=page.recompute_cost if recompute is None else recompute,
        )
    state.pages[page.page_id], state.namespace[page.page_id] = page, ns


async def refresh_page(rt: Runtime, state: SessionState, ns: str, page_id: str) -> None:
    """Replace the cached copy of one page by the store's."""
    fresh = await rt.store.get_page(ns, page_id)
    if fresh is None or fresh.deleted:
        state.pages.pop(page_id, None)
        state.namespace.pop(page_id, None)
    else:
        install(state, ns, fresh)


def stage_in_cache(state: SessionState, ns: str, merged: Page, txn: int, committed_version: int) -> None:
    """A validated boundary write, visible to assembly as a dirty page until the boundary commits its row. A staged
    delete stays in the cache as a dirty tombstone (the page table keeps it out of assembly) so the flush has it."""
    state.pages[merged.page_id] = replace(merged, dirty=True, version=committed_version)
    state.namespace[merged.page_id] = ns
    state.staged.setdefault(merged.page_id, []).append(txn)
    state.staged_base.setdefault(merged.page_id, committed_version)


def _rejected(req: WriteRequest, version: int, txn: int, reasons: list[Reason]) -> WriteResult:
    return WriteResult(
        status="rejected",
        page_id=req.page_id,
        version=version,
        txn_id=txn,
        reasons=[ReasonOut(code=r.code, detail=r.detail) for r in reasons],
    )


async def write(rt: Runtime, state: SessionState, req: WriteRequest, settles: int | None = None) -> WriteResult:
    """Stage, validate, commit. ``settles`` names an existing journal row to settle instead of a new one."""
    ns = namespace_for(state, req)
    if req.commit == "now" and settles is None:
        fast = await _commit_unread(rt, state, req, ns)
        if fast is not None:
            return fast
    stored = await rt.store.get_page(ns, req.page_id) if PAGE_ID_RE.match(req.page_id) else None
    committed_version = stored.version if stored is not None else 0
    current = state.pages.get(req.page_id)
    if stored is not None and (current is None or (not current.dirty and current.version != stored.version)):
        current = stored  # another session or process committed since we loaded: validate against that
        if not stored.deleted:
            install(state, ns, stored)
    reasons, merged = check(rt, state, req, current, committed_version)
    if req.op == "create" and not reasons and ns == state.session_ns:
        # creates staged for a boundary are pages too: without them, commit="boundary" skipped the limit
        staged_new = sum(1 for pid, base in state.staged_base.items() if base == 0 and state.namespace.get(pid) == ns)
        if await rt.store.count_pages(ns) + staged_new >= rt.config.max_pages_per_session:
            reasons = [Reason("SCHEMA_INVALID", f"session page limit of {rt.config.max_pages_per_session} reached")]
            merged = None
    entry = journal_entry(state, ns, req, reasons)
    if merged is None:
        if settles is None:
            return _rejected(req, committed_version, await rt.store.stage(replace(entry, status="rejected")), reasons)
        await rt.store.mark([settles], "rejected", entry.reasons)
        return _rejected(req, committed_version, settles, reasons)
    if req.commit == "boundary":
        txn = settles if settles is not None else await rt.store.stage(replace(entry, status="validated"))
        stage_in_cache(state, ns, merged, txn, committed_version)
        return WriteResult(status="staged", page_id=req.page_id, version=committed_version, txn_id=txn)
    page = replace(merged, dirty=False, version=committed_version + 1)
    earlier = state.staged.pop(req.page_id, [])
    state.staged_base.pop(req.page_id, None)
    commit = PageCommit(ns, page, committed_version, tuple(earlier), entry)
    if settles is not None:
        commit = PageCommit(ns, page, committed_version, (*earlier, settles), None)
    done, conflicts = await rt.store.commit([commit])
    if conflicts:
        await refresh_page(rt, state, ns, req.page_id)
        conflict = conflicts[0]
        reason = Reason("DESTRUCTIVE_OP", f"stale base: current version is {conflict.current_version}")
        row = conflict.entry_txn_id if settles is None else settles
        return _rejected(req, conflict.current_version, row or 0, [reason])
    install(state, ns, page)
    return _committed(req, done[0], settles)


def _committed(req: WriteRequest, done: Committed, settles: int | None) -> WriteResult:
    txn = done.entry_txn_id if settles is None else settles
    return WriteResult(status="committed", page_id=req.page_id, version=done.version, txn_id=txn or 0)


async def _commit_unread(rt: Runtime, state: SessionState, req: WriteRequest, ns: str) -> WriteResult | None:
    """A commit-now write to a page this session holds clean, validated against that copy and committed only if the
    store still has its version: one trip instead of a read and then a commit. A rejection, or another writer's
    newer version, leaves nothing behind, and the write takes the checked way (None), which reads the store first;
    so the result is the checked way's in every case, only faster when nothing moved."""
    current = state.pages.get(req.page_id)
    if req.op == "create" or current is None or current.dirty or current.deleted or req.page_id in state.staged:
        return None
    reasons, merged = check(rt, state, req, current, current.version)
    if reasons or merged is None:
        return None
    page = replace(merged, dirty=False, version=current.version + 1)
    entry = journal_entry(state, ns, req, reasons)
    done = await rt.store.try_commit(PageCommit(ns, page, current.version, (), entry))
    if done is None:
        return None
    install(state, ns, page)
    return _committed(req, done, None)


async def flush(rt: Runtime, state: SessionState) -> tuple[int, int]:
    """Commit every staged page in one transaction; a page changed underneath is rejected, not overwritten."""
    if not state.staged:
        return 0, 0
    # Another process (a harness hook running `clawvm-mcp lifecycle`, a second server) may have settled some of our
    # staged rows already; those are done, and re-committing them would look like a conflict.
    still_pending = {e.txn_id for e in await rt.store.pending(state.session_id)}
    for page_id in sorted(state.staged):
        state.staged[page_id] = [t for t in state.staged[page_id] if t in still_pending]
        if not state.staged[page_id]:
            del state.staged[page_id]
            state.staged_base.pop(page_id, None)
            await refresh_page(rt, state, state.namespace[page_id], page_id)
    writes = []
    for page_id in sorted(state.staged):
        if page_id not in state.pages:
            continue
        base = state.staged_base[page_id]
        page = replace(state.pages[page_id], dirty=False, version=base + 1)
        writes.append(PageCommit(state.namespace[page_id], page, base, tuple(state.staged[page_id])))
    committed, conflicts = await rt.store.commit(writes)
    conflicted = {c.page_id for c in conflicts}
    for w in writes:
        if w.page.page_id in conflicted:
            await refresh_page(rt, state, w.namespace, w.page.page_id)
        else:
            install(state, w.namespace, w.page)
    rejected = sum(len(state.staged[page_id]) for page_id in conflicted)
    state.staged.clear()
    state.staged_base.clear()
    return sum(len(c.txn_ids) for c in committed), rejected


async def settle_pending(rt: Runtime, state: SessionState) -> tuple[int, int]:
    """Staged rows left by a crash are re-validated and committed (or rejected with reasons), never dropped."""
    pending = await rt.store.pending(state.session_id)
    if not pending:
        return 0, 0
    # Re-stage the rows as they were staged (same base versions), then commit them the way a boundary flush would
    # have: one version per page. Replaying them one commit each would make a staged ``set`` that followed a staged
    # ``append`` stale, turning a write the crash interrupted into a rejection.
    rejected = 0
    for entry in pending:
        req = replace(WriteRequest.from_json(entry.request), commit="boundary")
        result = await write(rt, state, req, settles=entry.txn_id)
        if result.status == "rejected":
            rejected += 1
    committed, conflicts = await flush(rt, state)
    rejected += conflicts
    log.info("session %s: settled %d staged rows (%d rejected)", state.session_id, committed, rejected)
    return committed, rejected


async def ingest_bootstrap(rt: Runtime, state: SessionState, page: PageInput) -> WriteResult:
    """A bootstrap page given to session_start: created, updated when its text changed, or left as it is."""
    prov = page.provenance or Provenance("harness", "ext:session_start", state.turn)
    current = state.pages.get(page.page_id)
    live = current is not None and not current.deleted
    if current is not None and live:
        if current.content == page.content and (page.fields is None or page.fields == current.explicit_fields):
            return WriteResult(status="committed", page_id=page.page_id, version=current.version, txn_id=0)
    req = WriteRequest(
        "set" if live else "create",
        page.page_id,
        prov,
        page.type,
        page.content,
        page.fields,
        current.version if current is not None and live else None,
        page.scope,
        page.pin,
        "now",
        state.turn,
    )
    return await write(rt, state, req)
