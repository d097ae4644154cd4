"""aiosqlite implementation of ``Store``: WAL, foreign keys, forward migrations, one transaction per commit."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import aiosqlite
import anyio

from ..canonical import dumps
from ..faults import FaultEvent
from ..pages import Page
from ..paths import DEFAULT_STORE_TIMEOUT, store_timeout
from . import topk
from .base import (
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
from .lazy import HEAD_KEYS, head_of, page_from_head, parse_head
from .search import (
    WEIGHTS,
    columns,
    decode,
    encode,
    encode_postings,
    match_expression,
    matched,
    namespace_token,
    weighted,
)

log = logging.getLogger(__name__)
APPLICATION_ID = 0x436C5756  # "ClWV": tells our files from any other SQLite database
P = ParamSpec("P")
R = TypeVar("R")


def head_sql(body: str) -> str:
    """SQL for a page's head (store/lazy.py) as one JSON array, extracted from the body column ``body`` by one
    parse of SQLite's JSON functions."""
    paths = ("'$" + "".join(f"[{k}]" if k.isdigit() else f".{k}" for k in keys) + "'" for keys in HEAD_KEYS)
    return f"json_extract({body}, {', '.join(paths)})"


MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY,
        principal TEXT NOT NULL,
        project_id TEXT NOT NULL,
        budget INTEGER NOT NULL,
        turn INTEGER NOT NULL DEFAULT 0,
        ended INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE pages (
        namespace TEXT NOT NULL,
        page_id TEXT NOT NULL,
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        search_text TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (namespace, page_id)
    ) WITHOUT ROWID;
    CREATE TABLE journal (
        txn_id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        namespace TEXT NOT NULL,
        page_id TEXT NOT NULL,
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
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        call_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        tool TEXT NOT NULL,
        args TEXT NOT NULL,
        evidence_page_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        has_result INTEGER NOT NULL,
        PRIMARY KEY (session_id, call_id)
    );
    CREATE TABLE faults (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(session_id),
        kind TEXT NOT NULL,
        turn INTEGER NOT NULL,
        subject TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX faults_session ON faults(session_id);
    """,
    # 2: the recall index (DESIGN section 9). page_fts holds each live page's search columns (store/search.py) under
    # page_docs' docid; the commit trigger moves both in the page's own statement, and _index_pages fills them here
    """
    CREATE TABLE page_docs (
        docid INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        page_id TEXT NOT NULL,
        UNIQUE (namespace, page_id)
    );
    CREATE VIRTUAL TABLE page_fts USING fts5(
        ns, page_id, title, fields, content, tokenize = 'unicode61 remove_diacritics 0'
    );
    """,
    # 3: one truth across processes (DESIGN section 9). ``clock`` is the change sequence: every change of a page,
    # session, tool call, journal row or fault moves it, and pages/sessions/tool_calls carry the value they were
    # last changed at, so a cache refreshes only what moved. Session counters become columns that every process
    # adds to instead of overwriting.
    """
    CREATE TABLE clock (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
    INSERT INTO clock VALUES (1, 0);
    ALTER TABLE pages ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX pages_seq ON pages(seq);
    ALTER TABLE sessions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN hits INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN duplicate_signature INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN physical_insufficiency INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN boundaries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tool_calls ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET
        hits = coalesce(json_extract(state, '$.counters.hits'), 0),
        duplicate_signature = coalesce(json_extract(state, '$.counters.duplicate_signature'), 0),
        physical_insufficiency = coalesce(json_extract(state, '$.counters.physical_insufficiency'), 0);
    CREATE TRIGGER pages_seq_insert AFTER INSERT ON pages BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE pages SET seq = (SELECT seq FROM clock) WHERE namespace = NEW.namespace AND page_id = NEW.page_id;
    END;
    CREATE TRIGGER pages_seq_update AFTER UPDATE OF version, deleted, body ON pages BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE pages SET seq = (SELECT seq FROM clock) WHERE namespace = NEW.namespace AND page_id = NEW.page_id;
    END;
    CREATE TRIGGER sessions_seq_insert AFTER INSERT ON sessions BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    CREATE TRIGGER sessions_seq_update AFTER UPDATE OF budget, turn, ended, state, hits, duplicate_signature,
        physical_insufficiency, boundaries ON sessions BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    CREATE TRIGGER tool_calls_seq_insert AFTER INSERT ON tool_calls BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE tool_calls SET seq = (SELECT seq FROM clock)
        WHERE session_id = NEW.session_id AND call_id = NEW.call_id;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    CREATE TRIGGER tool_calls_seq_update AFTER UPDATE OF has_result ON tool_calls BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE tool_calls SET seq = (SELECT seq FROM clock)
        WHERE session_id = NEW.session_id AND call_id = NEW.call_id;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    -- a session's journal rows, tool calls and faults move its own seq too: one look at the row tells a cache
    -- whether anything of the session changed
    CREATE TRIGGER journal_seq_insert AFTER INSERT ON journal BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    CREATE TRIGGER journal_seq_update AFTER UPDATE OF status ON journal BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    CREATE TRIGGER faults_seq_insert AFTER INSERT ON faults BEGIN
        UPDATE clock SET seq = seq + 1;
        UPDATE sessions SET seq = (SELECT seq FROM clock) WHERE session_id = NEW.session_id;
    END;
    """,
    # 4: each page's head (store/lazy.py) stored beside its body, so a session loads its pages without SQLite
    # parsing every body (a third of a 100,000-page load). The commit statement writes it with the body; a writer
    # that does not (a process still running older code, which leaves it NULL or unchanged) has it recomputed by
    # these triggers, so a head is never stale whoever wrote the row
    f"""
    ALTER TABLE pages ADD COLUMN head TEXT;
    UPDATE pages SET head = {head_sql("body")};
    CREATE TRIGGER pages_head_insert AFTER INSERT ON pages WHEN NEW.head IS NULL BEGIN
        UPDATE pages SET head = {head_sql("NEW.body")} WHERE namespace = NEW.namespace AND page_id = NEW.page_id;
    END;
    CREATE TRIGGER pages_head_update AFTER UPDATE OF body ON pages WHEN NEW.head IS OLD.head BEGIN
        UPDATE pages SET head = {head_sql("NEW.body")} WHERE namespace = NEW.namespace AND page_id = NEW.page_id;
    END;
    """,
    # 5: postings of our own for recall's exact top-k (store/topk.py): per (namespace, term) each live page's
    # weighted freq and length; each term's document count over the whole index; per (namespace, term, freq) the
    # shortest length seen (a bound that a delete leaves valid) and how many pages have it; the index's row and
    # token counts. All of it equals what FTS5's bm25() reads, and the commit trigger moves it with the page.
    """
    CREATE TABLE recall_ns (nsid INTEGER PRIMARY KEY, namespace TEXT NOT NULL UNIQUE);
    CREATE TABLE recall_docs (
        docid INTEGER PRIMARY KEY, nsid INTEGER NOT NULL, type TEXT NOT NULL, len INTEGER NOT NULL,
        terms TEXT NOT NULL
    );
    CREATE TABLE recall_postings (
        nsid INTEGER NOT NULL, term TEXT NOT NULL, docid INTEGER NOT NULL, freq INTEGER NOT NULL, len INTEGER NOT NULL,
        PRIMARY KEY (nsid, term, docid)
    ) WITHOUT ROWID;
    CREATE TABLE recall_terms (term TEXT PRIMARY KEY, df INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE recall_bounds (
        nsid INTEGER NOT NULL, term TEXT NOT NULL, freq INTEGER NOT NULL, len INTEGER NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (nsid, term, freq)
    ) WITHOUT ROWID;
    CREATE TABLE recall_stats (id INTEGER PRIMARY KEY CHECK (id = 1), rows INTEGER NOT NULL, tokens INTEGER NOT NULL);
    INSERT INTO recall_stats VALUES (1, 0, 0);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
HEAD_SCHEMA = 4  # the migration that added page heads
SEARCH_SCHEMA = 2  # the migration that built the recall index
POSTINGS_SCHEMA = 5  # the migration that built recall's own postings
INDEX_PROGRESS_EVERY = 10_000  # pages between progress lines while a migration indexes a large store
INDEX_BATCH = 1_000  # pages indexed per round trip to the connection's thread
LOAD_BATCH = 5_000  # pages read per round trip while a session loads (store/lazy.py)
READER_MMAP_BYTES = 1 << 30  # recall's read connection maps up to this much of the file

# A page commit as ONE statement: an insert into this per-connection TEMP view runs the compare-and-swap upsert,
# settles the earlier staged rows and writes the new journal row in its trigger. In autocommit that statement is
# its own transaction (the write lock is taken when it starts, the fsync happens when it ends), so a single-page
# commit is one trip to aiosqlite's thread instead of four. TEMP objects live with the connection: no migration.
COMMIT_VIEW = (
    "CREATE TEMP VIEW clawvm_commit(namespace, page_id, type, version, deleted, search_text, body, expected_version,"
    " settles, session_id, entry_namespace, entry_page_id, op, commit_mode, request, reasons, turn, head,"
    " postings)"
    " AS SELECT " + ", ".join(["NULL"] * 19) + " WHERE 0",
    """
    CREATE TEMP TRIGGER clawvm_commit_page INSTEAD OF INSERT ON clawvm_commit BEGIN
        INSERT INTO pages(namespace, page_id, type, version, deleted, search_text, body, head)
        VALUES (NEW.namespace, NEW.page_id, NEW.type, NEW.version, NEW.deleted, NEW.search_text, NEW.body, NEW.head)
        ON CONFLICT(namespace, page_id) DO UPDATE SET type=excluded.type, version=excluded.version,
            deleted=excluded.deleted, search_text=excluded.search_text, body=excluded.body, head=excluded.head
        WHERE pages.version = NEW.expected_version;
        -- the compare-and-swap: no row written means another writer moved the page; undo the whole statement
        SELECT RAISE(ABORT, 'clawvm: stale version') WHERE changes() != 1;
        -- the recall index moves with the page, in this same statement: the old row out, the live page in
        DELETE FROM page_fts WHERE rowid = (
            SELECT docid FROM page_docs WHERE namespace = NEW.namespace AND page_id = NEW.page_id);
        INSERT INTO page_docs(namespace, page_id) VALUES (NEW.namespace, NEW.page_id) ON CONFLICT DO NOTHING;
        INSERT INTO page_fts(rowid, ns, page_id, title, fields, content)
        SELECT docid, 'ns' || lower(hex(NEW.namespace)), json_extract(NEW.search_text, '$[0]'),
            json_extract(NEW.search_text, '$[1]'), json_extract(NEW.search_text, '$[2]'),
            json_extract(NEW.search_text, '$[3]')
        FROM page_docs WHERE namespace = NEW.namespace AND page_id = NEW.page_id AND NEW.deleted = 0;
        -- and so do recall's own postings: the old document's out ...
        UPDATE recall_stats SET rows = rows - 1, tokens = tokens - r.len FROM recall_docs r WHERE r.docid = (
            SELECT docid FROM page_docs WHERE namespace = NEW.namespace AND page_id = NEW.page_id);
        UPDATE recall_terms SET df = df - 1 WHERE term IN (
            SELECT j.key FROM page_docs d JOIN recall_docs r ON r.docid = d.docid, json_each(r.terms) j
            WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id);
        -- the old document's keys spelled column by column: with a row value "(nsid, term, ...) IN (subquery)"
        -- the planner used the key's first column only and scanned the namespace (66 ms at 10,000 pages)
        UPDATE recall_bounds SET n = n - 1
        WHERE nsid = (SELECT r.nsid FROM page_docs d JOIN recall_docs r ON r.docid = d.docid
                WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id)
            AND (term, freq) IN (
                SELECT j.key, j.value FROM page_docs d JOIN recall_docs r ON r.docid = d.docid, json_each(r.terms) j
                WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id);
        DELETE FROM recall_postings
        WHERE nsid = (SELECT r.nsid FROM page_docs d JOIN recall_docs r ON r.docid = d.docid
                WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id)
            AND docid = (SELECT docid FROM page_docs WHERE namespace = NEW.namespace AND page_id = NEW.page_id)
            AND term IN (
                SELECT j.key FROM page_docs d JOIN recall_docs r ON r.docid = d.docid, json_each(r.terms) j
                WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id);
        DELETE FROM recall_docs WHERE docid = (
            SELECT docid FROM page_docs WHERE namespace = NEW.namespace AND page_id = NEW.page_id);
        -- ... and the live page's in
        INSERT INTO recall_ns(namespace) SELECT NEW.namespace WHERE NEW.deleted = 0 ON CONFLICT DO NOTHING;
        INSERT INTO recall_docs(docid, nsid, type, len, terms)
        SELECT d.docid, n.nsid, NEW.type, json_extract(NEW.postings, '$[0]'), json_extract(NEW.postings, '$[1]')
        FROM page_docs d, recall_ns n
        WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id AND n.namespace = NEW.namespace
            AND NEW.deleted = 0;
        INSERT INTO recall_postings(nsid, term, docid, freq, len)
        SELECT r.nsid, j.key, r.docid, j.value, r.len FROM page_docs d JOIN recall_docs r ON r.docid = d.docid,
            json_each(r.terms) j WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id;
        INSERT INTO recall_terms(term, df)
        SELECT j.key, 1 FROM page_docs d JOIN recall_docs r ON r.docid = d.docid, json_each(r.terms) j
        WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id
        ON CONFLICT(term) DO UPDATE SET df = df + 1;
        INSERT INTO recall_bounds(nsid, term, freq, len, n)
        SELECT r.nsid, j.key, j.value, r.len, 1 FROM page_docs d JOIN recall_docs r ON r.docid = d.docid,
            json_each(r.terms) j WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id
        ON CONFLICT(nsid, term, freq) DO UPDATE SET len = min(len, excluded.len), n = n + 1;
        UPDATE recall_stats SET rows = rows + 1, tokens = tokens + r.len FROM page_docs d
            JOIN recall_docs r ON r.docid = d.docid WHERE d.namespace = NEW.namespace AND d.page_id = NEW.page_id;
        UPDATE journal SET status = 'committed', version = NEW.version
        WHERE txn_id IN (SELECT value FROM json_each(NEW.settles)) AND status IN ('staged', 'validated');
        -- exactly once: a row another process settled meanwhile makes this commit stale, never a second version
        SELECT RAISE(ABORT, 'clawvm: stale version') WHERE changes() != json_array_length(NEW.settles);
        INSERT INTO journal(session_id, namespace, page_id, op, status, commit_mode, request, reasons, version, turn)
        SELECT NEW.session_id, NEW.entry_namespace, NEW.entry_page_id, NEW.op, 'committed', NEW.commit_mode,
            NEW.request, NEW.reasons, NEW.version, NEW.turn
        WHERE NEW.session_id IS NOT NULL;
    END
    """,
)
JSON_PROBE = "SELECT count(*) FROM json_each('[1]')"
COMMIT_ROW = f"INSERT INTO clawvm_commit VALUES ({','.join('?' * 19)})"
STALE = "clawvm: stale version"
# the new journal row's txn_id comes back with the statement; RETURNING needs SQLite 3.35 (older: one more trip)
RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
COMMIT_ROW_RETURNING = COMMIT_ROW + " RETURNING (SELECT max(txn_id) FROM journal)"


# BM25 over the recall index, top-k in SQL. MATCH keeps to the namespaces' tokens (a deleted page has no row); the
# inner query ranks every match carrying only ids and scores, and only the top ``limit`` rows fetch their bodies
SEARCH_SQL = (
    "SELECT top.ns, top.pid, p.type, json_extract(p.body, '$.title', '$.representations.pointer[0]'), top.score,"
    " p.search_text FROM ("
    "SELECT d.namespace AS ns, d.page_id AS pid, -bm25(page_fts, 0, {weights}) AS score FROM page_fts"
    " JOIN page_docs d ON d.docid = page_fts.rowid{type_join}"
    " WHERE page_fts MATCH ? AND d.namespace IN ({marks}){type_filter}"
    " ORDER BY score DESC, d.page_id, d.namespace LIMIT ?) top"
    " JOIN pages p ON p.namespace = top.ns AND p.page_id = top.pid WHERE p.deleted = 0"
    " ORDER BY top.score DESC, top.pid, top.ns"
)
SEARCH_TYPE_JOIN = " JOIN pages t ON t.namespace = d.namespace AND t.page_id = d.page_id"
# recall's own postings (store/topk.py). One trip for what planning needs: the index's row and token counts, each
# term's document count, per (term, freq) the shortest length in the namespaces, and the namespaces' ids
SEARCH_STATS = (
    "SELECT 0, '', rows, tokens, 0 FROM recall_stats WHERE id = 1"
    " UNION ALL SELECT 1, term, df, 0, 0 FROM recall_terms WHERE term IN ({terms})"
    " UNION ALL SELECT 2, b.term, b.freq, min(b.len), sum(b.n) FROM recall_bounds b"
    " JOIN recall_ns n ON n.nsid = b.nsid WHERE n.namespace IN ({ns}) AND b.term IN ({terms}) AND b.n > 0"
    " GROUP BY b.term, b.freq"
    " UNION ALL SELECT 3, namespace, nsid, 0, 0 FROM recall_ns WHERE namespace IN ({ns})"
)
SEARCH_FETCH = (
    "SELECT p.docid, p.term, p.freq, p.len FROM recall_postings p{type_join}"
    " WHERE p.nsid IN ({ns}) AND p.term IN ({terms})"
)
SEARCH_FETCH_TYPE = " JOIN recall_docs r ON r.docid = p.docid AND r.type = ?"
SEARCH_PROBE = (
    "SELECT docid, term, freq FROM recall_postings WHERE nsid IN ({ns}) AND term IN ({terms})"
    " AND docid IN (SELECT value FROM json_each(?))"
)
SEARCH_BODIES = (
    "SELECT d.docid, d.namespace, d.page_id, p.type, json_extract(p.body, '$.title', '$.representations.pointer[0]')"
    " FROM page_docs d JOIN pages p ON p.namespace = d.namespace AND p.page_id = d.page_id"
    " WHERE d.docid IN (SELECT value FROM json_each(?)) AND p.deleted = 0"
)


def classify(exc: sqlite3.Error, path: str) -> StoreError:
    """A SQLite failure named for what it is: busy (retryable), disk full, read-only, I/O, or other."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc):
        return StoreBusy(f"the database {path} stayed locked by another writer: {exc}")
    if primary == sqlite3.SQLITE_FULL:
        return StoreUnavailable(f"disk full: the database {path} cannot grow ({exc}); free space, then retry")
    if primary == sqlite3.SQLITE_READONLY:
        return StoreUnavailable(f"the database {path} is read-only ({exc}); nothing can be written to it")
    if primary in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CANTOPEN):
        return StoreUnavailable(f"I/O error on the database {path}: {exc}")
    return StoreError(f"the database {path} failed: {exc}")


def _translated(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Every public store call answers a SQLite failure as a named StoreError, never as a bare sqlite3 error."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except sqlite3.Error as exc:
            store = args[0]
            raise classify(exc, getattr(store, "path", "?")) from exc

    return wrapper


def _create_private(path: Path) -> None:
    """A new database file is the owner's alone (0600, in a 0700 folder when we create the folder); SQLite gives
    its -wal and -shm files the database file's mode. An existing file is left as it is, with a warning if others
    can read it."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s is readable by other users (mode %o); chmod 600 it to keep memory private", path, mode)
    else:
        os.close(fd)


class SQLiteStore:
    """One aiosqlite connection per process, plus recall's read connection for a file database; SQLite's file locks
    arbitrate between processes."""

    def __init__(self, conn: aiosqlite.Connection, path: str, timeout: float = DEFAULT_STORE_TIMEOUT) -> None:
        self._conn = conn
        self.path = path
        self.timeout = timeout
        self._write_lock = asyncio.Lock()
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened
        self._reader: sqlite3.Connection | None = None  # recall's read connection (a file database only)
        self._reader_lock = threading.Lock()

    @classmethod
    async def open(cls, path: str | Path, timeout: float | None = None) -> SQLiteStore:
        """Open (creating when new) the database at ``path``; ``timeout`` (default: CLAWVM_STORE_TIMEOUT, else 5 s)
        bounds every wait for the write lock."""
        timeout = store_timeout() if timeout is None else timeout
        target = str(path)
        if target != ":memory:":
            file = Path(target)
            if file.is_dir():
                raise StoreError(f"{target} is a directory; give the path of a database file")
            try:
                _create_private(file)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the database {target}: {exc.strerror or exc}") from exc
            if not os.access(file, os.W_OK) or not os.access(file.parent, os.W_OK | os.X_OK):
                raise StoreUnavailable(
                    f"the database {target} is read-only for this user (the file or its folder is not writable); "
                    "clawvm-mcp needs to write it"
                )
        try:
            conn = await aiosqlite.connect(target, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        store = cls(conn, target, timeout)
        try:
            await store._prepare()
        except sqlite3.Error as exc:
            await conn.close()
            raise classify(exc, target) from exc
        except BaseException:
            await conn.close()
            raise
        if target != ":memory:":
            info = os.stat(target)
            store._identity = (info.st_dev, info.st_ino)
        return store

    def _check_file(self) -> None:
        """A database file deleted or replaced under us would take every later write with it: refuse instead."""
        if self._identity is None:
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            raise StoreUnavailable(
                f"the database file {self.path} was deleted while in use; nothing more is written to it. "
                "Restart clawvm-mcp to open a new database"
            ) from None
        if (info.st_dev, info.st_ino) != self._identity:
            raise StoreUnavailable(
                f"the database file {self.path} was replaced while in use; nothing more is written to the old one. "
                "Restart clawvm-mcp to open the new file"
            )

    async def _prepare(self) -> None:
        c = self._conn
        try:
            await c.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            # one statement, so one snapshot: read apart, another process's first migration could commit between
            # them, and its tables without its application id looked like another application's database
            header = await self._one(
                "SELECT (SELECT application_id FROM pragma_application_id),"
                " (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master)"
            )
            assert header is not None
            app_id, version, tables = (int(v) for v in header)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable SQLite database ({exc})") from exc
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise StoreError(f"{self.path} is a SQLite database of another application; refusing to touch it")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema v{version}; this clawvm-mcp knows up to v{SCHEMA_VERSION}")
        try:  # the commit trigger settles staged rows through json_each: fail here, not at the first write
            await self._scalar(JSON_PROBE)
        except sqlite3.OperationalError as exc:
            raise StoreError(
                f"this Python's SQLite {sqlite3.sqlite_version} lacks the JSON functions clawvm-mcp needs ({exc}); "
                "use a Python whose sqlite3 module has them (SQLite 3.38+ builds them in)"
            ) from exc
        await c.execute("PRAGMA journal_mode = WAL")
        await c.execute("PRAGMA synchronous = FULL")
        await c.execute("PRAGMA foreign_keys = ON")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            if (
                number == HEAD_SCHEMA
                and (pages := await self._scalar("SELECT count(*) FROM pages")) >= INDEX_PROGRESS_EVERY
            ):
                log.info("%s: storing the heads of %d pages (a few seconds per 100,000)", self.path, pages)
            async with self._transaction():
                # read again under the write lock: another process opening the same file may have migrated it
                # since the version was read above (servers started together on a new file)
                if await self._scalar("PRAGMA user_version") >= number:
                    continue
                for statement in _statements(MIGRATIONS[number - 1]):
                    await c.execute(statement)
                if number == SEARCH_SCHEMA:
                    await self._index_pages()
                if number == POSTINGS_SCHEMA:
                    await self._index_postings()
                await c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                await c.execute(f"PRAGMA user_version = {number}")
            log.info("migrated %s to schema v%d", self.path, number)
        for statement in COMMIT_VIEW:
            await c.execute(statement)
        if self.path != ":memory:":  # a file we can open but not write (read-only mount, foreign owner): say so now
            async with self._transaction():
                await c.execute("UPDATE clock SET seq = seq WHERE id = 1")

    async def _index_pages(self) -> None:
        """The recall index for pages written before it existed, inside the migration's transaction: each page's
        search text is rebuilt by today's tokenizer (the old column held raw lower-cased text). Large stores log
        their progress (stderr) every INDEX_PROGRESS_EVERY pages."""
        c = self._conn
        total = await self._scalar("SELECT count(*) FROM pages")
        if total >= INDEX_PROGRESS_EVERY:
            log.info("%s: building the recall index for %d pages", self.path, total)
        done, after = 0, ("", "")
        while rows := list(
            await c.execute_fetchall(
                "SELECT namespace, page_id, deleted, body FROM pages WHERE (namespace, page_id) > (?, ?)"
                " ORDER BY namespace, page_id LIMIT ?",
                (*after, INDEX_BATCH),
            )
        ):
            batch = []  # (docid, namespace, page_id, deleted, search text); page_docs is new, so docids are ours
            for i, (namespace, page_id, deleted, body) in enumerate(rows, done + 1):
                data = json.loads(body)
                text = encode(columns(page_id, str(data.get("title", "")), data.get("fields") or {}, data["content"]))
                batch.append((i, namespace, page_id, deleted, text))
            await c.executemany(
                "UPDATE pages SET search_text = ? WHERE namespace = ? AND page_id = ?",
                [(b[4], b[1], b[2]) for b in batch],
            )
            await c.executemany(
                "INSERT INTO page_docs(docid, namespace, page_id) VALUES (?,?,?)", [b[:3] for b in batch]
            )
            await c.executemany(
                "INSERT INTO page_fts(rowid, ns, page_id, title, fields, content) VALUES (?,?,?,?,?,?)",
                [(b[0], namespace_token(b[1]), *decode(b[4]).as_tuple()) for b in batch if not b[3]],
            )
            before, done = done, done + len(rows)
            if total >= INDEX_PROGRESS_EVERY and done // INDEX_PROGRESS_EVERY > before // INDEX_PROGRESS_EVERY:
                log.info("%s: recall index %d of %d pages", self.path, done, total)
            after = (rows[-1][0], rows[-1][1])

    async def _index_postings(self) -> None:
        """Recall's own postings for the pages indexed before they existed, from each live page's stored search
        text, inside the migration's transaction; the per-term and per-index counts are then summed from them."""
        c = self._conn
        total = await self._scalar("SELECT count(*) FROM page_docs")
        if total >= INDEX_PROGRESS_EVERY:
            log.info("%s: building recall's postings for %d pages", self.path, total)
        await c.execute("INSERT INTO recall_ns(namespace) SELECT DISTINCT namespace FROM page_docs")
        nsids = {str(r[1]): int(r[0]) for r in await c.execute_fetchall("SELECT nsid, namespace FROM recall_ns")}
        done, after = 0, 0
        while rows := list(
            await c.execute_fetchall(
                "SELECT d.docid, d.namespace, p.type, p.search_text FROM page_docs d JOIN pages p"
                " ON p.namespace = d.namespace AND p.page_id = d.page_id WHERE d.docid > ? AND p.deleted = 0"
                " ORDER BY d.docid LIMIT ?",
                (after, INDEX_BATCH),
            )
        ):
            docs: list[tuple[int, int, str, int, str]] = []
            postings: list[tuple[int, str, int, int, int]] = []
            for docid, namespace, page_type, text in rows:
                length, freq = weighted(decode(text))
                nsid = nsids[namespace]
                docs.append((docid, nsid, page_type, length, json.dumps(freq, ensure_ascii=False)))
                postings.extend((nsid, term, docid, f, length) for term, f in freq.items())
            await c.executemany("INSERT INTO recall_docs VALUES (?,?,?,?,?)", docs)
            await c.executemany("INSERT INTO recall_postings VALUES (?,?,?,?,?)", postings)
            before, done, after = done, done + len(rows), int(rows[-1][0])
            if total >= INDEX_PROGRESS_EVERY and done // INDEX_PROGRESS_EVERY > before // INDEX_PROGRESS_EVERY:
                log.info("%s: recall postings %d of %d pages", self.path, done, total)
        await c.execute("INSERT INTO recall_terms SELECT term, count(*) FROM recall_postings GROUP BY term")
        await c.execute(
            "INSERT INTO recall_bounds SELECT nsid, term, freq, min(len), count(*) FROM recall_postings"
            " GROUP BY nsid, term, freq"
        )
        await c.execute(
            "UPDATE recall_stats SET rows = (SELECT count(*) FROM recall_docs),"
            " tokens = (SELECT coalesce(sum(len), 0) FROM recall_docs)"
        )

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        """First row in one trip to the connection's thread (execute + fetch + close would be three)."""
        rows = list(await self._conn.execute_fetchall(sql, tuple(params)))
        return rows[0] if rows else None

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> int:
        row = await self._one(sql, params)
        return int(row[0]) if row is not None else 0

    async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """One statement that takes the write lock when it starts (BEGIN IMMEDIATE, or a write in autocommit), in one
        trip. SQLite's busy handler waits up to ``timeout`` for another writer; then the statement fails having
        changed nothing (StoreBusy). Shielded: a caller cancelled mid-statement must not leave it half-known."""
        self._check_file()
        await self._settle_connection()
        with anyio.CancelScope(shield=True):
            rows = list(await self._conn.execute_fetchall(sql, params))
        return rows

    async def _settle_connection(self) -> None:
        """Outside any transaction before a new one: a transaction an earlier failure left open is rolled back."""
        if self._conn.in_transaction:
            log.warning("%s: rolling back a transaction an earlier call left open", self.path)
            with anyio.CancelScope(shield=True):
                await self._conn.execute("ROLLBACK")

    @asynccontextmanager
    async def _transaction(self) -> AsyncGenerator[aiosqlite.Connection, None]:
        """BEGIN IMMEDIATE takes the write lock up front (waiting at most ``timeout``). BEGIN, COMMIT and ROLLBACK
        are shielded from cancellation, so a caller that gives up never leaves the connection inside a transaction;
        a ROLLBACK that fails too is logged and the original error is the one raised."""
        async with self._write_lock:
            await self._write("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    try:
                        await self._conn.execute("ROLLBACK")
                    except sqlite3.Error as rollback:
                        log.error("%s: ROLLBACK failed after %r: %s", self.path, exc, rollback)
                        exc.add_note(f"(the ROLLBACK that followed failed too: {rollback})")
                raise
            else:
                with anyio.CancelScope(shield=True):
                    await self._conn.execute("COMMIT")

    async def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        await self._conn.close()

    @_translated
    async def synchronous(self) -> int:
        """The connection's ``PRAGMA synchronous`` (2 = FULL): what a durability claim or a benchmark reports."""
        return await self._scalar("PRAGMA synchronous")

    @_translated
    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._one("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        return None if row is None else session_from_row(row)

    @_translated
    async def claim_session(
        self, session_id: str, principal: str, project_id: str, budget: int | None
    ) -> tuple[SessionRecord, bool] | None:
        async with self._write_lock:
            rows = await self._write(
                "INSERT INTO sessions(session_id, principal, project_id, budget) VALUES (?,?,?,?)"
                " ON CONFLICT(session_id) DO NOTHING RETURNING *",
                (session_id, principal, project_id, budget or 4000),
            )
            if rows:
                return session_from_row(rows[0]), True
            rows = await self._write(
                "UPDATE sessions SET ended = 0, budget = coalesce(?, budget)"
                " WHERE session_id = ? AND principal = ? AND (? = 'default' OR project_id = ?) RETURNING *",
                (budget, session_id, principal, project_id, project_id),
            )
        return (session_from_row(rows[0]), False) if rows else None

    @_translated
    async def save_session(self, record: SessionRecord, added: SessionCounters) -> SessionRecord:
        async with self._write_lock:
            rows = await self._write(
                "UPDATE sessions SET budget = ?, turn = max(turn, ?), ended = ?, state = ?, hits = hits + ?,"
                " duplicate_signature = duplicate_signature + ?, physical_insufficiency = physical_insufficiency + ?,"
                " boundaries = boundaries + ? WHERE session_id = ? RETURNING *",
                (
                    record.budget,
                    record.turn,
                    int(record.ended),
                    dumps(record.state),
                    added.hits,
                    added.duplicate_signature,
                    added.physical_insufficiency,
                    added.boundaries,
                    record.session_id,
                ),
            )
        if not rows:
            raise StoreError(f"session {record.session_id!r} is not in the database {self.path}")
        return session_from_row(rows[0])

    @_translated
    async def data_version(self) -> int:
        self._check_file()
        return await self._scalar("PRAGMA data_version")

    @_translated
    async def change_seq(self) -> int:
        return await self._scalar("SELECT seq FROM clock WHERE id = 1")

    @_translated
    async def pages_since(self, namespaces: list[str], seq: int) -> list[tuple[str, Page]]:
        marks = ",".join("?" * len(namespaces))
        rows = await self._conn.execute_fetchall(
            f"SELECT namespace, body FROM pages WHERE seq > ? AND namespace IN ({marks}) ORDER BY seq",
            (seq, *namespaces),
        )
        return [(row[0], page_from_json(json.loads(row[1]))) for row in rows]

    @_translated
    async def load_pages(self, namespaces: list[str]) -> list[tuple[str, Page]]:
        marks = ",".join("?" * len(namespaces))
        # the body as the stored bytes (CAST: no UTF-8 decoding into str, 0.36 against 0.9-1.8 s of CPU at 100,000
        # pages); json.loads takes bytes when a page is first decoded
        sql = f"SELECT namespace, head, CAST(body AS BLOB) FROM pages WHERE namespace IN ({marks}) AND deleted = 0"
        # In batches, the next one read by aiosqlite's thread (the GIL released while SQLite reads) while this
        # thread builds the pages of the last: a 100,000-page load overlaps its two halves. Not row by row: that
        # would cross to the thread 100,000 times.
        out: list[tuple[str, Page]] = []
        async with self._conn.execute(sql, namespaces) as cur:
            cur.row_factory = None  # plain tuples: sqlite3.Row objects cost more than the head's decoding
            batch = await cur.fetchmany(LOAD_BATCH)
            while batch:
                following = asyncio.ensure_future(cur.fetchmany(LOAD_BATCH))
                try:
                    out.extend([(row[0], page_from_head(parse_head(row[1]), row[2])) for row in batch])
                finally:
                    batch = await following
        return out

    @_translated
    async def get_page(self, namespace: str, page_id: str) -> Page | None:
        row = await self._one("SELECT body FROM pages WHERE namespace = ? AND page_id = ?", (namespace, page_id))
        return None if row is None else page_from_json(json.loads(row[0]))

    @_translated
    async def count_pages(self, namespace: str) -> int:
        return await self._scalar("SELECT count(*) FROM pages WHERE namespace = ? AND deleted = 0", (namespace,))

    async def _insert_entry(self, c: aiosqlite.Connection, entry: JournalEntry) -> int:
        cur = await c.execute(
            "INSERT INTO journal(session_id, namespace, page_id, op, status, commit_mode, request, reasons, version,"
            " turn) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                entry.session_id,
                entry.namespace,
                entry.page_id,
                entry.op,
                entry.status,
                entry.commit_mode,
                dumps(entry.request),
                dumps(entry.reasons),
                entry.version,
                entry.turn,
            ),
        )
        return int(cur.lastrowid or 0)

    @_translated
    async def stage(self, entry: JournalEntry) -> int:
        async with self._transaction() as c:
            return await self._insert_entry(c, entry)

    @_translated
    async def try_commit(self, write: PageCommit) -> Committed | None:
        """page_write commit="now": one autocommit statement, one trip. None if the page is not at
        ``expected_version`` or a row it settles is settled already (the statement left nothing behind), or SQLite
        lacks RETURNING."""
        if not RETURNING:
            return None
        async with self._write_lock:
            try:
                rows = await self._write(COMMIT_ROW_RETURNING, _commit_row(write))
            except sqlite3.IntegrityError as exc:
                if str(exc) != STALE:
                    raise
                return None
        return _settled(write, rows[0][0])

    @_translated
    async def commit(
        self,
        writes: list[PageCommit],
        rejections: Sequence[Rejection] = (),
    ) -> tuple[list[Committed], list[Conflict]]:
        if len(writes) == 1 and not rejections:
            done = await self.try_commit(writes[0])
            if done is not None:
                return [done], []
            # stale: nothing was written; the transaction below checks again and names the current version
        conflicts: list[Conflict] = []
        committed: list[Committed] = []
        async with self._transaction() as c:  # a boundary flush: every page in one transaction
            # rejections first: they are checked against the version the page has before this flush commits it
            for r in rejections:  # under the write lock: what we read here is what the update will see
                current = await self._version(r.namespace, r.page_id)
                marks = ",".join("?" * len(r.txn_ids))
                open_rows = await self._scalar(
                    f"SELECT count(*) FROM journal WHERE txn_id IN ({marks}) AND status IN ('staged', 'validated')",
                    r.txn_ids,
                )
                if current != r.expected_version or open_rows != len(r.txn_ids):
                    conflicts.append(Conflict(r.page_id, current))
                    continue
                await self._mark(c, list(r.txn_ids), "rejected", list(r.reasons))
            for w in writes:
                try:
                    rows = list(
                        await c.execute_fetchall(COMMIT_ROW_RETURNING if RETURNING else COMMIT_ROW, _commit_row(w))
                    )
                except sqlite3.IntegrityError as exc:
                    if str(exc) != STALE:
                        raise
                    # ABORT undid only this page's statement; the transaction goes on with the others
                    conflicts.append(Conflict(w.page.page_id, await self._version(w.namespace, w.page.page_id)))
                else:
                    last = rows[0][0] if rows else await self._scalar("SELECT max(txn_id) FROM journal")
                    committed.append(_settled(w, last))
        return committed, conflicts

    async def _version(self, namespace: str, page_id: str) -> int:
        return await self._scalar("SELECT version FROM pages WHERE namespace = ? AND page_id = ?", (namespace, page_id))

    async def _mark(
        self, c: aiosqlite.Connection, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]
    ) -> None:
        if txn_ids:
            await c.execute(
                f"UPDATE journal SET status = ?, reasons = ? WHERE txn_id IN ({','.join('?' * len(txn_ids))})"
                " AND status IN ('staged', 'validated')",  # a settled row is history: never rewritten
                (status, dumps(reasons), *txn_ids),
            )

    @_translated
    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        async with self._transaction() as c:
            await self._mark(c, txn_ids, status, reasons)

    @_translated
    async def pending(self, session_id: str) -> list[JournalEntry]:
        async with self._conn.execute(
            "SELECT * FROM journal WHERE session_id = ? AND status IN ('staged','validated') ORDER BY txn_id",
            (session_id,),
        ) as cur:
            return [entry_from_row(row) async for row in cur]

    @_translated
    async def journal(self, session_id: str, limit: int) -> list[JournalEntry]:
        async with self._conn.execute(
            "SELECT * FROM journal WHERE session_id = ? ORDER BY txn_id DESC LIMIT ?", (session_id, limit)
        ) as cur:
            rows = [entry_from_row(row) async for row in cur]
        return rows[::-1]

    @_translated
    async def journal_counts(self, session_id: str) -> dict[str, int]:
        async with self._conn.execute(
            "SELECT status, count(*) FROM journal WHERE session_id = ? GROUP BY status", (session_id,)
        ) as cur:
            return {row[0]: int(row[1]) async for row in cur}

    @_translated
    async def add_tool_call(self, call: ToolCall) -> None:
        async with self._transaction() as c:
            await c.execute(
                "INSERT INTO tool_calls(session_id, call_id, signature, tool, args, evidence_page_id, turn, has_result)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(session_id, call_id) DO UPDATE SET has_result=excluded.has_result",
                (
                    call.session_id,
                    call.call_id,
                    call.signature,
                    call.tool,
                    call.args_json,
                    call.evidence_page_id,
                    call.turn,
                    int(call.has_result),
                ),
            )

    @_translated
    async def tool_calls(self, session_id: str) -> list[ToolCall]:
        async with self._conn.execute(
            "SELECT * FROM tool_calls WHERE session_id = ? ORDER BY turn, call_id", (session_id,)
        ) as cur:
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
                async for r in cur
            ]

    @_translated
    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None:
        if not events:
            return
        async with self._transaction() as c:
            await c.executemany(
                "INSERT INTO faults(session_id, kind, turn, subject, detail) VALUES (?,?,?,?,?)",
                [(session_id, e.kind, e.turn, e.subject, e.detail) for e in events],
            )

    @_translated
    async def faults(self, session_id: str) -> list[FaultEvent]:
        async with self._conn.execute(
            "SELECT kind, turn, subject, detail FROM faults WHERE session_id = ? ORDER BY id", (session_id,)
        ) as cur:
            return [FaultEvent(r[0], r[1], r[2], r[3]) async for r in cur]

    @_translated
    async def search(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """BM25 over recall's own postings, best first, at most ``limit``: the exact ranking FTS5's bm25() gives
        (``search_fts``), found without scoring every matching page (store/topk.py); only the top pages are read.

        A file database is searched on a read connection of its own, all statements in one read transaction (so
        they see one commit), run right here: the ranking is Python and holds the GIL wherever it runs, so a
        worker thread would only free the loop for the statements (~0.5 ms at 6,000 pages) and cost two thread
        wake-ups, which take milliseconds on a loaded machine. A WAL reader waits for nothing but a rare WAL
        recovery: if it would (or another thread holds the reader), the search runs in a worker thread with the
        store's usual busy timeout instead. ``:memory:`` has only the one connection."""
        if not namespaces or not terms:
            return []
        if self.path == ":memory:":
            steps = _search_steps(namespaces, terms, page_type, limit)
            try:
                request = next(steps)
                while True:
                    request = steps.send(list(await self._conn.execute_fetchall(*request)))
            except StopIteration as done:
                hits: list[SearchHit] = done.value
                return hits
        if self._reader_lock.acquire(blocking=False):
            try:
                return self._search_on_reader(_search_steps(namespaces, terms, page_type, limit), wait=False)
            except sqlite3.OperationalError as exc:
                if not isinstance(classify(exc, self.path), StoreBusy):
                    raise
            finally:
                self._reader_lock.release()
        return await anyio.to_thread.run_sync(self._search_waiting, namespaces, terms, page_type, limit)

    def _search_waiting(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        with self._reader_lock:
            return self._search_on_reader(_search_steps(namespaces, terms, page_type, limit), wait=True)

    def _search_on_reader(
        self, steps: Generator[tuple[str, list[Any]], list[Any], list[SearchHit]], wait: bool
    ) -> list[SearchHit]:
        """The steps answered on the read connection (the caller holds ``_reader_lock``); ``wait``: whether a busy
        database is waited for (up to the store's timeout) or fails at once."""
        if self._reader is None:
            self._reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # reads through a mapping, not a pread per page: postings lie on many pages, most of them not in this
            # connection's own page cache yet (every question touches different ones)
            self._reader.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        conn = self._reader
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000) if wait else 0}")
        conn.execute("BEGIN")
        try:
            request = next(steps)
            while True:
                request = steps.send(conn.execute(*request).fetchall())
        except StopIteration as done:
            hits: list[SearchHit] = done.value
            return hits
        finally:
            conn.execute("COMMIT")

    @_translated
    async def search_fts(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """FTS5's own bm25() over every matching row: the exhaustive ranking ``search`` must equal (tests, bench)."""
        if not namespaces or not terms:
            return []
        sql = SEARCH_SQL.format(
            weights=", ".join(str(w) for w in WEIGHTS),
            marks=",".join("?" * len(namespaces)),
            type_join="" if page_type is None else SEARCH_TYPE_JOIN,
            type_filter="" if page_type is None else " AND t.type = ?",
        )
        params: list[Any] = [match_expression(namespaces, terms), *namespaces]
        if page_type is not None:
            params.append(page_type)
        params.append(limit)
        rows = await self._conn.execute_fetchall(sql, params)
        hits = []
        for r in rows:
            title, pointer = json.loads(r[3])  # one parse of the body for both
            hits.append(SearchHit(r[0], r[1], r[2], title, pointer, float(r[4]), matched(r[5], terms)))
        return hits

    @_translated
    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        sql = (
            "SELECT session_id FROM sessions WHERE principal = ? AND ended = 0 AND substr(session_id, 1, ?) = ?"
            " ORDER BY session_id LIMIT ?"
        )
        async with self._conn.execute(sql, (principal, len(prefix), prefix, limit)) as cur:
            return [str(row[0]) async for row in cur]


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def _search_steps(
    namespaces: list[str], terms: list[str], page_type: str | None, limit: int
) -> Generator[tuple[str, list[Any]], list[Any], list[SearchHit]]:
    """recall's search as the statements it runs, each answered with its rows (sans I/O: ``:memory:`` answers on
    the aiosqlite connection, a file database on its read connection)."""
    stats = yield (
        SEARCH_STATS.format(ns=_marks(namespaces), terms=_marks(terms)),
        [*terms, *namespaces, *terms, *namespaces],
    )
    rows, tokens, nsids = 0, 0, []
    df: dict[str, int] = {}
    shapes: dict[str, list[tuple[int, int]]] = {}
    counts: dict[str, int] = {}
    for kind, key, a, b, n in stats:
        if kind == 0:
            rows, tokens = int(a), int(b)
        elif kind == 1:
            df[str(key)] = int(a)
        elif kind == 2:
            shapes.setdefault(str(key), []).append((int(a), int(b)))
            counts[str(key)] = counts.get(str(key), 0) + int(n)
        else:
            nsids.append(int(a))
    if not rows or not nsids:
        return []
    avg = tokens / rows  # FTS5's avgdl: (double)nToken / (double)nRow
    by_type = [] if page_type is None else [page_type]
    fetch_sql = SEARCH_FETCH.format(
        type_join="" if page_type is None else SEARCH_FETCH_TYPE, ns=_marks(nsids), terms="{terms}"
    )
    steps = topk.top_k(topk.plan(terms, rows, df, shapes, counts, avg), avg, limit)
    try:
        request = next(steps)
        while True:
            if isinstance(request, topk.Fetch):
                got = yield (fetch_sql.format(terms=_marks(request.terms)), [*by_type, *nsids, *request.terms])
            else:
                sql = SEARCH_PROBE.format(ns=_marks(nsids), terms=_marks(request.terms))
                got = yield (sql, [*nsids, *request.terms, dumps(list(request.docids))])
            request = steps.send(got)
    except StopIteration as done:
        scored: list[topk.Scored] = done.value
    if not scored:
        return []
    found = {s.docid: s for s in scored}
    hits = []
    for docid, namespace, page_id, type_, shown in (yield (SEARCH_BODIES, [dumps(list(found))])):
        title, pointer = json.loads(shown)  # one parse of the body for both
        s = found[int(docid)]
        hits.append(SearchHit(namespace, page_id, type_, title, pointer, s.score, s.matched))
    hits.sort(key=lambda h: (-h.score, h.page_id, h.namespace))
    return hits[:limit]


def _commit_row(w: PageCommit) -> tuple[Any, ...]:
    """The clawvm_commit row of one page commit; the page comes at its new version, expected_version + 1."""
    if w.page.version != w.expected_version + 1:
        raise ValueError(f"page {w.page.page_id!r} v{w.page.version} cannot follow v{w.expected_version}")
    e = w.new_entry
    page = w.page
    cols = columns(page.page_id, page.title, page.fields, page.content)
    body = page_to_json(page)
    return (
        w.namespace,
        w.page.page_id,
        w.page.type,
        w.page.version,
        int(w.page.deleted),
        encode(cols),
        dumps(body),
        w.expected_version,
        dumps(w.txn_ids),
        *(
            (None,) * 8
            if e is None
            else (e.session_id, e.namespace, e.page_id, e.op, e.commit_mode, dumps(e.request), dumps(e.reasons), e.turn)
        ),
        dumps(head_of(body)),
        None if page.deleted else encode_postings(cols),
    )


def _settled(w: PageCommit, last_txn_id: int) -> Committed:
    """The journal rows a committed page settled: the earlier staged ones, then the new row (the last one written)."""
    if w.new_entry is None:
        return Committed(w.page.page_id, w.page.version, w.txn_ids)
    entry_txn = int(last_txn_id)
    return Committed(w.page.page_id, w.page.version, (*w.txn_ids, entry_txn), entry_txn)


def _statements(script: str) -> list[str]:
    """The statements of a migration; a trigger's body has semicolons of its own, so split where SQLite says a
    statement is complete, not at every semicolon."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip().rstrip(";").strip())
            pending = ""
    if pending.strip(" \n;"):
        out.append(pending.strip().rstrip(";").strip())
    return out
