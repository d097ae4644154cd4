"""What the engine holds in memory for one session, how it is loaded and saved, and the input errors it reports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ClawVMError
from ..faults import FaultObserver
from ..page_table import PageTable
from ..pages import Fidelity, Fields, Page, PageType, Pin, Provenance
from ..store.base import SessionRecord, ToolCall
from .runtime import Runtime

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # \Z: "$" would accept a trailing newline
PROJECT_ID_RE = SESSION_ID_RE


class EngineError(ClawVMError):
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


@dataclass(frozen=True, slots=True)
class SavedState:
    """The engine-owned part of a session record, decoded: what a reader such as ``inspect`` may show."""

    recency: dict[str, float]
    after_boundary: bool
    duplicate_signature: int
    hits: int
    physical_insufficiency: int

    @classmethod
    def of(cls, record: SessionRecord) -> SavedState:
        saved = record.state
        raw_recency = saved.get("recency", {})
        recency = {str(k): float(v) for k, v in raw_recency.items()} if isinstance(raw_recency, dict) else {}
        raw = saved.get("counters", {})
        counters: dict[str, Any] = raw if isinstance(raw, dict) else {}
        return cls(
            recency=recency,
            after_boundary=bool(saved.get("after_boundary", False)),
            duplicate_signature=_int(counters.get("duplicate_signature", 0)),
            hits=_int(counters.get("hits", 0)),
            physical_insufficiency=_int(counters.get("physical_insufficiency", 0)),
        )


def _int(value: object) -> int:
    """A saved counter, read leniently: a hand-edited or foreign blob shows as 0, never as an error."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return int(value)
    except ValueError:
        return 0


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
    # trace-given utilities (replay only): applied over every copy of the page this cache installs
    utilities: dict[str, tuple[float | None, float | None]] = field(default_factory=lambda: {})
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

    def namespaces(self, project_readable: bool) -> list[str]:
        return [self.session_ns, self.project_ns] if project_readable else [self.session_ns]


async def load(rt: Runtime, record: SessionRecord) -> SessionState:
    """A session's cache built from the store: pages of its namespaces, tool calls, faults and saved counters."""
    state = SessionState(record)
    for ns, page in await rt.store.load_pages(state.namespaces(rt.config.can_read_project(record.project_id))):
        state.pages[page.page_id] = page
        state.namespace[page.page_id] = ns
    for call in await rt.store.tool_calls(record.session_id):
        state.calls[call.signature] = call
        state.call_ids.add(call.call_id)
    saved = SavedState.of(record)
    state.recency = saved.recency
    state.after_boundary = saved.after_boundary
    state.observer.restore(
        await rt.store.faults(record.session_id),
        saved.duplicate_signature,
        saved.hits,
        saved.physical_insufficiency,
    )
    return state


async def save(rt: Runtime, state: SessionState) -> None:
    obs = state.observer
    state.record.state = {
        "recency": {k: round(v, 9) for k, v in sorted(state.recency.items())},
        "after_boundary": state.after_boundary,
        "counters": {
            "duplicate_signature": obs.duplicate_signature,
            "hits": obs.hits,
            "physical_insufficiency": obs.physical_insufficiency,
        },
    }
    await rt.store.put_session(state.record)


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
