"""RepresentationSelector: two-phase deterministic assembly under a token budget (DESIGN section 3)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .pages import PIN_RANK, TYPE_POLICIES, Fidelity, Page

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
        level = page.at_least(max(want, page.min_fidelity))
        if level > required.get(page_id, Fidelity.NONE):
            required[page_id] = level
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

    if policy.prefetch_pointer:
        rest = [p for p in working.values() if p.page_id not in level and p.page_id not in required]
        rest.sort(key=lambda p: (-p.recompute_cost, -p.base_utility, p.page_id))
        for page in rest:
            if Fidelity.POINTER in page.levels():
                cost = page.tokens_at(Fidelity.POINTER)
                if cost <= left:
                    level[page.page_id] = Fidelity.POINTER
                    reason[page.page_id] = "pointer-prefetch"
                    left -= cost

    if policy.upgrade_mode != "none":
        left = _upgrade(working, level, reason, left, policy.upgrade_mode, recency, future or {})

    choices = tuple(
        Choice(pid, level.get(pid, Fidelity.NONE), working[pid].tokens_at(level.get(pid, Fidelity.NONE)), reason.get(pid, "dropped"))
        for pid in sorted(working)
    )
    return Selection(
        choices=choices,
        tokens_used=budget - left,
        budget=budget,
        unmet_required=tuple(unmet),
        shortfall_tokens=max(0, required_total - budget) if unmet else 0,
    )


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
    """
    rank = {pid: i for i, pid in enumerate(sorted(working))}
    scores = {pid: score(p, mode, recency.get(pid, 0.0), future.get(pid, 0)) for pid, p in working.items()}
    heap: list[tuple[float, int, int, str, Fidelity]] = []

    def push(page: Page) -> None:
        cur = level.get(page.page_id, Fidelity.NONE)
        nxt = next((lv for lv in page.levels() if lv > cur), None)
        if nxt is None:
            return
        delta = page.tokens_at(nxt) - page.tokens_at(cur)
        ratio = float("inf") if delta <= 0 else scores[page.page_id] / delta
        heapq.heappush(heap, (-ratio, -rank[page.page_id], -int(nxt), page.page_id, nxt))

    for page in working.values():
        push(page)
    while heap:
        _, _, _, page_id, nxt = heapq.heappop(heap)
        page = working[page_id]
        delta = page.tokens_at(nxt) - page.tokens_at(level.get(page_id, Fidelity.NONE))
        if delta > left:
            continue
        level[page_id] = nxt
        left -= delta
        if reason.get(page_id, "pointer-prefetch") == "pointer-prefetch":
            reason[page_id] = "upgraded"
        push(page)
    return left
