"""The session's page table, indexed for the selector as pages change rather than rebuilt every turn.

A turn touches a handful of pages (a write, a demand or two) while the table may hold thousands, so what the
selector needs of every page (its levels and their sizes, its sort keys, the budget totals of the common outcomes)
is computed once per page version here, on the write path, and kept in running sums and sorted lists. The
selector then spends per turn in proportion to what it installs, not to the table's size.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, MutableMapping, Sequence, ValuesView
from dataclasses import dataclass
from functools import lru_cache

from .cost_order import CostOrder
from .gc_pause import gc_paused
from .pages import PIN_RANK, TYPE_POLICIES, Fidelity, Page, PageType, levels_for

NONE = Fidelity.NONE
POINTER = Fidelity.POINTER
FULL = Fidelity.FULL
_REVERSED_TERMINATOR = "\U0010ffff"
PrefetchKey = tuple[float, float, str]  # recompute cost and utility negated, page_id
StepKey = tuple[float, str, int, str, Fidelity]  # the upgrade heap's order: -ratio, tie, -level, page_id, level


def reversed_key(page_id: str) -> str:
    """A string that sorts in the reverse order of ``page_id`` (the upgrade heap's tie-break: later id first).

    Each character is mirrored below U+10FFFF and a terminator above them all is appended, so a proper prefix
    sorts after its extensions, exactly reversing ordinary string order. Valid page ids are ASCII: one translate.
    """
    if page_id.isascii():
        return page_id.translate(_MIRROR) + _REVERSED_TERMINATOR
    return "".join([chr(0x10FFFE - ord(ch)) for ch in page_id]) + _REVERSED_TERMINATOR


_MIRROR = {i: chr(0x10FFFE - i) for i in range(128)}


@dataclass(slots=True, eq=False)
class PageSizes:
    """What the selector asks of one page version, answered once. Levels are the page's path cut at its floor.

    Never changed after it is built (a page's new version gets new sizes), but not ``frozen``: a frozen dataclass
    sets each field through ``object.__setattr__``, which made building the sizes of a 100,000-page table 5x slower.
    """

    page: Page
    levels: tuple[Fidelity, ...]  # lowest first
    # indexed by level (NONE = 0 .. FULL = 4); levels off the page's path read 0 / None and are never asked for
    tokens: tuple[int, ...]  # NONE -> 0
    next_level: tuple[Fidelity | None, ...]  # the level an upgrade from here goes to
    least_from: tuple[int, ...]  # fewest tokens at this level or above (NONE -> 0): what it can give back to
    most_from: tuple[int, ...]  # most tokens at this level or above (NONE -> the largest level)
    floor: Fidelity  # the cheapest admissible level for the page's own floor
    pointer: int | None  # tokens at pointer, if the page may be shown as one
    full: int
    entry: int  # tokens of the lowest level: the first upgrade step of a page not shown
    priority: tuple[int, int, float, str]  # phase-1 order: pin, type, utility descending; page_id ascending
    prefetch: PrefetchKey  # pointer-prefetch order: recompute cost, utility descending; page_id
    tie: str  # reversed_key(page_id)
    hard: bool

    @classmethod
    def of(cls, page: Page) -> PageSizes:
        levels, descending, next_level = _shape(page.type, page.min_fidelity)
        counts = page.token_counts()  # a lazily loaded page answers from its head, without decoding
        tokens = [0] * 5  # levels off the page's path read 0
        for lv in levels:
            tokens[lv] = counts[lv]
        least_from, most_from = [0] * 5, [0] * 5
        least = most = tokens[levels[-1]]
        for lv in descending:  # plain comparisons: min()/max() calls were a fifth of building a table
            n = tokens[lv]
            if n < least:
                least = n
            if n > most:
                most = n
            least_from[lv] = least
            most_from[lv] = most
        most_from[NONE] = most
        pid, utility = page.page_id, page.base_utility
        pointer = tokens[POINTER] if POINTER in levels else None
        return cls(
            page,
            levels,
            tuple(tokens),
            next_level,
            tuple(least_from),
            tuple(most_from),
            _cheapest(levels, tokens, page.min_fidelity),
            pointer,
            tokens[levels[-1]],
            tokens[levels[0]],
            (-PIN_RANK[page.pin], -TYPE_POLICIES[page.type].priority, -utility, pid),
            (-page.recompute_cost, -utility, pid),
            reversed_key(pid),
            page.pin == "hard",
        )

    def at_least(self, level: Fidelity) -> Fidelity:
        """``Page.at_least`` from the counted sizes: the cheapest level at or above ``level``, ties higher."""
        return _cheapest(self.levels, self.tokens, level)

    @property
    def free_need(self) -> int:
        """Tokens from where phase 1b leaves an unrequired page (pointer, or not shown) to its largest level."""
        return self.most_from[POINTER] - self.tokens[POINTER] if self.pointer is not None else self.most_from[NONE]


@lru_cache(maxsize=64)
def _shape(
    page_type: PageType, floor: Fidelity
) -> tuple[tuple[Fidelity, ...], tuple[Fidelity, ...], tuple[Fidelity | None, ...]]:
    """What every page of one type and floor shares: its levels (lowest first), the same highest first, and the
    level an upgrade from each level goes to (indexed NONE .. FULL)."""
    levels = levels_for(page_type, floor)
    next_level: list[Fidelity | None] = [None] * 5
    after: Fidelity | None = None
    for lv in reversed(levels):
        next_level[lv] = after
        after = lv
    next_level[NONE] = levels[0]
    return levels, tuple(reversed(levels)), tuple(next_level)


def _cheapest(levels: tuple[Fidelity, ...], tokens: Sequence[int], level: Fidelity) -> Fidelity:
    best: Fidelity | None = None
    for lv in levels:  # lowest first, so "<=" lets a tie go to the higher level
        if lv >= level and (best is None or tokens[lv] <= tokens[best]):
            best = lv
    return levels[-1] if best is None else best


class PageTable(MutableMapping[str, Page]):
    """page_id -> Page, as the session sees it (deleted pages included), plus the selector's index of live ones.

    Pages are replaced, never mutated in the fields the index reads (type, pin, floor, representations, deleted,
    utility, recompute cost): a write installs a new Page object, and that is what keeps the index true.
    """

    __slots__ = (
        "_pages",
        "sizes",
        "hard",
        "sum_full",
        "sum_pointer",
        "sum_free_need",
        "sum_most",
        "prefetch_order",
        "generation",
        "_streams",
    )

    def __init__(self, pages: Iterable[Page] = ()) -> None:
        self._pages: dict[str, Page] = {}
        self.sizes: dict[str, PageSizes] = {}  # live pages only
        self.hard: set[str] = set()
        self.sum_full = 0  # every live page at its largest level: the "everything fits" outcome
        self.sum_pointer = 0  # every pointer-able page at pointer
        self.sum_free_need = 0  # sum of PageSizes.free_need
        self.sum_most = 0  # every live page from not shown to its largest level
        self.prefetch_order: CostOrder[PrefetchKey] = CostOrder()  # pointer-able pages by phase-1b order
        self.generation = 0  # counts changes to the index: what a selection checks before it reads the table again
        self._streams: dict[str, Stream] = {}
        self._load(pages)

    def _load(self, pages: Iterable[Page]) -> None:
        """An empty table filled at once: the same index ``__setitem__`` keeps, in bulk (sums summed, the order
        sorted once). Opening a 100,000-page session builds its table here."""
        with gc_paused():  # a few objects per page, none in a cycle (gc_pause.py)
            for page in pages:  # a page listed twice: the later one, as assigning them in turn would keep
                self._pages[page.page_id] = page
            live = [PageSizes.of(p) for p in self._pages.values() if not p.deleted]
            self.sizes = {s.page.page_id: s for s in live}
            self.hard = {pid for pid, s in self.sizes.items() if s.hard}
            self.sum_full = sum([s.full for s in live])
            self.sum_free_need = sum([s.free_need for s in live])
            self.sum_most = sum([s.most_from[NONE] for s in live])
            pointers = [(s.prefetch, s.pointer) for s in live if s.pointer is not None]
            self.sum_pointer = sum([cost for _, cost in pointers])
            self.prefetch_order = CostOrder.of(pointers)
            self.generation += len(live)

    # ---------------------------------------------------------------- mapping

    def __getitem__(self, page_id: str) -> Page:
        return self._pages[page_id]

    def __setitem__(self, page_id: str, page: Page) -> None:
        if page.page_id != page_id:
            raise KeyError(f"page {page.page_id!r} stored under {page_id!r}")
        if page_id in self._pages:  # a new page has nothing to unindex
            self._unindex(page_id)
        self._pages[page_id] = page
        if not page.deleted:
            self._index(PageSizes.of(page))

    def __delitem__(self, page_id: str) -> None:
        del self._pages[page_id]
        self._unindex(page_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._pages)

    def __len__(self) -> int:
        return len(self._pages)

    def __contains__(self, page_id: object) -> bool:
        return page_id in self._pages

    def keys(self) -> KeysView[str]:
        return self._pages.keys()

    def values(self) -> ValuesView[Page]:
        return self._pages.values()

    def items(self) -> ItemsView[str, Page]:
        return self._pages.items()

    # ---------------------------------------------------------------- index

    def _index(self, s: PageSizes) -> None:
        pid = s.page.page_id
        self.generation += 1
        self.sizes[pid] = s
        if s.hard:
            self.hard.add(pid)
        self.sum_full += s.full
        self.sum_free_need += s.free_need
        self.sum_most += s.most_from[NONE]
        if s.pointer is not None:
            self.sum_pointer += s.pointer
            self.prefetch_order.add(s.prefetch, s.pointer)
        for stream in self._streams.values():
            stream.add(s)

    def _unindex(self, page_id: str) -> None:
        s = self.sizes.pop(page_id, None)
        if s is None:
            return
        self.generation += 1
        self.hard.discard(page_id)
        self.sum_full -= s.full
        self.sum_free_need -= s.free_need
        self.sum_most -= s.most_from[NONE]
        if s.pointer is not None:
            self.sum_pointer -= s.pointer
            self.prefetch_order.remove(s.prefetch)
        for stream in self._streams.values():
            stream.remove(page_id)

    def stream(self, name: str, key: Callable[[PageSizes], StepKey]) -> Stream:
        """Every live page's first upgrade step, ordered by ``key`` and kept so from now on. The selector asks for
        one per upgrade mode; the key must depend on the page version alone."""
        stream = self._streams.get(name)
        if stream is None:
            with gc_paused():  # a key tuple per page, none in a cycle (gc_pause.py)
                stream = self._streams[name] = Stream(key, self.sizes.values())
        return stream


class Stream:
    """Pages' first upgrade steps as the upgrade heap would order them when nothing but the page decides."""

    __slots__ = ("order", "_key", "_keys")

    def __init__(self, key: Callable[[PageSizes], StepKey], pages: Iterable[PageSizes] = ()) -> None:
        self._key = key
        self._keys: dict[str, StepKey] = {}  # what each page was filed under, to remove it after it changed
        entries: list[tuple[StepKey, int]] = []
        for s in pages:
            step = self._keys[s.page.page_id] = key(s)
            entries.append((step, s.entry))
        self.order: CostOrder[StepKey] = CostOrder.of(entries)  # keys hold the page_id: distinct

    def add(self, s: PageSizes) -> None:
        key = self._keys[s.page.page_id] = self._key(s)
        self.order.add(key, s.entry)

    def remove(self, page_id: str) -> None:
        self.order.remove(self._keys.pop(page_id))
