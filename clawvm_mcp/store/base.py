"""The narrow storage seam: everything the engine persists goes through ``Store``, so a server database can
replace the embedded SQLite file without touching the domain."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..errors import ClawVMError
from ..faults import FaultEvent
from ..pages import Fidelity, Page, Provenance, Representation

JournalStatus = Literal["staged", "validated", "committed", "rejected", "lost"]


class StoreError(ClawVMError):
    """The backend failed (I/O, corruption, lock timeout): callers report backend_error, never an empty result."""


class StoreBusy(StoreError):
    """The store could not take its write lock within the bounded wait: nothing changed, and a retry may succeed."""


class StoreUnavailable(StoreError):
    """The store cannot take writes at all (disk full, read-only, its file deleted or replaced): say so, write
    nothing, and do not pretend a retry in a moment would help."""


@dataclass(slots=True)
class SessionRecord:
    session_id: str
    principal: str
    project_id: str
    budget: int
    turn: int = 0
    ended: bool = False
    state: dict[str, Any] = field(default_factory=lambda: {})  # engine-owned JSON: recency, flags
    counters: SessionCounters = field(default_factory=lambda: SessionCounters())
    seq: int = 0  # the change sequence when anything of this session (row, journal, tool calls, faults) last moved


@dataclass(frozen=True, slots=True)
class SessionCounters:
    """Per-session tallies every process adds to (never overwrites): a save carries the increments since the last."""

    hits: int = 0
    duplicate_signature: int = 0
    physical_insufficiency: int = 0
    boundaries: int = 0  # compactions, resets and session ends so far: a process sees another's boundary by it

    def plus(self, other: SessionCounters) -> SessionCounters:
        return SessionCounters(
            self.hits + other.hits,
            self.duplicate_signature + other.duplicate_signature,
            self.physical_insufficiency + other.physical_insufficiency,
            self.boundaries + other.boundaries,
        )


@dataclass(frozen=True, slots=True)
class JournalEntry:
    session_id: str
    namespace: str
    page_id: str
    op: str
    status: JournalStatus
    commit_mode: str
    request: dict[str, object]
    turn: int
    reasons: list[dict[str, str]] = field(default_factory=lambda: [])
    version: int | None = None
    txn_id: int = 0


@dataclass(frozen=True, slots=True)
class ToolCall:
    session_id: str
    call_id: str
    signature: str
    tool: str
    args_json: str
    evidence_page_id: str
    turn: int
    has_result: bool


@dataclass(frozen=True, slots=True)
class PageCommit:
    """One page's new committed state (``page.version`` is ``expected_version + 1``) plus the journal rows it
    settles; ``new_entry`` is written in the same transaction."""

    namespace: str
    page: Page
    expected_version: int
    txn_ids: tuple[int, ...] = ()
    new_entry: JournalEntry | None = None


@dataclass(frozen=True, slots=True)
class Committed:
    """What a page commit settled: the page's new version and every journal row it committed, the new row last."""

    page_id: str
    version: int
    txn_ids: tuple[int, ...]
    entry_txn_id: int | None = None  # the row written for ``new_entry``, when there was one


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One ranked recall result: as much of the page as a result shows (decoding ten whole pages cost a recall more
    than ranking them), the namespace it was found in and its BM25 score (higher is better)."""

    namespace: str
    page_id: str
    type: str
    title: str
    pointer: str  # the page's stored pointer representation
    score: float
    matched: int  # how many of the query's distinct terms the page holds


@dataclass(frozen=True, slots=True)
class Rejection:
    """Staged rows of one page refused at a boundary, checked against the page version they were replayed on."""

    namespace: str
    page_id: str
    expected_version: int
    txn_ids: tuple[int, ...]
    reasons: tuple[dict[str, str], ...]


@dataclass(frozen=True, slots=True)
class Conflict:
    page_id: str
    current_version: int
    entry_txn_id: int | None = None  # the rejected row written for ``new_entry``, when there was one


class Store(Protocol):
    async def close(self) -> None: ...
    async def get_session(self, session_id: str) -> SessionRecord | None: ...
    async def claim_session(
        self, session_id: str, principal: str, project_id: str, budget: int | None
    ) -> tuple[SessionRecord, bool] | None:
        """Create the session for ``principal``, or resume it (``ended`` cleared, ``budget`` set when given) if
        ``principal`` owns it and ``project_id`` is "default" or its project: one conditional statement each, so two
        callers can never both own one id. Returns (record, created), or None when it is not this caller's."""
        ...

    async def save_session(self, record: SessionRecord, added: SessionCounters) -> SessionRecord:
        """Write the engine's view of the session; the turn never goes back and ``added`` is added to the stored
        counters, so processes sharing a session lose none of each other's counts. Returns the stored record."""
        ...

    async def data_version(self) -> int:
        """Changes when another connection (another process) committed anything since the last call; checks first
        that the database file is still the one opened."""
        ...

    async def change_seq(self) -> int:
        """The store's change sequence: it grows with every committed change of pages, sessions and tool calls."""
        ...

    async def pages_since(self, namespaces: list[str], seq: int) -> list[tuple[str, Page]]:
        """Pages of ``namespaces`` changed after ``seq`` (tombstones included), to refresh a cache."""
        ...

    async def load_pages(self, namespaces: list[str]) -> list[tuple[str, Page]]: ...
    async def get_page(self, namespace: str, page_id: str) -> Page | None: ...
    async def count_pages(self, namespace: str) -> int: ...
    async def stage(self, entry: JournalEntry) -> int: ...
    async def commit(
        self,
        writes: list[PageCommit],
        rejections: Sequence[Rejection] = (),
    ) -> tuple[list[Committed], list[Conflict]]:
        """In one transaction: commit each page that is still at its ``expected_version`` and whose ``txn_ids`` are
        all still pending (settled exactly once, whoever gets there), and mark each rejection's rows rejected if the
        page is still at its version. Anything else is a ``Conflict`` and changes nothing: the caller re-reads
        and tries again."""
        ...

    async def try_commit(self, write: PageCommit) -> Committed | None:
        """Commit one page if it is still at ``expected_version``, else write nothing and return None (a store may
        also return None when it cannot do this in one step): the caller then takes the checked way."""
        ...

    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None: ...
    async def pending(self, session_id: str) -> list[JournalEntry]: ...
    async def journal(self, session_id: str, limit: int) -> list[JournalEntry]: ...
    async def journal_counts(self, session_id: str) -> dict[str, int]: ...
    async def add_tool_call(self, call: ToolCall) -> None: ...
    async def tool_calls(self, session_id: str) -> list[ToolCall]: ...
    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None: ...
    async def faults(self, session_id: str) -> list[FaultEvent]: ...
    async def search(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """Live pages of ``namespaces`` holding any of ``terms`` (index tokens: store/search.py query_terms),
        ranked by BM25 best first, at most ``limit``."""
        ...

    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        """Ids of ``principal``'s sessions that have not ended and start with ``prefix``, in id order, at most
        ``limit`` of them: what a client may discover (resources/list, completion)."""
        ...


class ChangeEvents(Protocol):
    """What an open change feed delivers: a commit's change sequence, or None for a full revalidation."""

    async def receive(self) -> int | None: ...


@runtime_checkable
class ChangeFeed(Protocol):
    """A store that tells other processes of its commits (PostgreSQL LISTEN/NOTIFY), so they need not poll.

    While ``change_feed()`` is open, each value received is the sequence of a commit by any process, or None: the
    feed (re)connected and may have missed commits, so the consumer re-reads ``change_seq()`` and treats everything
    after the last sequence it saw as changed. Values may be coalesced or dropped when the consumer lags, never
    all of them: a consumer that re-reads ``change_seq()`` on each value misses nothing."""

    def change_feed(self) -> AbstractAsyncContextManager[ChangeEvents]: ...


class Row(Protocol):
    """A result row as both drivers give it (sqlite3.Row, asyncpg.Record): values by column name."""

    def __getitem__(self, key: str) -> Any: ...


def session_from_row(row: Row) -> SessionRecord:
    """A ``sessions`` row as a record; both SQL stores share the columns."""
    counters = SessionCounters(
        int(row["hits"]), int(row["duplicate_signature"]), int(row["physical_insufficiency"]), int(row["boundaries"])
    )
    return SessionRecord(
        row["session_id"],
        row["principal"],
        row["project_id"],
        row["budget"],
        row["turn"],
        bool(row["ended"]),
        json.loads(row["state"]),
        counters,
        int(row["seq"]),
    )


def entry_from_row(row: Row) -> JournalEntry:
    """A ``journal`` row as an entry; both SQL stores share the columns."""
    return JournalEntry(
        session_id=row["session_id"],
        namespace=row["namespace"],
        page_id=row["page_id"],
        op=row["op"],
        status=row["status"],
        commit_mode=row["commit_mode"],
        request=json.loads(row["request"]),
        turn=row["turn"],
        reasons=json.loads(row["reasons"]),
        version=row["version"],
        txn_id=int(row["txn_id"]),
    )


def conflict_reasons(page_id: str, expected: int, current: int) -> list[dict[str, str]]:
    """The journal's reason when a commit finds the page at another version than the write was validated on."""
    detail = f"page {page_id!r} changed underneath this write: expected v{expected}, current version is {current}"
    return [{"code": "DESTRUCTIVE_OP", "detail": detail}]


def page_to_json(page: Page) -> dict[str, object]:
    return {
        "page_id": page.page_id,
        "type": page.type,
        "scope": page.scope,
        "pin": page.pin,
        "min_fidelity": page.min_fidelity.label,
        "version": page.version,
        "provenance": {"source": page.provenance.source, "ref": page.provenance.ref, "turn": page.provenance.turn},
        "content": page.content,
        "fields": page.fields,
        "explicit_fields": page.explicit_fields,
        "representations": {lv.label: [r.text, r.tokens] for lv, r in page.representations.items()},
        "recompute_cost": page.recompute_cost,
        "base_utility": page.base_utility,
        "created_turn": page.created_turn,
        "last_access_turn": page.last_access_turn,
        "title": page.title,
        "deleted": page.deleted,
    }


def page_from_json(data: dict[str, object]) -> Page:
    prov = data["provenance"]
    reps = data["representations"]
    assert isinstance(prov, dict) and isinstance(reps, dict)
    return Page(
        page_id=str(data["page_id"]),
        type=data["type"],  # type: ignore[arg-type]
        scope=data["scope"],  # type: ignore[arg-type]
        pin=data["pin"],  # type: ignore[arg-type]
        min_fidelity=Fidelity.parse(str(data["min_fidelity"])),
        version=int(data["version"]),  # type: ignore[call-overload]
        provenance=Provenance(prov["source"], str(prov["ref"]), int(prov["turn"])),  # pyright: ignore
        content=str(data["content"]),
        fields=data["fields"],  # type: ignore[arg-type]
        explicit_fields=data.get("explicit_fields") or {},  # type: ignore[arg-type]
        representations={Fidelity.parse(k): Representation(v[0], int(v[1])) for k, v in reps.items()},  # pyright: ignore
        recompute_cost=float(data["recompute_cost"]),  # type: ignore[arg-type]
        base_utility=float(data["base_utility"]),  # type: ignore[arg-type]
        created_turn=int(data["created_turn"]),  # type: ignore[call-overload]
        last_access_turn=int(data["last_access_turn"]),  # type: ignore[call-overload]
        title=str(data.get("title", "")),
        deleted=bool(data.get("deleted", False)),
    )
