"""RepresentationSelector: two-phase deterministic assembly under a token budget (DESIGN section 3)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from .cost_order import CostOrder, Position
from .page_table import PageSizes, PageTable, StepKey
from .pages import Fidelity, Page

Step = tuple[float, str, int, str, Fidelity, int]  # an upgrade heap entry: its StepKey, then its size in tokens
UpgradeMode = Literal["none", "lru", "recency", "clawvm", "oracle"]
Reason = Literal["required", "pinned", "upgraded", "pointer-prefetch", "dropped"]
Row = tuple[str, Fidelity, int, Reason]  # one page of the trace: page_id, level, tokens, why
RECENCY_DECAY = 0.88
RECENCY_FLOOR = 1e-4
PIN_BOOST = {"hard": 2.0, "soft": 0.6, "none": 0.0}
NONE, POINTER, FULL = Fidelity.NONE, Fidelity.POINTER, Fidelity.FULL
_STREAM_FROM = 128  # below this many stream-able pages, the upgrade heap takes them directly
_NO_STREAM: CostOrder[StepKey] = CostOrder()


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


class Selection:
    """One assembly's outcome. The per-page trace is built when first read (``choices``), not on every turn: a
    turn needs the levels of the pages it installed, while the trace lists every page of the table."""

    __slots__ = (
        "tokens_used",
        "budget",
        "unmet_required",
        "shortfall_tokens",
        "table_size",
        "_table",
        "_generation",
        "_levels",
        "_reasons",
        "_all_full",
        "_choices",
    )

    def __init__(
        self,
        *,
        table: PageTable,
        levels: dict[str, Fidelity],
        reasons: dict[str, Reason],
        all_full: bool,
        tokens_used: int,
        budget: int,
        unmet_required: tuple[str, ...],
        shortfall_tokens: int,
    ) -> None:
        # The table itself, not a copy: copying 100,000 entries was a third of a turn. What is read of it later
        # (the whole-table trace, an all-full outcome's pages) is refused once the table has changed.
        self._table = table
        self._generation = table.generation
        self._levels = levels  # every page placed and its level (all_full needs none of it)
        self._reasons = reasons
        self._all_full = all_full  # every page at full, reason "upgraded" unless it has one in _reasons
        self._choices: tuple[Choice, ...] | None = None
        self.table_size = len(table.sizes)
        self.tokens_used = tokens_used
        self.budget = budget
        self.unmet_required = unmet_required
        self.shortfall_tokens = shortfall_tokens

    @property
    def _sizes(self) -> Mapping[str, PageSizes]:
        """The table's sizes as they were selected from; an error once the table has changed since."""
        if self._table.generation != self._generation:
            raise RuntimeError("the page table changed after this selection: select again to read it whole")
        return self._table.sizes

    @property
    def physical_insufficiency(self) -> bool:
        return bool(self.unmet_required)

    def level_of(self, page_id: str) -> Fidelity:
        if self._all_full:
            return FULL if page_id in self._sizes else NONE
        return self._levels.get(page_id, NONE)

    def resident(self) -> dict[str, Fidelity]:
        """Every page shown, with its level."""
        return dict.fromkeys(self._sizes, FULL) if self._all_full else dict(self._levels)

    def shown(self) -> tuple[Choice, ...]:
        """The pages shown and the unmet ones, in page_id order: the trace without the dropped pages. It reads only
        what was placed, not the table, so it costs what the prompt holds (``choices`` costs the whole table)."""
        return tuple(Choice(*row) for row in self.shown_rows())

    def shown_rows(self) -> list[Row]:
        """``shown`` as plain (page_id, level, tokens, reason) rows: what a result is built from, without building a
        ``Choice`` per page."""
        if self._all_full or self._choices is not None:
            unmet = set(self.unmet_required)
            return [
                (c.page_id, c.level, c.tokens, c.reason) for c in self.choices if c.level > NONE or c.page_id in unmet
            ]
        levels, reasons, sizes = self._levels, self._reasons, self._sizes
        ids = {pid for pid, lv in levels.items() if lv > NONE}
        ids.update(self.unmet_required)
        rows: list[Row] = []
        for pid in sorted(ids):
            lv = levels.get(pid, NONE)
            rows.append((pid, lv, sizes[pid].tokens[lv], reasons.get(pid, "dropped")))
        return rows

    @property
    def choices(self) -> tuple[Choice, ...]:
        """Every page of the table, in page_id order: level, tokens and why."""
        if self._choices is None:
            default: Reason = "upgraded" if self._all_full else "dropped"
            out: list[Choice] = []
            for pid in sorted(self._sizes):
                lv = self.level_of(pid)
                out.append(Choice(pid, lv, self._sizes[pid].tokens[lv], self._reasons.get(pid, default)))
            self._choices = tuple(out)
        return self._choices


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
    table: PageTable,
    demands: Mapping[str, Fidelity],
    budget: int,
    policy: SelectorPolicy,
    recency: Mapping[str, float],
    future: Mapping[str, int] | None = None,
) -> Selection:
    """Phase 1 installs the floor set or reports exactly what does not fit; phase 2 spends what is left.

    The common outcomes are read off the table's running sums instead of walked page by page: when every
    pointer-able page fits at pointer, phase 1b is one subtraction, and when every page then fits at its largest
    level, phase 2 is one comparison. Otherwise the walk touches the pages it installs and the steps that can
    still land. tests/test_selector.py checks every outcome against the plain whole-table selector.
    """
    sizes = table.sizes
    required: dict[str, Fidelity] = {}
    pinned: set[str] = set()
    if policy.auto_pin_hard:
        for pid in table.hard:
            required[pid] = sizes[pid].floor
            pinned.add(pid)
    for page_id, want in demands.items():
        s = sizes.get(page_id)
        if s is None:
            continue
        at = s.at_least(want)  # its levels start at its floor
        if at > required.get(page_id, NONE):
            required[page_id] = at
            pinned.discard(page_id)

    level: dict[str, Fidelity] = {}
    reason: dict[str, Reason] = {}
    left = budget
    unmet: list[str] = []
    required_total = 0
    for s in sorted((sizes[i] for i in required), key=_priority):
        pid = s.page.page_id
        want = required[pid]
        cost = s.tokens[want]
        required_total += cost
        if cost <= left:
            level[pid] = want
            reason[pid] = "pinned" if pid in pinned else "required"
            left -= cost
        else:
            unmet.append(pid)

    # phase 1b: every other pointer-able page at pointer while it fits, by (recompute_cost, base_utility) desc
    all_pointers = False  # every unrequired pointer-able page is at pointer, without being listed in ``level``
    if policy.prefetch_pointer:
        rest = table.sum_pointer - sum(sizes[pid].pointer or 0 for pid in required)
        if rest <= left:
            all_pointers, left = True, left - rest
        else:
            for keys, costs, cheapest in table.prefetch_order.blocks():
                if cheapest > left:
                    continue  # nothing in this block fits
                for (_, _, pid), cost in zip(keys, costs, strict=True):
                    if cost <= left and pid not in required:
                        level[pid] = POINTER
                        reason[pid] = "pointer-prefetch"
                        left -= cost

    all_full = False
    if policy.upgrade_mode != "none":
        # a required page that did not fit would spend more than is left, so it rules the shortcut out at once
        if not unmet and _spend_to_full(table, required, level, all_pointers) <= left:
            # every step fits whatever the order (no page ever holds more than its largest level), so the greedy
            # walk would end with every page at its largest level: take that outcome directly
            all_full, left = True, budget - table.sum_full  # every page at full
            reason = {pid: r for pid, r in reason.items() if pid in required}
        else:
            if all_pointers:
                _all_at_pointer(table, required, level, reason)
            left = _upgrade(table, level, reason, left, budget, policy.upgrade_mode, recency, future or {})
    elif all_pointers:
        _all_at_pointer(table, required, level, reason)

    return Selection(
        table=table,
        levels=level,
        reasons=reason,
        all_full=all_full,
        tokens_used=budget - left,
        budget=budget,
        unmet_required=tuple(unmet),
        shortfall_tokens=max(0, required_total - budget) if unmet else 0,
    )


def _spend_to_full(
    table: PageTable, required: Mapping[str, Fidelity], level: Mapping[str, Fidelity], all_pointers: bool
) -> int:
    """Tokens every page would still spend on the way to its largest level from where phase 1 left it."""
    sizes = table.sizes
    if all_pointers:
        need = table.sum_free_need
        for pid in required:
            need -= sizes[pid].free_need
    else:
        need = table.sum_most
        for pid in level:
            s = sizes[pid]
            need -= s.most_from[NONE]
            if pid not in required:
                need += s.most_from[POINTER] - s.tokens[POINTER]
    for pid, lv in level.items():
        if pid in required:
            s = sizes[pid]
            need += s.most_from[lv] - s.tokens[lv]
    return need


def _all_at_pointer(
    table: PageTable, required: Mapping[str, Fidelity], level: dict[str, Fidelity], reason: dict[str, Reason]
) -> None:
    for _, _, pid in table.prefetch_order.keys():
        if pid not in required:
            level[pid] = POINTER
            reason[pid] = "pointer-prefetch"


def _priority(s: PageSizes) -> tuple[int, int, float, str]:
    return s.priority


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
    table: PageTable,
    level: dict[str, Fidelity],
    reason: dict[str, Reason],
    left: int,
    budget: int,
    mode: UpgradeMode,
    recency: Mapping[str, float],
    future: Mapping[str, int],
) -> int:
    """Greedy one-level upgrades by score per extra token, best first, ties by (page_id, level) descending.

    A heap replaces a single sorted pass so a page's next step competes as soon as its previous step lands (a
    single pass strands pages whose cheaper-than-expected levels sort ahead of the step that unlocks them). A step
    popped when it no longer fits is dropped, and its page goes no further this turn.

    These keep the walk in proportion to what lands rather than to the table:

    - ``reach``: sizes are not monotone in fidelity, so a page can give tokens back by moving up to a smaller
      level. ``left`` plus everything the pages could still give back is ``budget`` minus, per page, the fewest
      tokens it can hold from its level upwards; that minimum only grows as pages move up, so ``reach`` never
      grows and bounds what any later step can spend. A larger step would only be popped to be dropped.
    - The first steps of pages not yet shown whose score nothing but the page decides (no recency, no future
      demand) are not pushed at all: the table keeps them in heap order (a ``Stream``). The walk merges that
      stream with the heap, jumping straight to the next stream step that fits what is left: every stream step it
      jumps over comes before whatever the heap pops next and does not fit, so the heap would have dropped it.
    - Steps that cost nothing or give tokens back always fit and would pop before any other (their ratio is
      infinite); only their own page depends on when they land, so they skip the heap. And once neither the
      stream nor the heap has a step that fits, nothing can land to give tokens back: the walk ends there.
    """
    sizes = table.sizes
    heap: list[Step] = []  # a StepKey and the step's size
    free: list[tuple[str, Fidelity]] = []  # steps that cost nothing or give back: they pop first, in any order
    heappop, heappush = heapq.heappop, heapq.heappush
    scores: dict[str, float] = {}  # a page's score is fixed for the walk: computed once, not once per step

    def step(s: PageSizes, level: Fidelity, delta: int) -> Step:
        """A heap entry: the step of page ``s`` up to ``level``, costing ``delta`` > 0 tokens, keyed by score per
        token (the same float arithmetic as the stream's key, so their entries compare exactly)."""
        pid = s.page.page_id
        value = scores.get(pid)
        if value is None:
            value = scores[pid] = score(s.page, mode, recency.get(pid, 0.0), future.get(pid, 0))
        return (-(value / delta), s.tie, -level, pid, level, delta)

    reach = budget
    for pid, cur in level.items():
        reach -= sizes[pid].least_from[cur]
    for pid, cur in level.items():
        s = sizes[pid]
        nxt = s.next_level[cur]
        if nxt is not None:
            delta = s.tokens[nxt] - s.tokens[cur]
            if delta <= 0:
                free.append((pid, nxt))
            elif delta <= reach:
                heap.append(step(s, nxt, delta))
    skip = set(level)  # pages the stream must not offer: shown already, or scored by recency or future here
    for pid in (*recency, *future):
        scored = sizes.get(pid)
        if scored is None or pid in skip:
            continue
        skip.add(pid)
        delta, nxt = scored.entry, scored.levels[0]
        if delta <= 0:
            free.append((pid, nxt))
        elif delta <= reach:
            heap.append(step(scored, nxt, delta))
    key = _stream_key(mode)
    streaming = len(sizes) - len(skip) > _STREAM_FROM
    if streaming:
        stream = table.stream(mode, key).order
    else:  # a handful of pages: the heap takes them all, as that is cheaper than merging
        stream = _NO_STREAM
        heap.extend((*key(s), s.entry) for pid, s in sizes.items() if pid not in skip and s.entry <= reach)
    heapq.heapify(heap)
    at = stream.start()  # stream steps before this one were taken or dropped
    scan, scanned_with = at, left  # steps from ``at`` to ``scan`` are larger than ``scanned_with``
    hit: Position | None = None  # the first step from there that fits ``scanned_with``
    hit_key: StepKey | None = None
    hit_cost = 0
    searched = False
    tail_checked = -1  # ``left`` when the heap last had a step that fits
    dropped_below: Step | None = None  # the largest step the heap popped: stream steps before it are gone
    while True:
        if free:  # always fits, and only its own page's state depends on when it lands
            pid, nxt = free.pop()
        elif not streaming:
            if not heap:
                return left
            _, _, _, pid, nxt, _ = heappop(heap)
        else:
            if searched and left < scanned_with and hit is not None and hit_cost <= left:
                scanned_with = left  # what came before the hit is larger still, and the hit itself still fits
            elif left != scanned_with or not searched:
                if left > scanned_with:  # a page gave tokens back: steps that did not fit may fit now
                    if dropped_below is not None:
                        at = max(at, stream.locate(dropped_below[:5]))
                    scan = at
                hit = stream.next_within(max(at, scan), left)
                scan, scanned_with, searched = hit or stream.end(), left, True
                hit_key, hit_cost = stream.at(hit) if hit is not None else (None, 0)
            if hit is not None and hit_key is not None and (not heap or hit_key < heap[0]):
                _, _, _, pid, nxt = hit_key
                at, searched, dropped_below = stream.after(hit), False, None
                if pid in skip:  # its step is in the heap, or it is shown already: not the stream's to offer
                    continue
            elif heap:
                popped = heappop(heap)
                _, _, _, pid, nxt, _ = popped
                if dropped_below is None or dropped_below < popped:
                    dropped_below = popped
            else:
                return left
        s = sizes[pid]
        tokens = s.tokens
        cur = level.get(pid, NONE)
        delta = tokens[nxt] - tokens[cur]
        if delta > left:
            if hit is None and left != tail_checked:  # nothing in the stream fits: does anything in the heap?
                if all(entry[5] > left for entry in heap):
                    return left  # no, and nothing can land to give tokens back: the rest would all be dropped
                tail_checked = left
            continue
        level[pid] = nxt
        left -= delta
        reach -= s.least_from[nxt] - s.least_from[cur]
        if cur is NONE or reason[pid] == "pointer-prefetch":
            reason[pid] = "upgraded"
        after = s.next_level[nxt]
        if after is None:
            continue
        delta = tokens[after] - tokens[nxt]
        if delta <= 0:
            free.append((pid, after))
        elif delta <= reach:
            heappush(heap, step(s, after, delta))


@lru_cache(maxsize=8)
def _stream_key(mode: UpgradeMode) -> Callable[[PageSizes], StepKey]:
    """A page's first step as the heap would key it with no recency and no future demand: the same float
    arithmetic as in ``_upgrade``, so stream and heap entries compare exactly."""

    def key(s: PageSizes) -> StepKey:
        delta = s.entry
        ratio = float("inf") if delta <= 0 else score(s.page, mode, 0.0, 0) / delta
        return (-ratio, s.tie, -s.levels[0], s.page.page_id, s.levels[0])

    return key
