"""FaultObserver: the six policy-controllable faults, duplicate-signature alerts, hits and thrash (DESIGN 5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

FaultKind = Literal[
    "refetch", "duplicate_tool", "post_compaction_bootstrap", "flush_miss", "silent_recall", "pinned_invariant_miss"
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)


@dataclass(frozen=True, slots=True)
class FaultEvent:
    kind: FaultKind
    turn: int
    subject: str  # the page or tool signature concerned
    detail: str = ""


def thrash(faults: int, duplicate_signature: int, hits: int) -> float:
    """DESIGN section 5: (faults + duplicate_signature alerts) / (hits + 1)."""
    return (faults + duplicate_signature) / (hits + 1)


@dataclass(slots=True)
class FaultObserver:
    """Counts what a policy could have prevented; physical insufficiency is tallied apart, never as a fault."""

    events: list[FaultEvent] = field(default_factory=lambda: [])
    counts: dict[FaultKind, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    duplicate_signature: int = 0
    hits: int = 0
    physical_insufficiency: int = 0

    def fault(self, kind: FaultKind, turn: int, subject: str, detail: str = "") -> FaultEvent:
        event = FaultEvent(kind, turn, subject, detail)
        self.events.append(event)
        self.counts[kind] += 1
        return event

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def thrash(self) -> float:
        return thrash(self.total, self.duplicate_signature, self.hits)

    def restore(self, events: list[FaultEvent], duplicate_signature: int, hits: int, insufficiency: int) -> None:
        for e in events:
            self.events.append(e)
            self.counts[e.kind] += 1
        self.duplicate_signature = duplicate_signature
        self.hits = hits
        self.physical_insufficiency = insufficiency
