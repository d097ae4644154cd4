"""``clawvm-mcp`` with a deterministic crash point, for the crash-safety suite. Run as a script.

``CLAWVM_TEST_CRASH=KIND:N`` makes the server SIGKILL itself (no cleanup, no flush, exactly like ``kill -9``) at
the N-th occurrence of one SQL event, counted from process start. A page commit is either one autocommit
statement (an insert into the ``clawvm_commit`` view: a single-page ``commit: now``) or part of an explicit
transaction (a boundary flush, a rejection):

- ``before-commit``: just before ``COMMIT`` or a one-statement commit is sent: nothing of it is durable.
- ``after-commit``: just after either returned: durable, but the client never hears about it.
- ``mid-txn``: just after a page row was written inside an open transaction (a half-applied commit).
- ``after-stage``: just after a journal row was inserted, before its transaction commits.
- ``mid-flush``: just after a page row was written by a boundary flush (several staged pages, one transaction).

On PostgreSQL (asyncpg, patched the same way) every write is an explicit transaction: ``before-commit`` and
``after-commit`` are always around its ``COMMIT``, and ``mid-txn`` follows any page row written. What does not
carry over: SQLite's one-statement autocommit commit (the ``clawvm_commit`` view) has no PostgreSQL counterpart,
and a killed *client* process is all these points model: PostgreSQL rolls its open transaction back; the crash
recovery of the database server itself (SQLite's WAL replay, PostgreSQL's redo) is not exercised, since the
PostgreSQL server is shared and not ours to kill.

Everything else is the unmodified ``clawvm_mcp.cli.main``. This file is not imported by the tests.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

from clawvm_mcp.cli import main
from clawvm_mcp.engine import lifecycle, writeback

KIND, _, COUNT = os.environ.get("CLAWVM_TEST_CRASH", "none:0").partition(":")
TARGET = int(COUNT or 0)
seen = 0
in_flush = False


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _matches(sql: str, in_transaction: bool) -> bool:
    head = sql.lstrip().upper()
    page_row = head.startswith(("INSERT INTO PAGES", "INSERT INTO CLAWVM_COMMIT"))
    if KIND in ("before-commit", "after-commit"):
        return head.startswith("COMMIT") or (page_row and not in_transaction)
    if KIND == "mid-txn":
        return page_row and in_transaction
    if KIND == "after-stage":
        return head.startswith("INSERT INTO JOURNAL")
    if KIND == "mid-flush":
        return in_flush and page_row
    return False


def _before(in_transaction: bool, sql: str) -> bool:
    global seen
    hit = _matches(sql, in_transaction)
    if hit:
        seen += 1
        if seen == TARGET and KIND == "before-commit":
            _die()
    return hit


_execute = aiosqlite.Connection.execute
_execute_fetchall = aiosqlite.Connection.execute_fetchall


@contextmanager
async def _crashing_execute(self: aiosqlite.Connection, sql: str, parameters: Any = None) -> aiosqlite.Cursor:
    hit = _before(self.in_transaction, sql)
    cursor = await _execute(self, sql, parameters)
    if hit and seen == TARGET:
        _die()
    return cursor


async def _crashing_execute_fetchall(self: aiosqlite.Connection, sql: str, parameters: Any = None) -> Any:
    hit = _before(self.in_transaction, sql)
    rows = await _execute_fetchall(self, sql, parameters)
    if hit and seen == TARGET:
        _die()
    return rows


_flush = writeback.flush


async def _flagged_flush(rt: Any, state: Any) -> tuple[int, int]:
    global in_flush
    in_flush = True
    try:
        return await _flush(rt, state)
    finally:
        in_flush = False


def _crashing_asyncpg(original: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def crashing(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        hit = _before(self.is_in_transaction(), query)
        result = await original(self, query, *args, **kwargs)
        if hit and seen == TARGET:
            _die()
        return result

    return crashing


def _patch_asyncpg() -> None:
    """The same points for PostgresStore: every statement it sends (a transaction's COMMIT included) goes through
    one of these Connection methods; a pool's connection proxy looks them up on the class at each call."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:  # the optional postgres extra: SQLite only then
        return
    for name in ("execute", "fetch", "fetchval", "fetchrow"):
        setattr(asyncpg.Connection, name, _crashing_asyncpg(getattr(asyncpg.Connection, name)))


_patch_asyncpg()
aiosqlite.Connection.execute = _crashing_execute  # type: ignore[method-assign]
aiosqlite.Connection.execute_fetchall = _crashing_execute_fetchall  # type: ignore[method-assign]
writeback.flush = _flagged_flush  # the boundary flush, wherever it is called from
lifecycle.flush = _flagged_flush

if __name__ == "__main__":
    sys.exit(main())
