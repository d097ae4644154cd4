"""One turn's assembly: the I/O-free selection with its fault observation, and its rendering into a prompt.

No I/O happens here, so the replay driver and the benchmark time exactly what a turn costs the policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from ..faults import FaultEvent, FaultKind
from ..pages import PROMPT_ORDER, Fidelity, Page
from ..selector import Selection, select
from .policy import EnginePolicy
from .results import AssembleResult
from .session import SessionState

Trace = Literal["shown", "full"]


def evicted_unresolvably(policy: EnginePolicy, state: SessionState, page_id: str) -> bool:
    """An evidence page the last prompt dropped and no pointer can bring back: demanding it again is a refetch."""
    page = state.pages.get(page_id)
    return (
        page is not None
        and page.type == "evidence"
        and not policy.pointer_resolution
        and page_id in state.evicted
        and state.resident.get(page_id, Fidelity.NONE) is Fidelity.NONE
    )


def assemble_turn(
    policy: EnginePolicy,
    state: SessionState,
    budget: int,
    wanted: Mapping[str, Fidelity],
    future: Mapping[str, int] | None,
) -> tuple[Selection, list[FaultEvent]]:
    """Select under ``budget``, observe the faults the selection shows, and update residency and recency input."""
    obs = state.observer
    faults: list[FaultEvent] = []
    for page_id in wanted:
        if state.resident.get(page_id, Fidelity.NONE) > Fidelity.NONE:
            obs.hits += 1
        elif evicted_unresolvably(policy, state, page_id):
            faults.append(obs.fault("refetch", state.turn, page_id, "demand"))
    table = state.pages
    selection = select(table, wanted, budget, policy.selector, state.recency, future)
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


_TAG = re.compile(r"<(/?)(page)", re.IGNORECASE)


def escape(text: str) -> str:
    """Page text can never open or close a block: ``<page`` and ``</page`` (any case) become ``&lt;page`` and
    ``&lt;/page``, so no content forges another page."""
    return _TAG.sub(r"&lt;\1\2", text) if "<" in text else text  # most texts hold no "<": no regex pass


def block(page: Page, level: Fidelity) -> str:
    """One page of the prompt (DESIGN section 9): its id, type, version and level as attributes; evidence is marked
    ``source="tool"``: data a tool returned, never instructions."""
    source = ' source="tool"' if page.type == "evidence" else ""
    head = f'<page id="{page.page_id}" type="{page.type}" v="{page.version}" level="{level.label}"{source}>'
    return f"{head}\n{escape(page.text_at(level))}\n</page>"


def render(state: SessionState, selection: Selection, trace: Trace = "shown") -> AssembleResult:
    """The prompt in DESIGN order (bootstrap, constraint, plan, ...; page id within a type) and the decision
    trace: by default the pages shown or unmet (``dropped`` counts the rest), with ``full`` every page.

    Built from the selection's plain rows and validated once as a whole: a ``Choice`` and an ``AssembledPage``
    per listed page cost more than the rest of the rendering at a few hundred pages."""
    rows = selection.shown_rows()  # in page_id order; the whole-table trace is built only for trace="full"
    table = state.pages
    placed: list[tuple[int, Page, Fidelity]] = []
    for pid, level, _, _ in rows:
        if level > Fidelity.NONE:
            page = table[pid]
            placed.append((PROMPT_ORDER[page.type], page, level))
    placed.sort(key=_prompt_rank)  # stable: page_id order within a type
    prompt = "\n".join([block(page, level) for _, page, level in placed])
    listed = rows if trace == "shown" else [(c.page_id, c.level, c.tokens, c.reason) for c in selection.choices]
    return AssembleResult.model_validate(
        {
            "prompt": prompt,
            "pages": [{"page_id": p, "level": lv.label, "tokens": t, "reason": r} for p, lv, t, r in listed],
            "dropped": selection.table_size - len(rows),
            "tokens_used": selection.tokens_used,
            "budget": selection.budget,
            "unmet_required": list(selection.unmet_required),
            "physical_insufficiency": selection.physical_insufficiency,
            "shortfall_tokens": selection.shortfall_tokens,
            "turn": state.turn,
        }
    )


def _prompt_rank(item: tuple[int, Page, Fidelity]) -> int:
    return item[0]
