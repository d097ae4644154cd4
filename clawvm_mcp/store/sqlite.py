"""aiosqlite implementation of ``Store``: WAL, foreign keys, forward migrations, one transaction per commit."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncGenerator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite

from ..canonical import dumps
from ..faults import FaultEvent
from ..pages import Page
from .base import (
    Committed,
    Conflict,
    JournalEntry,
    JournalStatus,
    PageCommit,
    SearchHit,
    SessionRecord,
    StoreError,
    ToolCall,
    conflict_reasons,
    page_from_json,
    page_to_json,
)
from .search import WEIGHTS, columns, decode, encode, match_expression, matched, namespace_token, search_text

log = logging.getLogger(__name__)
APPLICATION_ID = 0x436C5756  # "ClWV": tells our files from any other SQLite database
BUSY_TIMEOUT_MS = 10_000
LOCK_RETRIES = 50

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
)
SCHEMA_VERSION = len(MIGRATIONS)
SEARCH_SCHEMA = 2  # the migration that built the recall index
INDEX_PROGRESS_EVERY = 10_000  # pages between progress lines while a migration indexes a large store

# A page commit as ONE statement: an insert into this per-connection TEMP view runs the compare-and-swap upsert,
# settles the earlier staged rows and writes the new journal row in its trigger. In autocommit that statement is
# its own transaction (the write lock is taken when it starts, the fsync happens when it ends), so a single-page
# commit is one trip to aiosqlite's thread instead of four. TEMP objects live with the connection: no migration.
COMMIT_VIEW = (
    "CREATE TEMP VIEW clawvm_commit(namespace, page_id, type, version, deleted, search_text, body, expected_version,"
    " settles, session_id, entry_namespace, entry_page_id, op, commit_mode, request, reasons, turn)"
    " AS SELECT " + ", ".join(["NULL"] * 17) + " WHERE 0",
    """
    CREATE TEMP TRIGGER clawvm_commit_page INSTEAD OF INSERT ON clawvm_commit BEGIN
        INSERT INTO pages(namespace, page_id, type, version, deleted, search_text, body)
        VALUES (NEW.namespace, NEW.page_id, NEW.type, NEW.version, NEW.deleted, NEW.search_text, NEW.body)
        ON CONFLICT(namespace, page_id) DO UPDATE SET type=excluded.type, version=excluded.version,
            deleted=excluded.deleted, search_text=excluded.search_text, body=excluded.body
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
        UPDATE journal SET status = 'committed', version = NEW.version
        WHERE txn_id IN (SELECT value FROM json_each(NEW.settles)) AND status IN ('staged', 'validated');
        INSERT INTO journal(session_id, namespace, page_id, op, status, commit_mode, request, reasons, version, turn)
        SELECT NEW.session_id, NEW.entry_namespace, NEW.entry_page_id, NEW.op, 'committed', NEW.commit_mode,
            NEW.request, NEW.reasons, NEW.version, NEW.turn
        WHERE NEW.session_id IS NOT NULL;
    END
    """,
)
JSON_PROBE = "SELECT count(*) FROM json_each('[1]')"
COMMIT_ROW = f"INSERT INTO clawvm_commit VALUES ({','.join('?' * 17)})"
STALE = "clawvm: stale version"
# the new journal row's txn_id comes back with the statement; RETURNING needs SQLite 3.35 (older: one more trip)
RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
COMMIT_ROW_RETURNING = COMMIT_ROW + " RETURNING (SELECT max(txn_id) FROM journal)"


# BM25 over the recall index, top-k in SQL: MATCH keeps to the namespaces' tokens, the joins to their real rows
SEARCH_SQL = (
    "SELECT d.namespace, p.body, -bm25(page_fts, 0, {weights}) AS score, p.search_text FROM page_fts"
    " JOIN page_docs d ON d.docid = page_fts.rowid JOIN pages p ON p.namespace = d.namespace AND p.page_id = d.page_id"
    " WHERE page_fts MATCH ? AND d.namespace IN ({marks}) AND p.deleted = 0{type_filter}"
    " ORDER BY score DESC, d.page_id, d.namespace LIMIT ?"
)


def _entry(row: sqlite3.Row) -> JournalEntry:
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
        txn_id=row["txn_id"],
    )


class SQLiteStore:
    """One aiosqlite connection per process; SQLite's file locks arbitrate between processes."""

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> SQLiteStore:
        target = str(path)
        if target != ":memory:":
            if Path(target).is_dir():
                raise StoreError(f"{target} is a directory; give the path of a database file")
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(target, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {target}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        store = cls(conn, target)
        try:
            await store._prepare()
        except BaseException:
            await conn.close()
            raise
        return store

    async def _prepare(self) -> None:
        c = self._conn
        try:
            await c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            app_id = await self._scalar("PRAGMA application_id")
            version = await self._scalar("PRAGMA user_version")
            tables = await self._scalar("SELECT count(*) FROM sqlite_master")
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
            async with self._transaction():
                for statement in _statements(MIGRATIONS[number - 1]):
                    await c.execute(statement)
                if number == SEARCH_SCHEMA:
                    await self._index_pages()
                await c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                await c.execute(f"PRAGMA user_version = {number}")
            log.info("migrated %s to schema v%d", self.path, number)
        for statement in COMMIT_VIEW:
            await c.execute(statement)

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
                " ORDER BY namespace, page_id LIMIT 1000",
                after,
            )
        ):
            for namespace, page_id, deleted, body in rows:
                data = json.loads(body)
                text = encode(columns(page_id, str(data.get("title", "")), data.get("fields") or {}, data["content"]))
                await c.execute(
                    "UPDATE pages SET search_text = ? WHERE namespace = ? AND page_id = ?", (text, namespace, page_id)
                )
                cur = await c.execute("INSERT INTO page_docs(namespace, page_id) VALUES (?, ?)", (namespace, page_id))
                if not deleted:
                    await c.execute(
                        "INSERT INTO page_fts(rowid, ns, page_id, title, fields, content) VALUES (?,?,?,?,?,?)",
                        (cur.lastrowid, namespace_token(namespace), *decode(text).as_tuple()),
                    )
                done += 1
                if total >= INDEX_PROGRESS_EVERY and done % INDEX_PROGRESS_EVERY == 0:
                    log.info("%s: recall index %d of %d pages", self.path, done, total)
            after = (rows[-1][0], rows[-1][1])

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        """First row in one trip to the connection's thread (execute + fetch + close would be three)."""
        rows = list(await self._conn.execute_fetchall(sql, tuple(params)))
        return rows[0] if rows else None

    async def _scalar(self, sql: str, params: Iterable[Any] = ()) -> int:
        row = await self._one(sql, params)
        return int(row[0]) if row is not None else 0

    async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """One statement that takes the write lock when it starts (BEGIN IMMEDIATE, or a write in autocommit), in one
        trip. A busy file fails it before it changed anything: retried here, never shown to the model."""
        for attempt in range(LOCK_RETRIES):
            try:
                return list(await self._conn.execute_fetchall(sql, params))
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == LOCK_RETRIES - 1:
                    raise StoreError(f"database busy: {exc}") from exc
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def _transaction(self) -> AsyncGenerator[aiosqlite.Connection, None]:
        """BEGIN IMMEDIATE takes the write lock up front; a busy file is retried here, never shown to the model."""
        async with self._write_lock:
            await self._write("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()

    async def synchronous(self) -> int:
        """The connection's ``PRAGMA synchronous`` (2 = FULL): what a durability claim or a benchmark reports."""
        return await self._scalar("PRAGMA synchronous")

    async def get_session(self, session_id: str) -> SessionRecord | None:
        row = await self._one("SELECT * FROM sessions WHERE session_id = ?", (session_id,))
        if row is None:
            return None
        return SessionRecord(
            row["session_id"],
            row["principal"],
            row["project_id"],
            row["budget"],
            row["turn"],
            bool(row["ended"]),
            json.loads(row["state"]),
        )

    async def put_session(self, record: SessionRecord) -> None:
        async with self._transaction() as c:
            await c.execute(
                "INSERT INTO sessions(session_id, principal, project_id, budget, turn, ended, state)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(session_id) DO UPDATE SET budget=excluded.budget,"
                " turn=excluded.turn, ended=excluded.ended, state=excluded.state",
                (
                    record.session_id,
                    record.principal,
                    record.project_id,
                    record.budget,
                    record.turn,
                    int(record.ended),
                    dumps(record.state),
                ),
            )

    async def load_pages(self, namespaces: list[str]) -> list[tuple[str, Page]]:
        marks = ",".join("?" * len(namespaces))
        async with self._conn.execute(
            f"SELECT namespace, body FROM pages WHERE namespace IN ({marks}) AND deleted = 0", namespaces
        ) as cur:
            return [(row[0], page_from_json(json.loads(row[1]))) async for row in cur]

    async def get_page(self, namespace: str, page_id: str) -> Page | None:
        row = await self._one("SELECT body FROM pages WHERE namespace = ? AND page_id = ?", (namespace, page_id))
        return None if row is None else page_from_json(json.loads(row[0]))

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

    async def stage(self, entry: JournalEntry) -> int:
        async with self._transaction() as c:
            return await self._insert_entry(c, entry)

    async def try_commit(self, write: PageCommit) -> Committed | None:
        """page_write commit="now": one autocommit statement, one trip. None if the page is not at
        ``expected_version`` (the statement left nothing behind) or SQLite lacks RETURNING."""
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

    async def commit(self, writes: list[PageCommit]) -> tuple[list[Committed], list[Conflict]]:
        if len(writes) == 1:
            done = await self.try_commit(writes[0])
            if done is not None:
                return [done], []
            # stale: nothing was written; the transaction below checks again and records the rejection
        conflicts: list[Conflict] = []
        committed: list[Committed] = []
        async with self._transaction() as c:  # a boundary flush: every page in one transaction
            for w in writes:
                try:
                    rows = list(
                        await c.execute_fetchall(COMMIT_ROW_RETURNING if RETURNING else COMMIT_ROW, _commit_row(w))
                    )
                except sqlite3.IntegrityError as exc:
                    if str(exc) != STALE:
                        raise
                else:
                    last = rows[0][0] if rows else await self._scalar("SELECT max(txn_id) FROM journal")
                    committed.append(_settled(w, last))
                    continue
                # ABORT undid only this page's statement; the transaction goes on with the others
                current = await self._scalar(
                    "SELECT version FROM pages WHERE namespace = ? AND page_id = ?", (w.namespace, w.page.page_id)
                )
                reasons = conflict_reasons(w.page.page_id, w.expected_version, current)
                entry_txn = None
                if w.new_entry is not None:
                    entry_txn = await self._insert_entry(c, replace(w.new_entry, status="rejected", reasons=reasons))
                conflicts.append(Conflict(w.page.page_id, current, entry_txn))
                await self._mark(c, list(w.txn_ids), "rejected", reasons)
        return committed, conflicts

    async def _mark(
        self, c: aiosqlite.Connection, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]
    ) -> None:
        if txn_ids:
            await c.execute(
                f"UPDATE journal SET status = ?, reasons = ? WHERE txn_id IN ({','.join('?' * len(txn_ids))})"
                " AND status IN ('staged', 'validated')",  # a settled row is history: never rewritten
                (status, dumps(reasons), *txn_ids),
            )

    async def mark(self, txn_ids: list[int], status: JournalStatus, reasons: list[dict[str, str]]) -> None:
        async with self._transaction() as c:
            await self._mark(c, txn_ids, status, reasons)

    async def pending(self, session_id: str) -> list[JournalEntry]:
        async with self._conn.execute(
            "SELECT * FROM journal WHERE session_id = ? AND status IN ('staged','validated') ORDER BY txn_id",
            (session_id,),
        ) as cur:
            return [_entry(row) async for row in cur]

    async def journal(self, session_id: str, limit: int) -> list[JournalEntry]:
        async with self._conn.execute(
            "SELECT * FROM journal WHERE session_id = ? ORDER BY txn_id DESC LIMIT ?", (session_id, limit)
        ) as cur:
            rows = [_entry(row) async for row in cur]
        return rows[::-1]

    async def journal_counts(self, session_id: str) -> dict[str, int]:
        async with self._conn.execute(
            "SELECT status, count(*) FROM journal WHERE session_id = ? GROUP BY status", (session_id,)
        ) as cur:
            return {row[0]: int(row[1]) async for row in cur}

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

    async def add_faults(self, session_id: str, events: list[FaultEvent]) -> None:
        if not events:
            return
        async with self._transaction() as c:
            await c.executemany(
                "INSERT INTO faults(session_id, kind, turn, subject, detail) VALUES (?,?,?,?,?)",
                [(session_id, e.kind, e.turn, e.subject, e.detail) for e in events],
            )

    async def faults(self, session_id: str) -> list[FaultEvent]:
        async with self._conn.execute(
            "SELECT kind, turn, subject, detail FROM faults WHERE session_id = ? ORDER BY id", (session_id,)
        ) as cur:
            return [FaultEvent(r[0], r[1], r[2], r[3]) async for r in cur]

    async def search(
        self, namespaces: list[str], terms: list[str], page_type: str | None, limit: int
    ) -> list[SearchHit]:
        """BM25 over the recall index, best first, at most ``limit``; only the top pages are decoded."""
        if not namespaces or not terms:
            return []
        sql = SEARCH_SQL.format(
            weights=", ".join(str(w) for w in WEIGHTS),
            marks=",".join("?" * len(namespaces)),
            type_filter="" if page_type is None else " AND p.type = ?",
        )
        params: list[Any] = [match_expression(namespaces, terms), *namespaces]
        if page_type is not None:
            params.append(page_type)
        params.append(limit)
        rows = await self._conn.execute_fetchall(sql, params)
        return [
            SearchHit(row[0], page_from_json(json.loads(row[1])), float(row[2]), matched(row[3], terms)) for row in rows
        ]

    async def live_sessions(self, principal: str, prefix: str, limit: int) -> list[str]:
        sql = (
            "SELECT session_id FROM sessions WHERE principal = ? AND ended = 0 AND substr(session_id, 1, ?) = ?"
            " ORDER BY session_id LIMIT ?"
        )
        async with self._conn.execute(sql, (principal, len(prefix), prefix, limit)) as cur:
            return [str(row[0]) async for row in cur]


def _commit_row(w: PageCommit) -> tuple[Any, ...]:
    """The clawvm_commit row of one page commit; the page comes at its new version, expected_version + 1."""
    if w.page.version != w.expected_version + 1:
        raise ValueError(f"page {w.page.page_id!r} v{w.page.version} cannot follow v{w.expected_version}")
    e = w.new_entry
    return (
        w.namespace,
        w.page.page_id,
        w.page.type,
        w.page.version,
        int(w.page.deleted),
        search_text(w.page),
        dumps(page_to_json(w.page)),
        w.expected_version,
        dumps(w.txn_ids),
        *(
            (None,) * 8
            if e is None
            else (e.session_id, e.namespace, e.page_id, e.op, e.commit_mode, dumps(e.request), dumps(e.reasons), e.turn)
        ),
    )


def _settled(w: PageCommit, last_txn_id: int) -> Committed:
    """The journal rows a committed page settled: the earlier staged ones, then the new row (the last one written)."""
    if w.new_entry is None:
        return Committed(w.page.page_id, w.page.version, w.txn_ids)
    entry_txn = int(last_txn_id)
    return Committed(w.page.page_id, w.page.version, (*w.txn_ids, entry_txn), entry_txn)


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
