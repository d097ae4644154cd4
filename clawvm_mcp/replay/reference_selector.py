"""The selector as it was before the incremental PageTable (commit 503e814), kept as the reference the fast one
must match decision for decision: plain, whole-table, obviously the algorithm DESIGN section 3 describes."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from clawvm_mcp.pages import PIN_RANK, TYPE_POLICIES, Fidelity, Page, levels_for

UpgradeMode = Literal["none", "lru", "recency", "clawvm", "oracle"]
Reason = Literal["required", "pinned", "upgraded", "pointer-prefetch", "dropped"]
RECENCY_DECAY = 0.88
RECENCY_FLOOR = 1e-4
PIN_BOOST = {"hard": 2.0, "soft": 0.6, "none": 0.0}


@dataclass(frozen=True, slots=True)
class SelectorPolicy:
    auto_pin_hard: bool = True
    prefetch_pointer: bool = True
    upgrade_mode: UpgradeMode = "clawvm"


@dataclass(frozen=True, slots=True)
class Choice:
    page_id: str
    level: Fidelity
    tokens: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class Selection:
    choices: tuple[Choice, ...]  # every working-set page, in page_id order
    tokens_used: int
    budget: int
    unmet_required: tuple[str, ...]
    shortfall_tokens: int

    @property
    def physical_insufficiency(self) -> bool:
        return bool(self.unmet_required)

    def level_of(self, page_id: str) -> Fidelity:
        for c in self.choices:
            if c.page_id == page_id:
                return c.level
        return Fidelity.NONE


def _priority(page: Page) -> tuple[int, int, float, str]:
    # descending pin, type, utility; ascending page_id (negated for one sort)
    return (-PIN_RANK[page.pin], -TYPE_POLICIES[page.type].priority, -page.base_utility, page.page_id)


def score(page: Page, mode: UpgradeMode, recency: float, future: int) -> float:
    if mode == "none":
        return 0.0
    if mode == "lru":
        return recency
    if mode == "recency":
        return page.base_utility + 0.9 * recency + 0.1 * page.recompute_cost
    base = page.base_utility + PIN_BOOST[page.pin] + 0.6 * recency + 0.4 * page.recompute_cost
    return base + 2.2 * future if mode == "oracle" else base


def select(
    pages: Iterable[Page],
    demands: Mapping[str, Fidelity],
    budget: int,
    policy: SelectorPolicy,
    recency: Mapping[str, float],
    future: Mapping[str, int] | None = None,
) -> Selection:
    """Phase 1 installs the floor set or reports exactly what does not fit; phase 2 spends what is left."""
    working = {p.page_id: p for p in pages if not p.deleted}
    required: dict[str, Fidelity] = {}
    pinned: set[str] = set()
    if policy.auto_pin_hard:
        for p in working.values():
            if p.pin == "hard":
                required[p.page_id] = p.at_least(p.min_fidelity)
                pinned.add(p.page_id)
    for page_id, want in demands.items():
        page = working.get(page_id)
        if page is None:
            continue
        at = page.at_least(max(want, page.min_fidelity))
        if at > required.get(page_id, Fidelity.NONE):
            required[page_id] = at
            pinned.discard(page_id)

    level: dict[str, Fidelity] = {}
    reason: dict[str, Reason] = {}
    left = budget
    unmet: list[str] = []
    required_total = 0
    for page in sorted((working[i] for i in required), key=_priority):
        want = required[page.page_id]
        cost = page.tokens_at(want)
        required_total += cost
        if cost <= left:
            level[page.page_id] = want
            reason[page.page_id] = "pinned" if page.page_id in pinned else "required"
            left -= cost
        else:
            unmet.append(page.page_id)

    order = sorted(working)  # page_id order: the trace order and the upgrade tie-break rank
    if policy.prefetch_pointer:
        left = _prefetch(working, required, level, reason, left)

    if policy.upgrade_mode != "none":
        left = _upgrade(working, order, level, reason, left, policy.upgrade_mode, recency, future or {})

    none = Fidelity.NONE
    choices: list[Choice] = []
    for pid in order:
        lv = level.get(pid, none)
        if lv is none:
            choices.append(Choice(pid, none, 0, reason.get(pid, "dropped")))
        else:
            choices.append(Choice(pid, lv, working[pid].representations[lv].tokens, reason.get(pid, "dropped")))
    return Selection(
        choices=tuple(choices),
        tokens_used=budget - left,
        budget=budget,
        unmet_required=tuple(unmet),
        shortfall_tokens=max(0, required_total - budget) if unmet else 0,
    )


def _prefetch_key(page: Page) -> tuple[float, float, str]:
    return (-page.recompute_cost, -page.base_utility, page.page_id)


def _prefetch(
    working: Mapping[str, Page],
    required: Mapping[str, Fidelity],
    level: dict[str, Fidelity],
    reason: dict[str, Reason],
    left: int,
) -> int:
    """Phase 1b: every other page at pointer while it fits, by (recompute_cost, base_utility) descending."""
    pointer = Fidelity.POINTER
    rest = [
        p
        for p in working.values()
        if p.page_id not in level and p.page_id not in required and pointer in levels_for(p.type, p.min_fidelity)
    ]
    rest.sort(key=_prefetch_key)
    for page in rest:
        cost = page.representations[pointer].tokens
        if cost <= left:
            level[page.page_id] = pointer
            reason[page.page_id] = "pointer-prefetch"
            left -= cost
    return left


def decay_recency(recency: dict[str, float], demanded: Iterable[str]) -> None:
    for key in list(recency):
        value = recency[key] * RECENCY_DECAY
        if value < RECENCY_FLOOR:
            del recency[key]
        else:
            recency[key] = value
    for page_id in demanded:
        recency[page_id] = recency.get(page_id, 0.0) + 1.0


def _upgrade(
    working: Mapping[str, Page],
    order: list[str],
    level: dict[str, Fidelity],
    reason: dict[str, Reason],
    left: int,
    mode: UpgradeMode,
    recency: Mapping[str, float],
    future: Mapping[str, int],
) -> int:
    """Greedy one-level upgrades by score per extra token, best first, ties by (page_id, level) descending.

    A heap replaces the single sorted pass so a page's next step competes as soon as its previous step lands
    (a single pass strands pages whose cheaper-than-expected levels sort ahead of the step that unlocks them).
    A step is never pushed when it cannot fit however the rest goes: a page can give tokens back only by ending
    on a level smaller than the one it holds now (sizes are not monotone in fidelity), so ``left`` plus each
    page's largest such give-back bounds what any later pop can spend. Popping such a step would only discard
    it, so every outcome stays the same, while the heap holds only the steps that can still land.
    """
    none = Fidelity.NONE
    inf = float("inf")
    first: list[tuple[int, int, str, Page, Fidelity]] = []
    gain = 0  # the most the pages could give back by moving to smaller levels
    need = 0  # the most the pages could spend on the way to their top levels
    tops: list[tuple[str, Fidelity, int]] = []
    for rank, pid in enumerate(order):
        page = working[pid]
        cur = level.get(pid, none)
        reps = page.representations
        held = reps[cur].tokens if cur is not none else 0
        nxt: Fidelity | None = None
        delta = 0
        low = high = held
        top = cur
        for lv in levels_for(page.type, page.min_fidelity):
            if lv <= cur:
                continue
            tokens = reps[lv].tokens
            if nxt is None:
                nxt, delta = lv, tokens - held
            if tokens < low:
                low = tokens
            if tokens > high:
                high = tokens
            top = lv
        gain += held - low
        need += high - held
        if nxt is not None:
            first.append((delta, rank, pid, page, nxt))
            tops.append((pid, top, reps[top].tokens - held))
    if need <= left:
        # Every step fits whatever the order (no page ever holds more than its largest level), so the greedy walk
        # would end with every page at its top level: take that outcome directly.
        for pid, top, spent in tops:
            level[pid] = top
            left -= spent
            if reason.get(pid, "pointer-prefetch") == "pointer-prefetch":
                reason[pid] = "upgraded"
        return left
    reach = left + gain
    heap: list[tuple[float, int, int, str, Fidelity]] = [
        (
            -(inf if delta <= 0 else score(page, mode, recency.get(pid, 0.0), future.get(pid, 0)) / delta),
            -rank,
            -int(nxt),
            pid,
            nxt,
        )
        for delta, rank, pid, page, nxt in first
        if delta <= reach
    ]
    heapq.heapify(heap)
    while heap:
        _, neg_rank, _, page_id, nxt = heapq.heappop(heap)
        page = working[page_id]
        reps = page.representations
        cur = level.get(page_id, none)
        cur_tokens = reps[cur].tokens if cur is not none else 0
        delta = reps[nxt].tokens - cur_tokens
        if delta > left:
            continue
        level[page_id] = nxt
        left -= delta
        if reason.get(page_id, "pointer-prefetch") == "pointer-prefetch":
            reason[page_id] = "upgraded"
        after = _next_level(page, nxt)
        if after is None:
            continue
        delta = reps[after].tokens - reps[nxt].tokens
        if delta > left + gain:
            continue
        ratio = inf if delta <= 0 else score(page, mode, recency.get(page_id, 0.0), future.get(page_id, 0)) / delta
        heapq.heappush(heap, (-ratio, neg_rank, -int(after), page_id, after))
    return left


def _next_level(page: Page, cur: Fidelity) -> Fidelity | None:
    for lv in levels_for(page.type, page.min_fidelity):
        if lv > cur:
            return lv
    return None
