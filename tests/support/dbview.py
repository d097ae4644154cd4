"""Read-only views of the database under test, a SQLite file or a PostgreSQL database, for the reliability checks.

The crash, race and nemesis suites check the store itself, not only what a server answers. The same questions are
asked of either store here (the journal, the page rows, how many rows are pending, is the database sound), so a
suite is written once and parametrized by what ``--db`` names: a ``Path`` is a SQLite file, a ``postgresql://``
string a PostgreSQL database. PostgreSQL is read over asyncpg on a connection with
``default_transaction_read_only`` on: a check can never write what it checks.

PostgreSQL has no ``PRAGMA integrity_check``. :func:`integrity` asks instead what can go wrong there after a killed
or stopped server process: no transaction left open by a backend of the database (a killed client's backend must
roll back and leave; polled for a few seconds, since the server learns of a dead socket asynchronously), no
prepared transaction, every B-tree index consistent with its table (amcheck's ``bt_index_check`` with
``heapallindexed``; amcheck has no GIN check in PostgreSQL 15, so the recall index is not checked), and the row
invariants the store's own code relies on (a page row's columns agree with its body; no row carries a change
sequence the clock has not handed out yet; a committed journal row has a version).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from tests.support.harness import db_conn
from tests.support.harness import integrity as sqlite_integrity

DB = Path | str  # what --db names: a SQLite file, or a postgresql:// URL
PG_ENV = "CLAWVM_TEST_PG"
SETTLE_SECONDS = 10.0  # how long a backend of a killed server may take to roll back and leave


def is_postgres(db: DB) -> bool:
    return isinstance(db, str) and db.split(":", 1)[0] in ("postgresql", "postgres")


@asynccontextmanager
async def _pg(url: str) -> AsyncIterator[Any]:
    import asyncpg  # type: ignore[import-untyped]  # the optional postgres extra; only these runs need it

    conn = await asyncpg.connect(url, server_settings={"default_transaction_read_only": "on"})
    try:
        yield conn
    finally:
        await conn.close()


def _sqlite_rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not db.exists():
        return []
    with db_conn(db) as conn:
        try:
            return [dict(r) for r in conn.execute(sql, args)]
        except sqlite3.OperationalError as exc:  # no schema yet: nothing opened the file
            if "no such table" in str(exc):
                return []
            raise


async def _rows(db: DB, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts; ``sql`` uses ``$1``-style parameters, rewritten to ``?`` for SQLite."""
    if is_postgres(db):
        async with _pg(str(db)) as conn:
            if not await conn.fetchval("SELECT to_regclass('public.journal') IS NOT NULL"):
                return []
            return [dict(r) for r in await conn.fetch(sql, *args)]
    for i in range(len(args), 0, -1):
        sql = sql.replace(f"${i}", "?")
    return _sqlite_rows(Path(db), sql, args)


async def journal(db: DB, session_id: str | None = None) -> list[dict[str, Any]]:
    """Journal rows in txn order, ``request`` and ``reasons`` decoded."""
    where = "" if session_id is None else " WHERE session_id = $1"
    rows = await _rows(
        db, f"SELECT * FROM journal{where} ORDER BY txn_id", *(() if session_id is None else (session_id,))
    )
    return [{**r, "request": json.loads(r["request"]), "reasons": json.loads(r["reasons"])} for r in rows]


async def pages(db: DB, namespace: str | None = None) -> list[dict[str, Any]]:
    """Page rows (deleted ones too): namespace, page_id, version, deleted (a bool) and the decoded body."""
    where = "" if namespace is None else " WHERE namespace = $1"
    sql = f"SELECT namespace, page_id, version, deleted, body FROM pages{where} ORDER BY namespace, page_id"
    rows = await _rows(db, sql, *(() if namespace is None else (namespace,)))
    return [
        {**r, "version": int(r["version"]), "deleted": bool(r["deleted"]), "body": json.loads(r["body"])} for r in rows
    ]


async def pending(db: DB, session_id: str) -> int:
    """Journal rows of the session still staged or validated: what the next session_start must settle."""
    sql = "SELECT count(*) AS n FROM journal WHERE session_id = $1 AND status IN ('staged','validated')"
    rows = await _rows(db, sql, session_id)
    return int(rows[0]["n"]) if rows else 0


async def integrity(db: DB) -> str:
    """``ok``, or what is wrong: ``PRAGMA integrity_check`` for SQLite, the checks of this module's docstring for
    PostgreSQL."""
    if not is_postgres(db):
        return sqlite_integrity(Path(db))
    problems: list[str] = []
    async with _pg(str(db)) as conn:
        open_txns = await _open_transactions(conn)
        problems += [f"transaction left open: {r}" for r in open_txns]
        prepared = await conn.fetchval("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")
        if prepared:
            problems.append(f"{prepared} prepared transactions")
        if not await conn.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'amcheck'"):
            problems.append("amcheck is not installed in the database (dbview.prepare creates it)")
        else:
            indexes = await conn.fetch(
                "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE a.amname = 'btree' AND n.nspname = 'public'"
            )
            for index in indexes:
                try:
                    await conn.execute("SELECT bt_index_check($1::oid::regclass, true)", index["oid"])
                except Exception as exc:  # amcheck reports corruption as an error
                    problems.append(f"index {index['relname']}: {exc}")
        if await conn.fetchval("SELECT to_regclass('public.pages') IS NOT NULL"):
            problems += [f"row invariant: {r[0]}" for r in await conn.fetch(ROW_INVARIANTS)]
    return "ok" if not problems else "; ".join(problems)


async def _open_transactions(conn: Any) -> list[str]:
    """Client backends of this database (other than ours) inside a transaction, once ``SETTLE_SECONDS`` passed."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        rows = await conn.fetch(
            "SELECT pid, state, now() - xact_start AS age, left(query, 80) AS query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            " AND xact_start IS NOT NULL"
        )
        if not rows or time.monotonic() > deadline:
            return [f"backend {r['pid']} {r['state']} for {r['age']}: {r['query']}" for r in rows]
        await anyio.sleep(0.1)


# each row found is one violated invariant, named
ROW_INVARIANTS = """
SELECT 'page ' || namespace || '/' || page_id || ' row disagrees with its body'
FROM pages WHERE body::jsonb ->> 'page_id' IS DISTINCT FROM page_id
    OR (body::jsonb ->> 'version')::int IS DISTINCT FROM version
    OR (body::jsonb ->> 'deleted')::boolean IS DISTINCT FROM deleted
    OR body::jsonb ->> 'type' IS DISTINCT FROM type
UNION ALL
SELECT t || ' has a row at seq ' || s || ', beyond the clock at ' || (SELECT seq FROM clock)
FROM (SELECT 'pages' AS t, max(seq) AS s FROM pages UNION ALL SELECT 'sessions', max(seq) FROM sessions
      UNION ALL SELECT 'tool_calls', max(seq) FROM tool_calls) m
WHERE s > (SELECT seq FROM clock)
UNION ALL
SELECT 'committed journal row ' || txn_id || ' has no version'
FROM journal WHERE status = 'committed' AND version IS NULL
UNION ALL
SELECT 'clock has ' || count(*) || ' rows' FROM clock HAVING count(*) <> 1
"""


async def prepare(db: DB) -> None:
    """Make a fresh PostgreSQL database checkable: amcheck, installed before any server runs (the checks
    themselves are read-only). Nothing to do for SQLite."""
    if not is_postgres(db):
        return
    import asyncpg

    conn = await asyncpg.connect(str(db))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_postgres(admin_url: str | None = None) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database on the server ``admin_url`` (default ``$CLAWVM_TEST_PG``), dropped on exit
    (``prepare`` makes it checkable): tests/conftest.py's ``store_db``, and runs outside pytest."""
    import asyncpg

    admin_url = admin_url or os.environ[PG_ENV]
    name = f"clawvm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    try:
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
