"""Domain objects turned into the engine's result models, in one place."""

from __future__ import annotations

from collections.abc import Iterable

from ..faults import FaultEvent, FaultObserver
from ..pages import Fidelity, Page
from ..store.base import JournalEntry
from .results import (
    FaultOut,
    JournalRow,
    PageSummary,
    PageView,
    ProvenanceModel,
    ReasonOut,
    StatsResult,
)
from .session import SessionState


def page_view(page: Page, level: Fidelity) -> PageView:
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
        provenance=ProvenanceModel(source=page.provenance.source, ref=page.provenance.ref, turn=page.provenance.turn),
        dirty=page.dirty,
        created_turn=page.created_turn,
        last_access_turn=page.last_access_turn,
    )


def page_summary(page: Page) -> PageSummary:
    return PageSummary(
        page_id=page.page_id,
        type=page.type,
        scope=page.scope,
        pin=page.pin,
        min_fidelity=page.min_fidelity.label,
        version=page.version,
        dirty=page.dirty,
        title=page.title,
        tokens_full=page.tokens_at(Fidelity.FULL),
    )


def fault_outs(events: Iterable[FaultEvent]) -> list[FaultOut]:
    return [FaultOut(kind=e.kind, turn=e.turn, subject=e.subject, detail=e.detail) for e in events]


def journal_rows(entries: Iterable[JournalEntry]) -> list[JournalRow]:
    return [
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
        for e in entries
    ]


def stats(state: SessionState, journal: dict[str, int]) -> StatsResult:
    obs: FaultObserver = state.observer
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
        journal=journal,
        pages=len(state.pages.sizes),
        dirty_pages=sum(1 for p in state.live() if p.dirty),
    )
