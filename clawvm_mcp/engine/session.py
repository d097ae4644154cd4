"""What the engine holds in memory for one session, and the input errors it reports to callers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..faults import FaultObserver
from ..page_table import PageTable
from ..pages import Fidelity, Fields, Page, PageType, Pin, Provenance
from ..store.base import SessionRecord, ToolCall

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # \Z: "$" would accept a trailing newline
PROJECT_ID_RE = SESSION_ID_RE


class EngineError(Exception):
    """A request the caller must fix; the message says what to do next and is shown to the model verbatim."""


@dataclass(frozen=True, slots=True)
class PageInput:
    page_id: str
    content: str
    type: PageType = "bootstrap"
    fields: Fields | None = None
    pin: Pin | None = None
    scope: Literal["session", "project"] | None = None
    provenance: Provenance | None = None


@dataclass(slots=True)
class SessionState:
    record: SessionRecord
    pages: PageTable = field(default_factory=PageTable)
    namespace: dict[str, str] = field(default_factory=lambda: {})
    staged: dict[str, list[int]] = field(default_factory=lambda: {})  # page_id -> pending journal txn ids
    staged_base: dict[str, int] = field(default_factory=lambda: {})  # page_id -> committed version when staged
    calls: dict[str, ToolCall] = field(default_factory=lambda: {})  # signature -> latest call
    call_ids: set[str] = field(default_factory=lambda: set())
    recency: dict[str, float] = field(default_factory=lambda: {})
    resident: dict[str, Fidelity] = field(default_factory=lambda: {})
    evicted: set[str] = field(default_factory=lambda: set())
    turn_demands: set[str] = field(default_factory=lambda: set())
    after_boundary: bool = False
    unreported_settled: tuple[int, int] = (0, 0)  # settled on an implicit resume; the next lifecycle reports them
    observer: FaultObserver = field(default_factory=FaultObserver)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def turn(self) -> int:
        return self.record.turn

    @property
    def session_ns(self) -> str:
        return f"s:{self.record.session_id}"

    @property
    def project_ns(self) -> str:
        return f"p:{self.record.project_id}"

    def live(self) -> list[Page]:
        return [s.page for s in self.pages.sizes.values()]


def require_unicode(label: str, value: object) -> None:
    """Refuse text SQLite cannot store (a lone surrogate such as a JSON "\\ud800" escape) before anything is
    staged: it would otherwise fail deep in the store as an unexpected error the model cannot read."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EngineError(
                f"{label} is not valid Unicode: lone surrogate U+{ord(value[exc.start]):04X} at position {exc.start}; "
                "send UTF-8 text"
            ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            require_unicode(label, key)
            require_unicode(label, item)
    elif isinstance(value, list | tuple):
        for item in value:  # pyright: ignore[reportUnknownVariableType]
            require_unicode(label, item)
