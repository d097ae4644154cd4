"""Reads that answer from the session's pages: page_read, page_list and recall (with typed outcomes)."""

from __future__ import annotations

import logging
from typing import Literal

from .. import semantic
from ..pages import PAGE_ID_RE, TYPE_POLICIES, Fidelity
from ..store import search
from ..store.base import SearchHit
from .assembly import evicted_unresolvably
from .results import ListResult, ReadResult, RecallHit, RecallResult
from .runtime import Runtime
from .session import EngineError, SessionState
from .views import page_summary, page_view
from .writeback import install

log = logging.getLogger(__name__)

Backend = Literal["ok", "denied", "error"]
FUSE_DEPTH = 100  # with the semantic extra: BM25's top 100 go into the fusion (vectors.DEPTH for the vectors)


async def read(rt: Runtime, state: SessionState, page_id: str, level: Fidelity) -> ReadResult:
    """A page at a fidelity; a page not yet in the cache is looked up in the store (a pointer always resolves)."""
    page = state.pages.get(page_id)
    readable = rt.config.can_read_project(state.record.project_id)
    if page is None and PAGE_ID_RE.match(page_id):
        if not readable and await rt.store.get_page(state.project_ns, page_id) is not None:
            return ReadResult(
                outcome="denied", detail=f"page {page_id!r} is a project page this principal has no read grant for"
            )
        page = await rt.store.get_page(state.session_ns, page_id)
        if page is None and readable:
            page = await rt.store.get_page(state.project_ns, page_id)
        if page is not None and not page.deleted:
            install(state, state.session_ns if page.scope == "session" else state.project_ns, page)
    if page is None or page.deleted:
        return ReadResult(
            outcome="no_match", detail=f"No page {page_id!r} in session {state.session_id!r}; call page_list or recall"
        )
    if state.resident.get(page_id, Fidelity.NONE) > Fidelity.NONE:
        state.observer.hits += 1
    state.turn_demands.add(page_id)
    page.last_access_turn = state.turn
    return ReadResult(outcome="hit", page=page_view(page, level))


def list_pages(rt: Runtime, state: SessionState, page_type: str | None, scope: str | None) -> ListResult:
    if scope == "project" and not rt.config.can_read_project(state.record.project_id):
        return ListResult(outcome="denied", detail="this principal has no read grant for this project's pages")
    pages = [
        page_summary(p)
        for p in sorted(state.live(), key=lambda p: p.page_id)
        if (page_type is None or p.type == page_type) and (scope is None or p.scope == scope)
    ]
    if not pages:
        return ListResult(outcome="no_match", detail="no pages match; page_write creates one")
    return ListResult(outcome="hit", pages=pages)


async def recall(
    rt: Runtime, state: SessionState, query: str, page_type: str | None, limit: int, backend: Backend
) -> RecallResult:
    """``backend`` lets a replay trace say what the retrieval backend did; the server always passes ``ok``."""
    terms = search.query_terms(query)  # the index's own tokens: stemmed, identifiers split, stop words dropped
    if not terms:
        raise EngineError("query has no searchable words")
    if backend != "ok":
        if not rt.policy.typed_recall:
            state.observer.fault("silent_recall", state.turn, query[:80], f"backend {backend}, empty result")
            await rt.store.add_faults(state.session_id, state.observer.events[-1:])
            return RecallResult(outcome="no_match")
        outcome: Literal["denied", "backend_error"] = "denied" if backend == "denied" else "backend_error"
        return RecallResult(outcome=outcome, detail=f"the retrieval backend reported {backend}")
    readable = rt.config.can_read_project(state.record.project_id)
    fusing = semantic.enabled()  # CLAWVM_SEMANTIC=1 with the extra installed: BM25 and vectors fused by RRF
    try:
        found = await rt.store.search(state.namespaces(readable), terms, page_type, FUSE_DEPTH if fusing else limit)
        hidden = [] if readable or found else await rt.store.search([state.project_ns], terms, page_type, 1)
    except Exception as exc:  # the backend failed: say so, never an empty list
        log.exception("recall failed for session %s", state.session_id)
        return RecallResult(outcome="backend_error", detail=f"the page store failed: {exc}")
    if not found:
        if hidden:
            return RecallResult(
                outcome="denied", detail="matches exist only in project pages this principal has no read grant for"
            )
        return RecallResult(outcome="no_match", detail=f"no page matches {query!r}")
    if fusing:
        found = (await _fused(rt, state, state.namespaces(readable), query, terms, page_type, found))[:limit]
    new_faults = []
    hits = []
    for ranked in found:
        view = state.pages.get(ranked.page_id)  # the session's own view: a staged update shows in its pointer
        hits.append(
            RecallHit(
                page_id=ranked.page_id,
                type=ranked.type,
                title=ranked.title,
                score=round(ranked.score, 6),
                matched_terms=ranked.matched,
                pointer=ranked.pointer if view is None else view.text_at(Fidelity.POINTER),
            )
        )
        if evicted_unresolvably(rt.policy, state, ranked.page_id):
            new_faults.append(state.observer.fault("refetch", state.turn, ranked.page_id, "recall"))
        state.turn_demands.add(ranked.page_id)
    await rt.store.add_faults(state.session_id, new_faults)
    return RecallResult(outcome="hit", results=hits)


async def _fused(
    rt: Runtime,
    state: SessionState,
    namespaces: list[str],
    query: str,
    terms: list[str],
    page_type: str | None,
    lexical: list[SearchHit],
) -> list[SearchHit]:
    """BM25's ranking fused with the vectors' over the committed live pages recall may return (vectors.py). The
    vector list only re-ranks and extends a query that matched some page lexically, so ``no_match`` and ``denied``
    mean what they meant. If the vectors fail, recall says so in the log and ranks by BM25 alone."""
    from .. import vectors  # numpy and the model: only here, only with the extra

    allowed = set(namespaces)
    candidates = [
        (ns, p)
        for p in state.live()
        if p.version > 0 and (ns := state.namespace.get(p.page_id, "")) in allowed
        if page_type is None or p.type == page_type
    ]
    try:
        return await vectors.fuse(rt.store, candidates, query, terms, lexical, f"{state.session_id}\0{page_type}")
    except Exception:
        log.exception("semantic fusion failed for session %s; ranking by BM25 alone", state.session_id)
        return lexical


def note_written(rt: Runtime, state: SessionState, page_id: str) -> None:
    """After a write: with the semantic extra, queue the page's text for the background embedding pass."""
    page = state.pages.get(page_id)
    if page is None or page.deleted or not semantic.enabled():
        return
    try:
        from .. import vectors

        vectors.index_for(rt.store).note([page])
    except Exception:  # the write is done: a failed queueing only leaves the page for recall to embed
        log.exception("could not queue page %s for embedding", page_id)


def check_type(page_type: str | None) -> None:
    if page_type is not None and page_type not in TYPE_POLICIES:
        raise EngineError(f"Unknown type {page_type!r}; use one of {', '.join(TYPE_POLICIES)}")
