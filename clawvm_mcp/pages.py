"""Typed pages and the per-type policies that say how far each may degrade (paper Table 1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from typing import Literal, get_args

PageType = Literal["bootstrap", "constraint", "plan", "preference", "evidence", "conversation"]
Scope = Literal["session", "project"]
Pin = Literal["hard", "soft", "none"]
Source = Literal["user", "tool", "model", "harness", "import"]
FidelityName = Literal["none", "pointer", "structured", "compressed", "full"]

PAGE_TYPES: tuple[PageType, ...] = get_args(PageType)
SCOPES: tuple[Scope, ...] = get_args(Scope)
PINS: tuple[Pin, ...] = get_args(Pin)
SOURCES: tuple[Source, ...] = get_args(Source)
PAGE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,127}\Z")  # \Z: "$" would accept a trailing newline
MAX_PAGE_BYTES = 64 * 1024


class Fidelity(IntEnum):
    """Ordered so that comparisons read as the design states them: none < pointer < ... < full."""

    NONE = 0
    POINTER = 1
    STRUCTURED = 2
    COMPRESSED = 3
    FULL = 4

    @property
    def label(self) -> FidelityName:
        return _LABELS[self]

    @classmethod
    def parse(cls, name: str) -> Fidelity:
        level = _BY_LABEL.get(name)  # the stored and documented spelling: a lookup (five per page loaded)
        if level is not None:
            return level
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"Unknown fidelity {name!r}; use one of none, pointer, structured, compressed, full"
            ) from None


_LABELS: dict[Fidelity, FidelityName] = {
    Fidelity.NONE: "none",
    Fidelity.POINTER: "pointer",
    Fidelity.STRUCTURED: "structured",
    Fidelity.COMPRESSED: "compressed",
    Fidelity.FULL: "full",
}
_BY_LABEL: dict[str, Fidelity] = {label: level for level, label in _LABELS.items()}
STORED_LEVELS: tuple[Fidelity, ...] = (Fidelity.POINTER, Fidelity.STRUCTURED, Fidelity.COMPRESSED, Fidelity.FULL)

FieldKind = Literal["str", "list"]


@dataclass(frozen=True, slots=True)
class TypePolicy:
    min_fidelity: Fidelity
    default_pin: Pin
    default_scope: Scope
    path: tuple[Fidelity, ...]  # degradation path, highest first; levels a page of this type may take
    fields: dict[str, FieldKind]
    floor_fields: tuple[str, ...]  # structured fields the floor cannot do without
    base_utility: float
    recompute_cost: float
    priority: int  # phase-1 install order and prompt order: bootstrap > constraint > other


_F, _C, _S, _P = Fidelity.FULL, Fidelity.COMPRESSED, Fidelity.STRUCTURED, Fidelity.POINTER
TYPE_POLICIES: dict[PageType, TypePolicy] = {
    "bootstrap": TypePolicy(
        _S, "hard", "project", (_F, _S), {"title": "str", "rules": "list"}, ("rules",), 9.0, 10.0, 2
    ),
    "constraint": TypePolicy(
        _S, "hard", "session", (_F, _S), {"rule": "str", "applies_to": "str"}, ("rule",), 7.0, 8.0, 1
    ),
    "plan": TypePolicy(
        _S,
        "none",
        "session",
        (_F, _S, _P),
        {"goal": "str", "current_step": "str", "steps_done": "list", "steps_left": "list"},
        ("goal", "current_step"),
        6.0,
        6.0,
        0,
    ),
    "preference": TypePolicy(
        _P, "none", "project", (_F, _C, _S, _P), {"key": "str", "value": "str", "scope_note": "str"}, (), 4.0, 3.0, 0
    ),
    "evidence": TypePolicy(
        _P,
        "soft",
        "session",
        (_F, _C, _S, _P),
        {"tool": "str", "args_digest": "str", "summary": "str", "paths": "list"},
        (),
        5.0,
        8.0,
        0,
    ),
    "conversation": TypePolicy(
        _P,
        "none",
        "session",
        (_F, _C, _S, _P),
        {"span_id": "str", "role": "str", "started_at": "str", "ended_at": "str", "gist": "str"},
        (),
        2.0,
        2.0,
        0,
    ),
}
PROMPT_ORDER: dict[PageType, int] = {t: i for i, t in enumerate(PAGE_TYPES)}
PIN_RANK: dict[Pin, int] = {"hard": 2, "soft": 1, "none": 0}

Fields = dict[str, str | list[str]]


@lru_cache(maxsize=64)
def levels_for(page_type: PageType, min_fidelity: Fidelity) -> tuple[Fidelity, ...]:
    """A type's degradation path cut at a floor, lowest first; computed once per (type, floor), not per page."""
    return tuple(sorted(lv for lv in TYPE_POLICIES[page_type].path if lv >= min_fidelity))


@dataclass(frozen=True, slots=True)
class Provenance:
    source: Source
    ref: str
    turn: int


@dataclass(frozen=True, slots=True)
class Representation:
    text: str
    tokens: int


@dataclass(slots=True)
class Page:
    """One page as the session sees it: committed state, plus any staged update applied (then ``dirty``)."""

    page_id: str
    type: PageType
    scope: Scope
    pin: Pin
    min_fidelity: Fidelity
    version: int
    provenance: Provenance
    content: str
    fields: Fields
    representations: dict[Fidelity, Representation]
    recompute_cost: float
    base_utility: float
    created_turn: int
    last_access_turn: int
    title: str = ""
    dirty: bool = False
    deleted: bool = False
    explicit_fields: Fields = field(default_factory=lambda: {})  # caller-supplied; the rest derive from content

    @property
    def policy(self) -> TypePolicy:
        return TYPE_POLICIES[self.type]

    def levels(self) -> tuple[Fidelity, ...]:
        """Levels this page may be shown at, lowest first: its degradation path cut at its floor."""
        return levels_for(self.type, self.min_fidelity)

    def tokens_at(self, level: Fidelity) -> int:
        return 0 if level is Fidelity.NONE else self.representations[level].tokens

    def token_counts(self) -> tuple[int, ...]:
        """Tokens at every level, indexed NONE .. FULL (0 where the page has no such form): one call where the
        page table would otherwise ask level by level, for each of 100,000 pages it indexes."""
        reps = self.representations
        return (0, *(reps[lv].tokens if lv in reps else 0 for lv in STORED_LEVELS))

    def text_at(self, level: Fidelity) -> str:
        return "" if level is Fidelity.NONE else self.representations[level].text

    def at_least(self, level: Fidelity) -> Fidelity:
        """The cheapest level on this page's path at or above ``level`` (and its floor); ties go to the higher.

        Sizes are not monotone in fidelity (a short page's structured form can outgrow its full text), so the
        floor is met by whichever admissible form costs least, not by the lowest one.
        """
        admissible = [lv for lv in self.levels() if lv >= level] or [self.levels()[-1]]
        return min(admissible, key=lambda lv: (self.tokens_at(lv), -lv))
