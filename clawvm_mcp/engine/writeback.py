"""The journal pipeline of DESIGN section 4: stage, validate, commit, and the boundary flush that settles staged
rows. Checks run before the merge and invariants after it, in ``journal.validate``; this module sequences them
against the store and keeps the session's cache in step with what the store committed.

The store is the one truth (DESIGN section 9): a staged row is a journal row of its session, whichever process
staged it; the cache's dirty page is only a view (the committed page with the session's staged rows replayed)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..canonical import dumps
from ..journal import Reason, ValidationContext, WriteRequest, check_invariants
from ..journal import check as journal_checks
from ..pages import PAGE_ID_RE, TYPE_POLICIES, Page, Provenance
from ..store.base import Committed, JournalEntry, PageCommit, Rejection, StoreBusy
from .merge import PageMerger, floor_tokens
from .results import ReasonOut, WriteResult
from .runtime import Runtime
from .session import PageInput, SessionState

log = logging.getLogger(__name__)
REJECTED_HEAD_BYTES = 4096


def namespace_for(state: SessionState, req: WriteRequest) -> str:
    """A known page keeps its namespace; a new one goes where its scope (given or the type's default) says."""
    if req.page_id in state.namespace:
        return state.namespace[req.page_id]
    scope = req.scope
    if scope is None and req.type in TYPE_POLICIES:
        scope = TYPE_POLICIES[req.type].default_scope  # type: ignore[index]
    return state.project_ns if scope == "project" else state.session_ns


def validation_context(
    rt: Runtime, state: SessionState, current: Page | None, committed_version: int
) -> ValidationContext:
    """What the checks before the merge may consult, as plain values."""
    return ValidationContext(
        current=current,
        committed_version=committed_version,
        live_pages=state.pages.sizes,  # live pages only (tombstones are not in the selector's index)
        tool_calls=state.call_ids,
        can_write_project=rt.config.can_write_project(state.record.project_id),
        budget=state.record.budget,
        max_page_bytes=rt.config.max_page_bytes,
    )


def check(
    rt: Runtime, state: SessionState, req: WriteRequest, current: Page | None, committed_version: int
) -> tuple[list[Reason], Page | None]:
    """The checks, then the merge, then the invariants on the merged page: its reasons, and the merged page when
    there are none. The merge is stamped with the request's own turn, so replaying a staged row later builds the
    same page."""
    reasons = journal_checks(req, validation_context(rt, state, current, committed_version))
    merged = None
    if not any(r.code == "SCHEMA_INVALID" for r in reasons) and req.op != "delete":
        merged = PageMerger(rt.counter, req.turn, committed_version)(req, current)
    others = 0
    if merged is not None and merged.pin == "hard":  # summed only for a write that pins hard
        others = sum(floor_tokens(state.pages.sizes[pid].page) for pid in state.pages.hard if pid != req.page_id)
    reasons += check_invariants(req, current, merged, others, state.record.budget)
    if reasons:
        return reasons, None
    if req.op == "delete":
        return [], None if current is None else replace(current, deleted=True, dirty=req.commit == "boundary")
    return [], merged


def journal_entry(state: SessionState, ns: str, req: WriteRequest, reasons: list[Reason]) -> JournalEntry:
    """The journal row of a write, before the store settles its status. A rejected write keeps its reasons, a
    digest and at most the first 4 KiB of the request: the journal explains a refusal without hoarding it."""
    rows = [{"code": r.code, "detail": r.detail} for r in reasons]
    request = req.to_json() if not reasons else rejected_request(req)
    return JournalEntry(state.session_id, ns, req.page_id, req.op, "staged", req.commit, request, state.turn, rows)


def rejected_request(req: WriteRequest) -> dict[str, object]:
    raw = dumps(req.to_json()).encode("utf-8", "surrogatepass")
    return {
        "op": req.op,
        "page_id": req.page_id,
        "digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
        "head": raw[:REJECTED_HEAD_BYTES].decode("utf-8", "ignore"),
    }


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


@dataclass(frozen=True, slots=True)
class PagePlan:
    """A page's staged rows replayed on its committed version: the page they make, and which of them still apply."""

    namespace: str
    page_id: str
    version: int  # the committed version the rows were replayed on
    page: Page | None  # every applicable row merged; with none, the committed page (None: nothing stored)
    applied: tuple[int, ...]
    refused: tuple[tuple[int, tuple[dict[str, str], ...]], ...]  # rows that no longer validate, with why


def plan_page(
    rt: Runtime, state: SessionState, ns: str, page_id: str, stored: Page | None, rows: Sequence[JournalEntry]
) -> PagePlan:
    """Replay a page's staged rows, in order, on the committed page: appends and merges land on whatever version is
    there now (non-destructive, so never lost), while a staged set or delete whose base moved is refused."""
    committed = stored.version if stored is not None else 0
    current = stored if stored is not None and not stored.deleted else None
    applied: list[int] = []
    refused: list[tuple[int, tuple[dict[str, str], ...]]] = []
    for row in rows:
        req = replace(WriteRequest.from_json(row.request), commit="boundary")
        reasons, merged = check(rt, state, req, current, committed)
        if merged is None:
            refused.append((row.txn_id, tuple({"code": r.code, "detail": r.detail} for r in reasons)))
            continue
        current = merged
        applied.append(row.txn_id)
    return PagePlan(ns, page_id, committed, current if applied else stored, tuple(applied), tuple(refused))


def show_plan(state: SessionState, plan: PagePlan) -> None:
    """The cache's copy of a page: its staged view when rows apply, else the committed page (or nothing)."""
    if plan.applied and plan.page is not None:
        stage_in_cache(state, plan.namespace, plan.page, list(plan.applied), plan.version)
        return
    state.staged.pop(plan.page_id, None)
    state.staged_base.pop(plan.page_id, None)
    if plan.page is None or plan.page.deleted:
        state.pages.pop(plan.page_id, None)
        state.namespace.pop(plan.page_id, None)
    else:
        install(state, plan.namespace, plan.page)


async def reload_page(rt: Runtime, state: SessionState, ns: str, page_id: str) -> None:
    """Rebuild one page of the cache from the store: its committed version with its staged rows replayed."""
    rows = [e for e in await rt.store.pending(state.session_id) if e.page_id == page_id and e.namespace == ns]
    show_plan(state, plan_page(rt, state, ns, page_id, await rt.store.get_page(ns, page_id), rows))


def stage_in_cache(state: SessionState, ns: str, merged: Page, txns: list[int], committed_version: int) -> None:
    """A validated boundary write, visible to assembly as a dirty page until a boundary commits its rows. A staged
    delete stays in the cache as a dirty tombstone (the page table keeps it out of assembly)."""
    state.pages[merged.page_id] = replace(merged, dirty=True, version=committed_version)
    state.namespace[merged.page_id] = ns
    state.staged[merged.page_id] = txns
    state.staged_base[merged.page_id] = committed_version


def _rejected(req: WriteRequest, version: int, txn: int, reasons: list[Reason]) -> WriteResult:
    return WriteResult(
        status="rejected",
        page_id=req.page_id,
        version=version,
        txn_id=txn,
        reasons=[ReasonOut(code=r.code, detail=r.detail) for r in reasons],
    )


def busy(req: WriteRequest, version: int, why: str) -> WriteResult:
    """STORE_BUSY: the write could not be made in bounded time; nothing changed, and it may be retried."""
    detail = f"the store stayed busy ({why}); nothing was written: retry this write"
    return _rejected(req, version, 0, [Reason("STORE_BUSY", detail)])


class _Moved(Exception):
    """The store moved under a write between its read and its commit: reload that page and try again."""


async def write(rt: Runtime, state: SessionState, req: WriteRequest) -> WriteResult:
    """Stage, validate, commit, within the bounded wait. A commit that finds the page moved (another process or
    session) reloads the page and tries again: the answer is always the one the store's newest state gives."""
    ns = namespace_for(state, req)
    deadline = time.monotonic() + rt.config.store_timeout
    while True:
        try:
            return await _write_once(rt, state, req, ns)
        except StoreBusy as exc:
            return busy(req, state.staged_base.get(req.page_id, _version(state, req.page_id)), str(exc))
        except _Moved:
            if time.monotonic() > deadline:
                return busy(req, _version(state, req.page_id), "the page kept changing under this write")
            await reload_page(rt, state, ns, req.page_id)


def _version(state: SessionState, page_id: str) -> int:
    page = state.pages.get(page_id)
    return 0 if page is None else page.version


async def _write_once(rt: Runtime, state: SessionState, req: WriteRequest, ns: str) -> WriteResult:
    if req.commit == "now":
        fast = await _commit_unread(rt, state, req, ns)
        if fast is not None:
            return fast
    stored = await rt.store.get_page(ns, req.page_id) if PAGE_ID_RE.match(req.page_id) else None
    committed_version = stored.version if stored is not None else 0
    if req.page_id in state.staged and state.staged_base.get(req.page_id) != committed_version:
        raise _Moved  # the staged view was built on an older version: rebuild it first
    current = state.pages.get(req.page_id)
    if stored is not None and (current is None or (not current.dirty and current.version != stored.version)):
        current = stored  # another session or process committed since we loaded: validate against that
        if not stored.deleted:
            install(state, ns, stored)
    reasons, merged = check(rt, state, req, current, committed_version)
    if req.op == "create" and not reasons and ns == state.session_ns:
        # creates staged for a boundary are pages too: without them, commit="boundary" skipped the limit
        staged_new = sum(1 for pid, base in state.staged_base.items() if base == 0 and state.namespace.get(pid) == ns)
        limit = rt.config.max_pages_per_session
        # the revalidated cache holds every live page of the session, so its size bounds the count from above: the
        # store is asked (a table count) only when that bound reaches the limit
        near = len(state.pages) + staged_new >= limit
        if near and await rt.store.count_pages(ns) + staged_new >= limit:
            reasons = [Reason("SCHEMA_INVALID", f"session page limit of {rt.config.max_pages_per_session} reached")]
            merged = None
    entry = journal_entry(state, ns, req, reasons)
    if merged is None:
        return _rejected(req, committed_version, await rt.store.stage(replace(entry, status="rejected")), reasons)
    if req.commit == "boundary":
        txn = await rt.store.stage(replace(entry, status="validated"))
        stage_in_cache(state, ns, merged, [*state.staged.get(req.page_id, []), txn], committed_version)
        return WriteResult(status="staged", page_id=req.page_id, version=committed_version, txn_id=txn)
    page = replace(merged, dirty=False, version=committed_version + 1)
    earlier = tuple(state.staged.get(req.page_id, ()))
    done, conflicts = await rt.store.commit([PageCommit(ns, page, committed_version, earlier, entry)])
    if conflicts:
        raise _Moved
    state.staged.pop(req.page_id, None)
    state.staged_base.pop(req.page_id, None)
    install(state, ns, page)
    return _committed(req, done[0])


def _committed(req: WriteRequest, done: Committed) -> WriteResult:
    return WriteResult(status="committed", page_id=req.page_id, version=done.version, txn_id=done.entry_txn_id or 0)


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
    return _committed(req, done)


async def flush(rt: Runtime, state: SessionState) -> tuple[int, int]:
    """Settle every staged row of the session, whoever staged it: replayed on each page's newest version, committed
    as one version per page in one transaction, or refused with reasons (a staged set/delete whose base moved).
    A staged row belongs to its session, not to a process: a row some other process settled meanwhile makes the
    commit a conflict and the flush reads again, so each row is settled exactly once. Returns (committed, refused)
    row counts; a store that stays busy past the bounded wait raises StoreBusy with every row still staged."""
    deadline = time.monotonic() + rt.config.store_timeout
    committed_rows = refused_rows = 0
    while True:
        groups: dict[tuple[str, str], list[JournalEntry]] = {}
        for entry in await rt.store.pending(state.session_id):
            groups.setdefault((entry.namespace, entry.page_id), []).append(entry)
        plans = [
            _cached_plan(state, ns, pid, rows) or plan_page(rt, state, ns, pid, await rt.store.get_page(ns, pid), rows)
            for (ns, pid), rows in sorted(groups.items())
        ]
        writes = [
            PageCommit(p.namespace, replace(p.page, dirty=False, version=p.version + 1), p.version, p.applied)
            for p in plans
            if p.applied and p.page is not None
        ]
        rejections = [
            Rejection(p.namespace, p.page_id, p.version, tuple(t for t, _ in p.refused), _reasons(p))
            for p in plans
            if p.refused
        ]
        done, conflicts = await rt.store.commit(writes, rejections) if plans else ([], [])
        moved = {c.page_id for c in conflicts}
        committed_rows += sum(len(d.txn_ids) for d in done)
        refused_rows += sum(len(r.txn_ids) for r in rejections if r.page_id not in moved)
        for w in writes:
            if w.page.page_id not in moved:
                state.staged.pop(w.page.page_id, None)
                state.staged_base.pop(w.page.page_id, None)
                install(state, w.namespace, w.page)
        for plan in plans:
            if plan.page_id not in moved and not plan.applied:
                show_plan(state, plan)
        if not conflicts:
            break
        if time.monotonic() > deadline:
            raise StoreBusy("staged rows kept moving under the flush; they stay staged for the next boundary")
        for plan in plans:
            if plan.page_id in moved:  # rebuilt from the store before the next round, never retried as it was
                await reload_page(rt, state, plan.namespace, plan.page_id)
    for page_id in sorted(set(state.staged) - {pid for _, pid in groups}):  # settled elsewhere before we looked
        await reload_page(rt, state, state.namespace[page_id], page_id)
    return committed_rows, refused_rows


def _cached_plan(state: SessionState, ns: str, page_id: str, rows: list[JournalEntry]) -> PagePlan | None:
    """The cache's staged view, when it was built from exactly these rows on the version still committed: no need
    to replay them (one process, nothing moved: the common case). The commit's version check catches the rest."""
    page = state.pages.get(page_id)
    txns = tuple(r.txn_id for r in rows)
    if page is None or not page.dirty or tuple(state.staged.get(page_id, ())) != txns:
        return None
    return PagePlan(ns, page_id, state.staged_base[page_id], page, txns, ())


def _reasons(plan: PagePlan) -> tuple[dict[str, str], ...]:
    """One reason list for a page's refused rows (the journal keeps it on each of them)."""
    seen: dict[tuple[str, str], dict[str, str]] = {}
    for _, reasons in plan.refused:
        for r in reasons:
            seen.setdefault((r["code"], r["detail"]), r)
    return tuple(seen.values())


async def settle_pending(rt: Runtime, state: SessionState) -> tuple[int, int]:
    """Staged rows a crash (or another process) left are settled the way a boundary would: none is dropped."""
    committed, refused = await flush(rt, state)
    if committed or refused:
        log.info("session %s: settled %d staged rows (%d rejected)", state.session_id, committed, refused)
    return committed, refused


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
