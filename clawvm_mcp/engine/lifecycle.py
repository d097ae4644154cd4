"""Lifecycle boundaries (DESIGN sections 4-5): turn ends decay recency; compaction, reset and session end commit
staged writes (or, for a policy without writeback, lose them as flush_miss) and re-inject the pinned pages."""

from __future__ import annotations

from typing import Literal

from ..faults import FaultEvent
from .results import LifecycleResult
from .runtime import Runtime
from .session import SessionState, advance_turn, save
from .views import fault_outs
from .writeback import flush, reload_page

Event = Literal["turn_end", "compaction", "reset", "flush", "session_end"]
EVENTS: tuple[Event, ...] = ("turn_end", "compaction", "reset", "flush", "session_end")


async def boundary(rt: Runtime, state: SessionState, event: Event) -> LifecycleResult:
    policy = rt.policy
    before = len(state.observer.events)
    committed = rejected = 0
    reinjected: list[str] = []
    if event == "turn_end":
        advance_turn(state, state.turn + 1)
    elif (
        event == "flush"
        or (event == "compaction" and policy.writeback_compaction)
        or (event in ("reset", "session_end") and policy.writeback_reset)
    ):
        flushed, refused = await flush(rt, state)
        committed, rejected = committed + flushed, rejected + refused
    else:
        await _drop_staged(rt, state, event)
    if event in ("compaction", "reset", "session_end"):
        state.evicted |= set(state.resident)
        state.resident = {}
        state.after_boundary = event != "session_end"
        if event == "reset":
            state.recency.clear()
        if policy.selector.auto_pin_hard:
            reinjected = sorted(pid for pid in state.pages.hard if state.pages[pid].type in ("bootstrap", "constraint"))
    if event == "session_end":
        state.record.ended = True
    new = state.observer.events[before:]
    await rt.store.add_faults(state.session_id, [e for e in new if e.kind == "flush_miss"])
    await save(rt, state, boundary=event in ("compaction", "reset", "session_end"))
    return LifecycleResult(
        event=event,
        turn=state.turn,
        committed=committed,
        rejected=rejected,
        reinjected=reinjected,
        faults=fault_outs(new),
    )


async def _drop_staged(rt: Runtime, state: SessionState, event: str) -> list[FaultEvent]:
    """A policy without writeback at this boundary destroys the only copy of dirty state: flush_miss."""
    faults = []
    rows: dict[tuple[str, str], list[int]] = {}
    for entry in await rt.store.pending(state.session_id):  # every staged row of the session, whoever staged it
        rows.setdefault((entry.namespace, entry.page_id), []).append(entry.txn_id)
    for (ns, page_id), txns in sorted(rows.items(), key=lambda item: item[0][1]):
        faults.append(state.observer.fault("flush_miss", state.turn, page_id, f"dirty at {event}, not committed"))
        await rt.store.mark(txns, "lost", [{"code": "FLUSH_MISS", "detail": event}])
        await reload_page(rt, state, ns, page_id)
    return faults
