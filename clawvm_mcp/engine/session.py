"""What the engine holds in memory for one session, how it is loaded and saved, and the input errors it reports."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..errors import ClawVMError
from ..faults import FaultObserver
from ..gc_pause import gc_paused
from ..page_table import PageTable
from ..pages import Fidelity, Fields, Page, PageType, Pin, Provenance
from ..selector import decay_recency
from ..store.base import SessionCounters, SessionRecord, ToolCall
from .runtime import Runtime

SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")  # \Z: "$" would accept a trailing newline
PROJECT_ID_RE = SESSION_ID_RE


class EngineError(ClawVMError):
    """A request the caller must fix; the message says what to do next and is shown to the model verbatim."""


def session_namespace(session_id: str) -> str:
    """Where a session's own pages live in the store."""
    return f"s:{session_id}"


def project_namespace(project_id: str) -> str:
    """Where a project's shared pages live in the store."""
    return f"p:{project_id}"


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
        counters = record.counters
        return cls(
            recency=recency,
            after_boundary=bool(saved.get("after_boundary", False)),
            duplicate_signature=counters.duplicate_signature,
            hits=counters.hits,
            physical_insufficiency=counters.physical_insufficiency,
        )


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
    # trace-given utilities (replay only): applied over every copy of the page this cache installs
    utilities: dict[str, tuple[float | None, float | None]] = field(default_factory=lambda: {})
    observer: FaultObserver = field(default_factory=FaultObserver)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # coherence with the store (engine/coherence.py): what this cache last saw of it
    data_version: int | None = None  # the store's data_version when last refreshed (None: never)
    synced_seq: int = 0  # the store's change sequence when last refreshed
    stale: bool = True  # refresh before the next answer: another session of this process wrote, or never synced
    saved: SessionCounters = field(default_factory=SessionCounters)  # the store's counters when last synced

    @property
    def session_id(self) -> str:
        return self.record.session_id

    @property
    def turn(self) -> int:
        return self.record.turn

    @property
    def session_ns(self) -> str:
        return session_namespace(self.record.session_id)

    @property
    def project_ns(self) -> str:
        return project_namespace(self.record.project_id)

    def live(self) -> list[Page]:
        return [s.page for s in self.pages.sizes.values()]

    def namespaces(self, project_readable: bool) -> list[str]:
        return [self.session_ns, self.project_ns] if project_readable else [self.session_ns]


async def load(rt: Runtime, record: SessionRecord) -> SessionState:
    """A session's cache built from the store: pages of its namespaces, tool calls, faults and saved counters. The
    change sequence is read first, so whatever moves while this loads is refreshed again, never missed."""
    seq = await rt.store.change_seq()
    version = await rt.store.data_version()
    state = SessionState(record, synced_seq=seq, data_version=version, stale=False)
    with gc_paused():  # millions of acyclic objects: collections during the load cost a third of it, freed nothing
        loaded = await rt.store.load_pages(state.namespaces(rt.config.can_read_project(record.project_id)))
        state.pages = PageTable(page for _, page in loaded)  # indexed in bulk
        state.namespace = {page.page_id: ns for ns, page in loaded}
    load_calls(state, await rt.store.tool_calls(record.session_id))
    saved = SavedState.of(record)
    state.recency = saved.recency
    state.after_boundary = saved.after_boundary
    state.saved = record.counters
    state.observer.restore(
        await rt.store.faults(record.session_id),
        saved.duplicate_signature,
        saved.hits,
        saved.physical_insufficiency,
    )
    return state


def load_calls(state: SessionState, calls: list[ToolCall]) -> None:
    """The session's tool calls as the store has them: the latest call per signature, and every call id."""
    state.calls = {call.signature: call for call in calls}
    state.call_ids = {call.call_id for call in calls}


def unsaved(state: SessionState, boundary: bool = False) -> SessionCounters:
    """What this process added to the session's counters since it last synced them with the store."""
    obs, saved = state.observer, state.saved
    return SessionCounters(
        obs.hits - saved.hits,
        obs.duplicate_signature - saved.duplicate_signature,
        obs.physical_insufficiency - saved.physical_insufficiency,
        1 if boundary else 0,
    )


def take_counters(state: SessionState, stored: SessionCounters) -> None:
    """The store's counters plus what this process has not saved yet (so no process's counts are lost)."""
    local = unsaved(state)
    obs = state.observer
    obs.hits = stored.hits + local.hits
    obs.duplicate_signature = stored.duplicate_signature + local.duplicate_signature
    obs.physical_insufficiency = stored.physical_insufficiency + local.physical_insufficiency
    state.saved = stored


async def save(rt: Runtime, state: SessionState, boundary: bool = False) -> None:
    """Write the session's record; counters go as increments, a compaction/reset/end counts as one boundary."""
    state.record.state = {
        "recency": {k: round(v, 9) for k, v in sorted(state.recency.items())},
        "after_boundary": state.after_boundary,
    }
    stored = await rt.store.save_session(state.record, unsaved(state, boundary))
    obs = state.observer  # our increments are in the stored totals now, with every other process's
    obs.hits = stored.counters.hits
    obs.duplicate_signature = stored.counters.duplicate_signature
    obs.physical_insufficiency = stored.counters.physical_insufficiency
    state.saved = state.record.counters = stored.counters
    advance_turn(state, stored.turn)  # another process may have ended turns meanwhile


def advance_turn(state: SessionState, turn: int) -> None:
    """Recency decays once per turn passed; pages demanded in the turn just ended gain +1."""
    while state.record.turn < turn:
        decay_recency(state.recency, sorted(state.turn_demands))
        state.turn_demands.clear()
        state.record.turn += 1


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
