"""asyncpg implementation of ``Store``: one PostgreSQL database shared by many server processes on many hosts.

The semantics are SQLiteStore's (store/base.py): every write transaction first moves the ``clock`` row, which
serializes writers the way SQLite's write lock does (so a commit's version and pending checks cannot race another
writer, and change-sequence order is commit order); the rows it changes carry that sequence value. Waits are
bounded by ``lock_timeout``/``statement_timeout`` (the store timeout): a writer that cannot get in is StoreBusy.

Every write transaction also NOTIFYs ``CHANGE_CHANNEL`` with its sequence value, which PostgreSQL delivers only if
it commits; ``change_feed`` LISTENs on a connection of its own, so other processes hear of a commit at once instead
of polling for it (store/base.py ``ChangeFeed``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream

try:  # the optional ``postgres`` extra; open_store turns its absence into one clear line
    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
except ImportError as exc:
    raise ImportError(f"PostgresStore needs asyncpg ({exc}): pip install 'clawvm-mcp[postgres]'") from exc

from ..canonical import dumps
from ..faults import FaultEvent
from ..pages import Page
from ..paths import store_timeout
from .base import (
    ChangeEvents,
    Committed,
    Conflict,
    JournalEntry,
    JournalStatus,
    PageCommit,
    Rejection,
    SearchHit,
    SessionCounters,
    SessionRecord,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    ToolCall,
    entry_from_row,
    page_from_json,
    page_to_json,
    session_from_row,
)
from .lazy import HEAD_KEYS, page_from_head, parse_head
from .search import K1, WEIGHTS, B, SearchColumns, decode, matched, search_text

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
MIGRATION_LOCK = 0x436C5756  # pg_advisory_xact_lock key: one process migrates at a time
POOL_SIZE = 4
MAX_LEXEME_POSITIONS = 256  # tsvector keeps at most 256 positions per lexeme: a term's frequency saturates there
MAX_VECTOR_BYTES = 900_000  # a tsvector must stay under 1 MB: a huge page indexes its first distinct tokens only
WEIGHT_LETTERS = ("A", "B", "C", "D")  # page_id, title, fields, content: WEIGHTS in the same order
CHANGE_CHANNEL = "clawvm_changes"  # NOTIFY channel of every write transaction; channels are per database
LISTEN_APPLICATION = "clawvm-mcp-listen"  # the feed connection's application_name, as pg_stat_activity shows it
FEED_BUFFER = 1  # one pending wake-up stands for any number of commits: the consumer re-reads the sequence
FEED_PING_SECONDS = 30.0  # a LISTEN connection that died without a FIN is found by a ping this often
FEED_RETRY_SECONDS = (0.25, 5.0)  # reconnect backoff: the first wait, doubling up to the second
LOG_EVERY_SECONDS = 60.0  # a feed outage is logged at most this often

MIGRATIONS: tuple[str, ...] = (
    # 1: the schema of SQLiteStore's migrations 1-3 in one step: clock, seq columns, counters, the recall vector
    """
    CREATE TABLE clock (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);
    INSERT INTO clock VALUES (1, 0);
    CREATE TABLE sessions (
        session_id TEXT COLLATE "C" PRIMARY KEY,
        principal TEXT NOT NULL,
        project_id TEXT NOT NULL,
        budget INTEGER NOT NULL,
        turn INTEGER NOT NULL DEFAULT 0,
        ended BOOLEAN NOT NULL DEFAULT false,
        state TEXT NOT NULL DEFAULT '{}',
        hits BIGINT NOT NULL DEFAULT 0,
        duplicate_signature BIGINT NOT NULL DEFAULT 0,
        physical_insufficiency BIGINT NOT NULL DEFAULT 0,
        boundaries BIGINT NOT NULL DEFAULT 0,
        seq BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_principal ON sessions(principal, session_id) WHERE NOT ended;
    CREATE TABLE pages (
        namespace TEXT COLLATE "C" NOT NULL,
        page_id TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT false,
        search_text TEXT NOT NULL,
        vec TSVECTOR NOT NULL,
        doc_len INTEGER NOT NULL,
        body TEXT NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (namespace, page_id)
    );
    CREATE INDEX pages_seq ON pages(seq);
    CREATE INDEX pages_vec ON pages USING gin(vec);
    CREATE TABLE journal (
        txn_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(session_id),
        namespace TEXT COLLATE "C" NOT NULL,
        page_id TEXT COLLATE "C" NOT NULL,
        op TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('staged','validated','committed','rejected','lost')),
        commit_mode TEXT NOT NULL,
        request TEXT NOT NULL,
        reasons TEXT NOT NULL DEFAULT '[]',
        version INTEGER,
        turn INTEGER NOT NULL
    );
    CREATE INDEX journal_session_status ON journal(session_id, status);
    CREATE TABLE tool_calls (
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(session_id),
        call_id TEXT COLLATE "C" NOT NULL,
        signature TEXT NOT NULL,
        tool TEXT NOT NULL,
        args TEXT NOT NULL,
        evidence_page_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        has_result BOOLEAN NOT NULL,
        seq BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (session_id, call_id)
    );
    CREATE TABLE faults (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions(session_id),
        kind TEXT NOT NULL,
        turn INTEGER NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX faults_session ON faults(session_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# BM25 as store/search.py's bm25() computes it: idf and the average length over every live page, a term's frequency
# summed over the columns times WEIGHTS (the vector's weight letters). The GIN index finds the matching pages; only
# the top ``limit`` rows read their bodies.
SEARCH_SQL = f"""
WITH live AS (
    SELECT count(*)::float8 AS n, coalesce(avg(doc_len), 1)::float8 AS avglen FROM pages WHERE NOT deleted
), df AS (
    SELECT t.term, (SELECT count(*) FROM pages WHERE NOT deleted AND vec @@ t.term::tsquery)::float8 AS df
    FROM unnest($2::text[]) AS t(term)
), hits AS (
    SELECT p.namespace, p.page_id, p.doc_len, u.lexeme AS term,
        (SELECT sum(CASE w WHEN 'A' THEN {WEIGHTS[0]} WHEN 'B' THEN {WEIGHTS[1]}
            WHEN 'C' THEN {WEIGHTS[2]} ELSE {WEIGHTS[3]} END)
         FROM unnest(u.weights) AS w)::float8 AS freq
    FROM pages p, unnest(p.vec) AS u
    WHERE p.namespace = ANY($1::text[]) AND NOT p.deleted AND p.vec @@ $3::tsquery AND u.lexeme = ANY($2::text[])
        AND ($5::text IS NULL OR p.type = $5::text)
), top AS (
    SELECT h.namespace, h.page_id,
        sum(greatest(ln((live.n - df.df + 0.5) / (df.df + 0.5)), 1e-6) * h.freq * ({K1} + 1)
            / (h.freq + {K1} * (1 - {B} + {B} * h.doc_len / live.avglen))) AS score
    FROM hits h JOIN df USING (term), live
    GROUP BY h.namespace, h.page_id
    ORDER BY score DESC, h.page_id, h.namespace LIMIT $4
)
SELECT top.namespace, top.page_id, p.type, p.body::jsonb ->> 'title', p.body::jsonb #>> '{{representations,pointer,0}}',
    top.score, p.search_text
FROM top JOIN pages p USING (namespace, page_id)
ORDER BY top.score DESC, top.page_id, top.namespace
"""

BUSY = (
    asyncpg.exceptions.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.TooManyConnectionsError,
)
UNAVAILABLE = (
    asyncpg.exceptions.DiskFullError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
    OSError,
)


# a page's head as one JSON array (store/lazy.py), taken from its body by PostgreSQL's json parser
_HEAD = "json_build_array(" + ", ".join(f"b #> '{{{','.join(keys)}}}'" for keys in HEAD_KEYS) + ")::text"
LOAD_PAGES = (
    f"SELECT namespace, {_HEAD}, body FROM (SELECT namespace, body, body::jsonb AS b FROM pages"
    " WHERE namespace = ANY($1::text[]) AND NOT deleted OFFSET 0) AS p"  # OFFSET 0: parse each body once
)


def redact(url: str) -> str:
    """The URL as logs and errors show it: never its password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def classify(exc: BaseException, where: str) -> StoreError:
    """A PostgreSQL or connection failure named for what it is: busy (retryable), unavailable, or other."""
    if isinstance(exc, BUSY):
        return StoreBusy(f"the database {where} stayed locked by another writer: {exc}")
    if isinstance(exc, UNAVAILABLE):
        return StoreUnavailable(f"the database {where} cannot take writes: {type(exc).__name__}: {exc}")
    return StoreError(f"the database {where} failed: {exc}")


def _translated(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Every public store call answers a database failure as a named StoreError, never as a bare asyncpg error."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except StoreError:
            raise
        except (asyncpg.PostgresError, *UNAVAILABLE) as exc:
            raise classify(exc, getattr(args[0], "path", "?")) from exc

    return wrapper


def vector(cols: SearchColumns) -> str:
    """The tsvector literal of a page's index columns, built here so no text is ever parsed by PostgreSQL's text
    search parser: each token is one quoted lexeme whose positions carry its column's weight letter, one position
    per occurrence (positions are otherwise unused: recall has no phrase queries)."""
    per_token: dict[str, list[str]] = {}
    size = 0
    for letter, text in zip(WEIGHT_LETTERS, cols.as_tuple(), strict=True):
        for token, count in Counter(text.split()).items():
            letters = per_token.get(token)
            if letters is None:
                if size + len(token.encode()) + 8 > MAX_VECTOR_BYTES:
                    continue
                letters = per_token[token] = []
                size += len(token.encode()) + 8
            room = MAX_LEXEME_POSITIONS - len(letters)
            letters.extend([letter] * min(count, room))
            size += 2 * min(count, room)
    parts = []
    for token, letters in per_token.items():
        positions = ",".join(f"{i}{w}" for i, w in enumerate(letters, 1))
        parts.append("'" + token.replace("\\", "\\\\").replace("'", "''") + "':" + positions)
    return " ".join(parts)


def doc_length(cols: SearchColumns) -> int:
    """Every token of the row, as FTS5 counts a document's length: the columns plus SQLite's namespace token."""
    return 1 + sum(len(text.split()) for text in cols.as_tuple())


def tsquery(terms: Sequence[str]) -> str:
    """Any of ``terms``, each a quoted lexeme: user text is never read as tsquery syntax."""
    return " | ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)


PENDING = "status IN ('staged', 'validated')"
INSERT_ENTRY = (
    "INSERT INTO journal(session_id, namespace, page_id, op, status, commit_mode, request, reasons, version, turn)"
    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING txn_id"
)
TOUCH_SESSIONS = "UPDATE sessions SET seq = $1 WHERE session_id = ANY($2::text[])"
MOVE_CLOCK = "UPDATE clock SET seq = seq + 1 WHERE id = 1 RETURNING seq, pg_notify($1, seq::text)"


def _sequence(payload: str) -> int | None:
    """A NOTIFY payload as a sequence value; anything else on the channel reads as a revalidation."""
    return int(payload) if payload.isdigit() else None


def _entry_args(e: JournalEntry, status: str, version: int | None) -> tuple[Any, ...]:
    return (
        e.session_id,
        e.namespace,
        e.page_id,
        e.op,
        status,
        e.commit_mode,
        dumps(e.request),
        dumps(e.reasons),
        version,
        e.turn,
    )


class PostgresStore:
    """A small asyncpg pool per process; the ``clock`` row arbitrates writers across processes and hosts."""

    def __init__(self, pool: asyncpg.Pool, path: str, timeout: float, url: str) -> None:
        self._pool = pool
        self._url = url  # with its password: only the change feed's own connection uses it
        self.path = path  # the URL without its password: what errors and logs name
        self.timeout = timeout

    @classmethod
    async def open(cls, url: str, timeout: float | None = None) -> PostgresStore:
        """Connect to ``url`` (postgresql://...) and migrate it forward; ``timeout`` (default CLAWVM_STORE_TIMEOUT,
        else 5 s) bounds every lock wait and statement."""
        timeout = store_timeout() if timeout is None else timeout
        shown = redact(url)
        ms = str(int(timeout * 1000))
        settings = {
            "lock_timeout": ms,
            "statement_timeout": ms,
            "idle_in_transaction_session_timeout": str(int(timeout * 4000)),
            "synchronous_commit": "on",
            "application_name": "clawvm-mcp",
        }
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=POOL_SIZE, server_settings=settings, timeout=timeout, command_timeout=None
            )
        except (asyncpg.PostgresError, *UNAVAILABLE, TimeoutError) as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {shown}: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # a malformed URL
            raise StoreError(f"cannot use the database URL {shown}: {exc}") from exc
        store = cls(pool, shown, timeout, url)
        try:
            await store._migrate()
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, asyncpg.PostgresError | OSError):
                raise classify(exc, shown) from exc
            raise
        return store

    async def _migrate(self) -> None:
        async with self._pool.acquire() as c, c.transaction():
            await c.execute("SET LOCAL statement_timeout = 0")
            await c.execute("SET LOCAL lock_timeout = 0")
            await c.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await c.execute("CREATE TABLE IF NOT EXISTS clawvm_schema (version INTEGER NOT NULL)")
            version = await c.fetchval("SELECT max(version) FROM clawvm_schema") or 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema v{version}; this clawvm-mcp knows up to v{SCHEMA_VERSION}")
            for number in range(version + 1, SCHEMA_VERSION + 1):
                await c.execute(MIGRATIONS[number - 1])
                await c.execute("INSERT INTO clawvm_schema VALUES ($1)", number)
                log.info("migrated %s to schema v%d", self.path, number)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[asyncpg.Connection, int]]:
        """A write transaction that first moves the clock (waiting at most ``timeout`` for other writers) and
        yields the new sequence value for the rows it changes. Shielded: a caller cancelled mid-write never leaves
        it half-known; the timeouts bound how long that can take. The same statement queues the NOTIFY that
        change feeds hear once (and only if) the transaction commits."""
        with anyio.CancelScope(shield=True):
            async with self._pool.acquire() as c, c.transaction():
                seq = int(await c.fetchval(MOVE_CLOCK, CHANGE_CHANNEL))
                yield c, seq

    @asynccontextmanager
    async def change_feed(self) -> AsyncIterator[ChangeEvents]:
        """Every process's commits as they happen, from a LISTEN connection of the feed's own (a pooled one would
        be handed to queries); None first and after each reconnect, when commits may have gone unheard."""
        send, receive = anyio.create_memory_object_stream[int | None](FEED_BUFFER)
        with receive:  # closed only after the listening task (and its connection) is gone
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._listen, send)
                try:
                    yield receive
                finally:
                    tg.cancel_scope.cancel()

    async def _listen(self, send: MemoryObjectSendStream[int | None]) -> None:
        """Keep one LISTEN connection up for as long as the feed is open: reconnect with backoff when it fails
        or is lost, logging that at most once a minute."""

        def push(value: int | None) -> None:
            try:
                send.send_nowait(value)
            except anyio.WouldBlock:  # a wake-up is pending: the re-read it causes comes after this commit anyway
                pass
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):  # the feed is closing: nobody to tell
                pass

        delay, quiet_until, up_since, said = FEED_RETRY_SECONDS[0], 0.0, 0.0, False

        def on_connect() -> None:
            nonlocal up_since, said
            up_since = time.monotonic()
            if said:  # the outage was logged: so is its end (no more often than the outage lines)
                log.warning("change feed on %s: listening again; revalidating", self.path)
                said = False

        with send:
            while True:
                up_since = 0.0
                try:
                    await self._listen_once(push, on_connect)
                    reason = "the LISTEN connection was lost"
                except Exception as exc:  # a background task's boundary: any failure means reconnect, never stop
                    reason = f"{type(exc).__name__}: {exc}"
                if up_since and time.monotonic() - up_since >= FEED_RETRY_SECONDS[1]:
                    delay = FEED_RETRY_SECONDS[0]  # it had been up a while: a fresh outage, not a flapping one
                now = time.monotonic()
                if now >= quiet_until:
                    log.warning("change feed on %s: %s; reconnecting, then revalidating", self.path, reason)
                    quiet_until, said = now + LOG_EVERY_SECONDS, True
                await anyio.sleep(delay)
                delay = min(delay * 2, FEED_RETRY_SECONDS[1])

    async def _listen_once(self, push: Callable[[int | None], None], on_connect: Callable[[], None]) -> None:
        """One LISTEN connection's life: returns (or raises) when it is lost. The revalidation is pushed only
        after LISTEN is in place, so a commit after the consumer's re-read is always heard."""
        lost = anyio.Event()
        conn = await asyncpg.connect(
            self._url, timeout=self.timeout, server_settings={"application_name": LISTEN_APPLICATION}
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANGE_CHANNEL, lambda _conn, _pid, _channel, payload: push(_sequence(payload)))
            on_connect()
            push(None)
            while not lost.is_set():
                with anyio.move_on_after(FEED_PING_SECONDS):
                    await lost.wait()
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=self.timeout)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await conn.close(timeout=self.timeout)
                except Exception:  # already gone: close() then only tidies up
                    conn.terminate()

    async def close(self) -> None:
        await self._pool.close()

    @_translated
    async def synchronous(self) -> int:
        """2 when a commit waits for its WAL flush (synchronous_commit on or remote_*), 1 local, 0 off: the scale
        SQLite's PRAGMA synchronous reports, where 2 is FULL."""
        value = str(await self._pool.fetchval("SHOW synchronous_commit"))
        return {"off": 0, "local": 1}.get(value, 2)

    @_translated
    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._pool.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)
        return None if row is None else session_from_row(row)

    @_translated
    async def claim_session(
        self, session_id: str, principal: str, project_id: str, budget: int | None
    ) -> tuple[SessionRecord, bool] | None:
        async with self._write() as (c, seq):
            row = await c.fetchrow(
                "INSERT INTO sessions(session_id, principal, project_id, budget, seq) VALUES ($1,$2,$3,$4,$5)"
                " ON CONFLICT (session_id) DO NOTHING RETURNING *",
                session_id,
                principal,
                project_id,
                budget or 4000,
                seq,
            )
            if row is not None:
                return session_from_row(row), True
            row = await c.fetchrow(
                "UPDATE sessions SET ended = false, budget = coalesce($1, budget), seq = $5"
                " WHERE session_id = $2 AND principal = $3 AND ($4 = 'default' OR project_id = $4) RETURNING *",
                budget,
                session_id,
                principal,
                project_id,
                seq,
            )
        return (session_from_row(row), False) if row is not None else None

    @_translated
    async def save_session(self, record: SessionRecord, added: SessionCounters) -> SessionRecord:
        async with self._write() as (c, seq):
            row = await c.fetchrow(
                "UPDATE sessions SET budget = $1, turn = greatest(turn, $2), ended = $3, state = $4, hits = hits + $5,"
                " duplicate_signature = duplicate_signature + $6,"
                " physical_insufficiency = physical_insufficiency + $7, boundaries = boundaries + $8, seq = $9"
                " WHERE session_id = $10 RETURNING *",
                record.budget,
                record.turn,
                record.ended,
                dumps(record.state),
                added.hits,
                added.duplicate_signature,
                added.physical_insufficiency,
                added.boundaries,
                seq,
                record.session_id,
            )
        if row is None:
            raise StoreError(f"session {record.session_id!r} is not in the database {self.path}")
        return session_from_row(row)

    @_translated
    async def data_version(self) -> int:
        """The clock: it moves with every committed write, ours included (a cache then re-checks, only slower)."""
        return int(await self._pool.fetchval("SELECT seq FROM clock WHERE id = 1"))

    @_translated
    async def change_seq(self) -> int:
        return int(await self._pool.fetchval("SELECT seq FROM clock WHERE id = 1"))

    @_translated
    async def pages_since(self, namespaces: list[str], seq: int) -> list[tuple[str, Page]]:
        rows = await self._pool.fetch(
            "SELECT namespace, body FROM pages WHERE seq > $1 AND namespace = ANY($2::text[]) ORDER BY seq",
            seq,
            namespaces,
        )
        return [(row[0], page_from_json(json.loads(row[1]))) for row in rows]

    @_translated
    async def load_pages(self, namespaces: list[str]) -> list[tuple[str, Page]]:
        rows = await self._pool.fetch(LOAD_PAGES, namespaces)
        return [(row[0], page_from_head(parse_head(row[1]), row[2])) for row in rows]

    @_translated
    async def get_page(self, namespace: str, page_id: str) -> Page | None:
        body = await self._pool.fetchval(
            "SELECT body FROM pages WHERE namespace = $1 AND page_id = $2", namespace, page_id
        )
        return None if body is None else page_from_json(json.loads(body))

    @_translated
    async def count_pages(self, namespace: str) -> int:
        return int(
            await self._pool.fetchval("SELECT count(*) FROM pages WHERE namespace = $1 AND NOT deleted", namespace)
        )

    @_translated
    async def stage(self, entry: JournalEntry) -> int:
        async with self._write() as (c, seq):
            txn_id = int(await c.fetchval(INSERT_ENTRY, *_entry_args(entry, entry.status, entry.version)))
            await c.execute(TOUCH_SESSIONS, seq, [entry.session_id])
        return txn_id

    @_translated
    async def try_commit(self, write: PageCommit) -> Committed | None:
        """The checked commit of one page; None when it conflicts (it wrote nothing then)."""
        committed, _ = await self.commit([write])
        return committed[0] if committed else None

    @_translated
    async def commit(
        self,
        writes: list[PageCommit],
        rejections: Sequence[Rejection] = (),
    ) -> tuple[list[Committed], list[Conflict]]:
        for w in writes:
            if w.page.version != w.expected_version + 1:
                raise ValueError(f"page {w.page.page_id!r} v{w.page.version} cannot follow v{w.expected_version}")
        conflicts: list[Conflict] = []
        committed: list[Committed] = []
        async with self._write() as (c, seq):  # the clock is ours: nothing read below can change until we commit
            for r in rejections:  # checked against the version the page has before this flush commits it
                current = await self._version(c, r.namespace, r.page_id)
                open_rows = await self._open_rows(c, r.txn_ids)
                if current != r.expected_version or open_rows != len(r.txn_ids):
                    conflicts.append(Conflict(r.page_id, current))
                    continue
                await self._mark(c, seq, list(r.txn_ids), "rejected", list(r.reasons))
            for w in writes:
                current = await self._version(c, w.namespace, w.page.page_id, missing=w.expected_version)
                if current != w.expected_version or await self._open_rows(c, w.txn_ids) != len(w.txn_ids):
                    conflicts.append(Conflict(w.page.page_id, await self._version(c, w.namespace, w.page.page_id)))
                    continue
                committed.append(await self._commit_page(c, seq, w))
        return committed, conflicts

    async def _commit_page(self, c: asyncpg.Connection, seq: int, w: PageCommit) -> Committed:
        text = search_text(w.page)
        cols = decode(text)
        await c.execute(
            "INSERT INTO pages(namespace, page_id, type, version, deleted, search_text, vec, doc_len, body, seq)"
            " VALUES ($1,$2,$3,$4,$5,$6,$7::tsvector,$8,$9,$10) ON CONFLICT (namespace, page_id) DO UPDATE SET"
            " type = excluded.type, version = excluded.version, deleted = excluded.deleted,"
            " search_text = excluded.search_text, vec = excluded.vec, doc_len = excluded.doc_len,"
            " body = excluded.body, seq = excluded.seq",
            w.namespace,
            w.page.page_id,
            w.page.type,
            w.page.version,
            w.page.deleted,
            text,
            vector(cols),
            doc_length(cols),
            dumps(page_to_json(w.page)),
            seq,
        )
        sessions: list[str] = []
        if w.txn_ids:
            rows = await c.fetch(
                f"UPDATE journal SET status = 'committed', version = $1 WHERE txn_id = ANY($2::bigint[]) AND {PENDING}"
                " RETURNING session_id",
                w.page.version,
                list(w.txn_ids),
            )
            sessions.extend(r[0] for r in rows)
        if w.new_entry is None:
            if sessions:
                await c.execute(TOUCH_SESSIONS, seq, sessions)
            return Committed(w.page.page_id, w.page.version, w.txn_ids)
        entry_txn = int(await c.fetchval(INSERT_ENTRY, *_entry_args(w.new_entry, "committed", w.page.version)))
        await c.execute(TOUCH_SESSIONS, seq, [*sessions, w.new_entry.session_id])
        return Committed(w.page.page_id, w.page.version, (*w.txn_ids, entry_txn), entry_txn)

    @staticmethod
    async def _version(c: asyncpg.Connection, namespace: str, page_id: str, missing: int = 0) -> int:
        """The page's stored version; ``missing`` when there is no row (a new page commits at any expected version,
        as SQLite's upsert inserts it)."""
        value = await c.fetchval("SELECT version FROM pages WHERE namespace = $1 AND page_id = $2", namespace, page_id)
        return missing if value is None else int(value)

    @staticmethod
    async def _open_rows(c: asyncpg.Connection, txn_ids: Sequence[int]) -> int:
        if not txn_ids:
            return 0
        return int(
            await c.fetchval(
                f"SELECT count(*) FROM journal WHERE txn_id = ANY($1::bigint[]) AND {PENDING}", list(txn_ids)
            )
        )

    @staticmethod
    async def _mark(
        c: asyncpg.Connection, seq: int, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]
    ) -> None:
        if not txn_ids:
            return
        rows = await c.fetch(
            f"UPDATE journal SET status = $1, reasons = $2 WHERE txn_id = ANY($3::bigint[]) AND {PENDING}"
            " RETURNING session_id",  # a settled row is history: never rewritten
            status,
            dumps(reasons),
            txn_ids,
        )
        if rows:
            await c.execute(TOUCH_SESSIONS, seq, [r[0] for r in rows])

    @_translated
    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        async with self._write() as (c, seq):
            await self._mark(c, seq, txn_ids, status, reasons)

    @_translated
    async def pending(self, session_id: str) -> list[JournalEntry]:
        rows = await self._pool.fetch(
            f"SELECT * FROM journal WHERE session_id = $1 AND {PENDING} ORDER BY txn_id", session_id
        )
        return [entry_from_row(r) for r in rows]

    @_translated
    async def journal(self, session_id: str, limit: int) -> list[JournalEntry]:
        rows = await self._pool.fetch(
            "SELECT * FROM journal WHERE session_id = $1 ORDER BY txn_id DESC LIMIT $2", session_id, max(limit, 0)
        )
        return [entry_from_row(r) for r in rows][::-1]

    @_translated
    async def journal_counts(self, session_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT status, count(*) FROM journal WHERE session_id = $1 GROUP BY status", session_id
        )
        return {r[0]: int(r[1]) for r in rows}

    @_translated
    async def add_tool_call(self, call: ToolCall) -> None:
        async with self._write() as (c, seq):
            await c.execute(
                "INSERT INTO tool_calls(session_id, call_id, signature, tool, args, evidence_page_id, turn, has_result,"
                " seq) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (session_id, call_id)"
                " DO UPDATE SET has_result = excluded.has_result, seq = excluded.seq",
                call.session_id,
                call.call_id,
                call.signature,
                call.tool,
                call.args_json,
                call.evidence_page_id,
                call.turn,
                call.has_result,
                seq,
            )
            await c.execute(TOUCH_SESSIONS, seq, [call.session_id])

    @_translated
    async def tool_calls(self, session_id: str) -> list[ToolCall]:
        rows = await self._pool.fetch(
            "SELECT * FROM tool_calls WHERE session_id = $1 ORDER BY turn, call_id", session_id
        )
        return [
            ToolCall(
                r["session_id"],
                r["call_id"],
                r["signature"],
                r["tool"],
                r["args"],
                r["evidence_page_id"],
                r["turn"],
                bool(r["has_result"]),
            )
            for r in rows
        ]

    @_translated
    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None:
        if not events:
            return
        async with self._write() as (c, seq):
            await c.executemany(
                "INSERT INTO faults(session_id, kind, turn, subject, detail) VALUES ($1,$2,$3,$4,$5)",
                [(session_id, e.kind, e.turn, e.subject, e.detail) for e in events],
            )
            await c.execute(TOUCH_SESSIONS, seq, [session_id])

    @_translated
    async def faults(self, session_id: str) -> list[FaultEvent]:
        rows = await self._pool.fetch(
            "SELECT kind, turn, subject, detail FROM faults WHERE session_id = $1 ORDER BY id", session_id
        )
        return [FaultEvent(r[0], r[1], r[2], r[3]) for r in rows]

    @_translated
    async def search(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """BM25 over the tsvector index, best first, at most ``limit``; only the top pages are read."""
        if not namespaces or not terms or limit <= 0:
            return []
        rows = await self._pool.fetch(SEARCH_SQL, namespaces, terms, tsquery(terms), limit, page_type)
        return [SearchHit(r[0], r[1], r[2], r[3] or "", r[4] or "", float(r[5]), matched(r[6], terms)) for r in rows]

    @_translated
    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT session_id FROM sessions WHERE principal = $1 AND NOT ended AND starts_with(session_id, $2)"
            " ORDER BY session_id LIMIT $3",
            principal,
            prefix,
            max(limit, 0),
        )
        return [str(r[0]) for r in rows]
