"""``clawvm-mcp`` with a deterministic crash point, for the crash-safety suite. Run as a script.

``CLAWVM_TEST_CRASH=KIND:N`` makes the server SIGKILL itself (no cleanup, no flush, exactly like ``kill -9``) at
the N-th occurrence of one SQL event, counted from process start:

- ``before-commit``: just before ``COMMIT`` is sent: the transaction's writes are done but not durable.
- ``after-commit``: just after ``COMMIT`` returned: durable, but the client never hears about it.
- ``mid-txn``: just after a page row was written inside an open transaction (a half-applied commit).
- ``after-stage``: just after a journal row was inserted, before its transaction commits.
- ``mid-flush``: just after a page row was written by a boundary flush (several staged pages, one transaction).

Everything else is the unmodified ``clawvm_mcp.cli.main``. This file is not imported by the tests.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import aiosqlite
from aiosqlite.context import contextmanager

from clawvm_mcp.cli import main
from clawvm_mcp.engine.core import ClawVMEngine

KIND, _, COUNT = os.environ.get("CLAWVM_TEST_CRASH", "none:0").partition(":")
TARGET = int(COUNT or 0)
seen = 0
in_flush = False


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _matches(sql: str) -> bool:
    head = sql.lstrip().upper()
    if KIND in ("before-commit", "after-commit"):
        return head.startswith("COMMIT")
    if KIND == "mid-txn":
        return head.startswith("INSERT INTO PAGES")
    if KIND == "after-stage":
        return head.startswith("INSERT INTO JOURNAL")
    if KIND == "mid-flush":
        return in_flush and head.startswith("INSERT INTO PAGES")
    return False


_execute = aiosqlite.Connection.execute


@contextmanager
async def _crashing_execute(self: aiosqlite.Connection, sql: str, parameters: Any = None) -> aiosqlite.Cursor:
    global seen
    hit = _matches(sql)
    if hit:
        seen += 1
        if seen == TARGET and KIND == "before-commit":
            _die()
    cursor = await _execute(self, sql, parameters)
    if hit and seen == TARGET:
        _die()
    return cursor


_flush = ClawVMEngine._flush  # pyright: ignore[reportPrivateUsage]


async def _flagged_flush(self: ClawVMEngine, state: Any) -> tuple[int, int]:
    global in_flush
    in_flush = True
    try:
        return await _flush(self, state)
    finally:
        in_flush = False


aiosqlite.Connection.execute = _crashing_execute  # type: ignore[method-assign]
ClawVMEngine._flush = _flagged_flush  # type: ignore[method-assign]  # pyright: ignore[reportPrivateUsage]

if __name__ == "__main__":
    sys.exit(main())
