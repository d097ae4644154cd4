"""A sorted sequence of keys, each with a token cost, that finds the next key whose cost fits a limit.

The selector's greedy passes walk pages in a fixed order and take each one that still fits. Once the budget is
nearly spent, almost nothing fits, and a plain walk would visit every remaining page only to skip it. Keys are
kept in blocks that know their cheapest cost, so a walk skips a whole block that cannot fit in one comparison.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Ordered)
BLOCK = 64  # keys per block: a split makes two of this size
Position = tuple[int, int]  # (block, index in block)


class CostOrder(Generic[K]):
    __slots__ = ("_keys", "_costs", "_mins", "_firsts", "_block")

    def __init__(self, block: int | None = None) -> None:
        self._keys: list[list[K]] = []
        self._costs: list[list[int]] = []
        self._mins: list[int] = []  # cheapest cost in each block
        self._firsts: list[K] = []  # first key of each block, to find a key's block by bisection
        self._block = block or BLOCK

    @classmethod
    def of(cls, items: Iterable[tuple[K, int]], block: int | None = None) -> CostOrder[K]:
        """An order holding ``items`` (distinct keys, each with its cost), built by one sort: adding 100,000 keys
        one by one, each bisected into its block, cost six times as much."""
        order: CostOrder[K] = cls(block)
        pairs = sorted(items)  # keys are distinct, so the costs are never compared
        size = order._block
        for at in range(0, len(pairs), size):
            chunk = pairs[at : at + size]
            keys = [key for key, _ in chunk]
            costs = [cost for _, cost in chunk]
            order._keys.append(keys)
            order._costs.append(costs)
            order._mins.append(min(costs))
            order._firsts.append(keys[0])
        return order

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._keys)

    def keys(self) -> list[K]:
        return [key for keys in self._keys for key in keys]

    def blocks(self) -> Iterator[tuple[list[K], list[int], int]]:
        """Keys and costs block by block, in order, each with its cheapest cost (at most that: a bound)."""
        return zip(self._keys, self._costs, self._mins, strict=True)

    def add(self, key: K, cost: int) -> None:
        if not self._keys:
            self._keys.append([key])
            self._costs.append([cost])
            self._mins.append(cost)
            self._firsts.append(key)
            return
        b = max(0, bisect_right(self._firsts, key) - 1)
        keys, costs = self._keys[b], self._costs[b]
        i = bisect_left(keys, key)
        keys.insert(i, key)
        costs.insert(i, cost)
        if cost < self._mins[b]:
            self._mins[b] = cost
        if i == 0:
            self._firsts[b] = key
        if len(keys) > 2 * self._block:  # split in halves, so walks and inserts stay short
            half = len(keys) // 2
            self._keys[b + 1 : b + 1] = [keys[half:]]
            self._costs[b + 1 : b + 1] = [costs[half:]]
            del keys[half:], costs[half:]
            self._mins[b : b + 1] = [min(costs), min(self._costs[b + 1])]
            self._firsts.insert(b + 1, self._keys[b + 1][0])

    def remove(self, key: K) -> None:
        b = bisect_right(self._firsts, key) - 1
        keys = self._keys[b] if b >= 0 else []
        i = bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            raise KeyError(key)
        del keys[i]
        cost = self._costs[b].pop(i)
        if not keys:
            del self._keys[b], self._costs[b], self._mins[b], self._firsts[b]
            return
        if i == 0:
            self._firsts[b] = keys[0]
        if cost == self._mins[b]:
            self._mins[b] = min(self._costs[b])

    def start(self) -> Position:
        return (0, 0)

    def end(self) -> Position:
        return (len(self._keys), 0)

    def locate(self, key: K) -> Position:
        """The position of the first key at or after ``key``."""
        b = max(0, bisect_right(self._firsts, key) - 1)
        if b >= len(self._keys):
            return (len(self._keys), 0)
        i = bisect_left(self._keys[b], key)
        return (b + 1, 0) if i == len(self._keys[b]) else (b, i)

    def next_within(self, at: Position, limit: int) -> Position | None:
        """The first position at or after ``at`` whose cost is at most ``limit``, or None."""
        b, i = at
        mins, all_costs = self._mins, self._costs
        while b < len(all_costs):
            if mins[b] <= limit:
                costs = all_costs[b]
                for j in range(i, len(costs)):
                    if costs[j] <= limit:
                        return (b, j)
            b, i = b + 1, 0
        return None

    def at(self, pos: Position) -> tuple[K, int]:
        b, i = pos
        return self._keys[b][i], self._costs[b][i]

    def after(self, pos: Position) -> Position:
        b, i = pos
        return (b, i + 1) if i + 1 < len(self._keys[b]) else (b + 1, 0)
