"""``clawvm-mcp top``: a live, read-only table of every open session in a store, across all the processes using it.

Each refresh reads a consistent snapshot (SQLite: the same read-only backup copy ``inspect`` takes, so no lock is
held and a live server is never blocked; PostgreSQL: read in place, the session list in a read-only transaction).
Nothing is claimed, settled or written. Cells are untrusted text and go through ``inspect.visible``.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .cli_options import add_db, db_path
from .engine.session import project_namespace, session_namespace
from .faults import FAULT_KINDS, thrash
from .inspect import read_only_store, table, visible
from .store import StoreError
from .store.base import SessionRecord, StoreBusy, StoreUnavailable
from .store.open import database_url

CLEAR = "\x1b[H\x1b[2J"
HEADERS = [
    "session", "principal", "project", "turn", "faults", "by kind", "faults/turn", "thrash", "staged", "rejected",
    "boundaries", "pages",
]  # fmt: skip
NUMERIC = {"turn", "faults", "faults/turn", "thrash", "staged", "rejected", "boundaries", "pages"}
# initials keep the row on one line: refetch -> r, flush_miss -> fm (the legend under the table spells them out)
KIND_SHORT: dict[str, str] = {k: "".join(w[0] for w in k.split("_")) for k in FAULT_KINDS}


@dataclass(frozen=True, slots=True)
class SessionLine:
    """What top shows of one open session."""

    record: SessionRecord
    fault_counts: dict[str, int]
    staged: int  # journal rows staged or validated, waiting for a boundary
    rejected: int
    pages: int  # live pages of the session's own namespace and its project's

    @property
    def faults(self) -> int:
        return sum(self.fault_counts.values())

    @property
    def fault_rate(self) -> float:
        return self.faults / max(self.record.turn, 1)

    @property
    def thrash(self) -> float:
        c = self.record.counters
        return thrash(self.faults, c.duplicate_signature, c.hits)

    def cells(self) -> list[str]:
        r = self.record
        kinds = " ".join(f"{KIND_SHORT.get(k, k)}{n}" for k, n in self.fault_counts.items() if n) or "-"
        return [
            r.session_id, r.principal, r.project_id, str(r.turn), str(self.faults), kinds, f"{self.fault_rate:.2f}",
            f"{self.thrash:.3f}", str(self.staged), str(self.rejected), str(r.counters.boundaries), str(self.pages),
        ]  # fmt: skip


async def _postgres_live_ids(url: str) -> list[str]:
    """Open session ids, in a read-only transaction: the Store protocol lists them only per principal."""
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError as exc:  # the postgres extra: open_store refused the URL already, this keeps it one line
        raise StoreError(f"a postgresql:// URL needs asyncpg ({exc}): pip install 'clawvm-mcp[postgres]'") from exc

    try:
        conn = await asyncpg.connect(url, server_settings={"default_transaction_read_only": "on"})
        try:
            rows = await conn.fetch("SELECT session_id FROM sessions WHERE NOT ended ORDER BY session_id")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        raise StoreError(f"cannot list the sessions: {exc}") from exc
    return [str(r[0]) for r in rows]


def _sqlite_live_ids(copy: Path) -> list[str]:
    conn = sqlite3.connect(copy)
    try:  # the copy, which the store has just migrated: the table is there
        return [str(r[0]) for r in conn.execute("SELECT session_id FROM sessions WHERE ended = 0 ORDER BY session_id")]
    finally:
        conn.close()


async def load_lines(db: Path | str) -> list[SessionLine]:
    """Every open session of ``db``, in id order, read without writing to ``db``."""
    async with read_only_store(db) as (store, copy):  # opened first: an unreachable server is one clear line
        ids = _sqlite_live_ids(copy) if copy is not None else await _postgres_live_ids(str(database_url(db)))
        lines = []
        for sid in ids:
            record = await store.get_session(sid)
            if record is None or record.ended:  # ended between the list and the read (PostgreSQL)
                continue
            counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
            for event in await store.faults(sid):
                counts[event.kind] = counts.get(event.kind, 0) + 1
            journal = await store.journal_counts(sid)
            pages = await store.count_pages(session_namespace(sid))
            pages += await store.count_pages(project_namespace(record.project_id))
            staged = journal.get("staged", 0) + journal.get("validated", 0)
            lines.append(SessionLine(record, counts, staged, journal.get("rejected", 0), pages))
    return lines


def render(lines: list[SessionLine], db: Path | str, now: float | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() if now is None else now))
    legend = "  ".join(f"{v}={k}" for k, v in KIND_SHORT.items())
    head = f"clawvm-mcp top  {visible(str(db))}  {stamp}  {len(lines)} open session{'' if len(lines) == 1 else 's'}"
    return "\n".join([head, table(HEADERS, [line.cells() for line in lines], NUMERIC), f"by kind: {legend}"])


def interval(text: str) -> float:
    """``--interval``: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def cmd_top(args: argparse.Namespace) -> int:
    """Print the table once, or each ``--interval``. A refresh that fails is reported on stderr and retried at the
    next interval (a server restarting, a database being restored); ``--once`` fails, as does the very first
    refresh unless the store is only busy or unreachable, so a mistyped ``--db`` is an error and not a wait."""
    db = db_path(args)
    tty = sys.stdout.isatty()
    shown, failing = False, None
    try:
        while True:
            try:
                frame = render(anyio.run(load_lines, db), db)
            except (StoreError, LookupError, OSError) as exc:
                if args.once or not (shown or isinstance(exc, StoreBusy | StoreUnavailable)):
                    print(f"Error: {exc}", file=sys.stderr)
                    return 2
                if str(exc) != failing:  # once per outage (and per new reason), not once per interval
                    print(f"Error: {exc} (retrying every {args.interval:g}s)", file=sys.stderr, flush=True)
                    failing = str(exc)
                time.sleep(args.interval)
                continue
            shown, failing = True, None
            print(CLEAR + frame if tty and not args.once else frame, flush=True)
            if args.once:
                return 0
            if not tty:
                print(flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def register(sub: Any) -> None:  # argparse's _SubParsersAction is private (as in replay/cli.py)
    top = sub.add_parser(
        "top",
        help="live table of every open session in the store",
        description="Refreshing, read-only view of every open session across all processes: turn, faults by "
        "kind and per turn, thrash, staged and rejected writes, boundaries, pages. Without a terminal it prints "
        "one table each interval; --once prints one and exits.",
    )
    add_db(top)
    top.add_argument("--interval", type=interval, default=2.0, metavar="SECONDS", help="refresh every (default 2)")
    top.add_argument("--once", action="store_true", help="print one snapshot and exit")
    top.set_defaults(func=cmd_top)
