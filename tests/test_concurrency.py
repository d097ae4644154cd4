"""Concurrency: several server processes on one database, several clients each, racing ``set`` on one page.

On SQLite three processes share the file: two ``serve --http`` (two clients each) and one ``serve`` over stdio
(two concurrent callers on its one connection). On PostgreSQL (when ``CLAWVM_TEST_PG`` names a server) three
``serve --http`` processes, each on its own port, share one fresh database, two clients each; fewer attempts per
racer there (a commit waits for a WAL flush; the race is the same).

Every racer sets the same project-scoped page (each from its own session of the project) and the same
session-scoped page (all through one shared session id), always with the ``base_version`` it last saw. The
count-based checks over all attempts:

- exactly one winner per version: committed versions are distinct and cover base+1..final without a gap;
- every loser is ``status: rejected`` with ``DESTRUCTIVE_OP`` and the current version in the detail;
- nothing lost: the journal holds one committed row per win and one rejected row per loss, and the page's
  final content is the last winner's;
- no error result at all, so no "database is locked" (or any other backend failure) reaches a client;
- the database is sound afterwards (tests/support/dbview.py ``integrity``: ``PRAGMA integrity_check`` on SQLite;
  no transaction left open, amcheck and the row invariants on PostgreSQL).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.support import dbview
from tests.support.dbview import DB
from tests.support.harness import PROV, HttpServer, call, error_text, start_http, stdio_params

pytestmark = pytest.mark.anyio

PROJECT = "race"
PROJECT_PAGE = "pref/race"  # a preference page: project scope by default
SHARED_SESSION = "race-shared"
SESSION_PAGE = "conv/race"
ATTEMPTS_PER_RACER = int(os.environ.get("CLAWVM_RACE_ATTEMPTS", "200"))
PG_ATTEMPTS_PER_RACER = int(os.environ.get("CLAWVM_RACE_ATTEMPTS", "120"))
CURRENT = re.compile(r"current version is (\d+)")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Tally:
    wins: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: {PROJECT_PAGE: [], SESSION_PAGE: []})
    losses: Counter[str] = field(default_factory=lambda: Counter())
    errors: list[str] = field(default_factory=lambda: [])
    attempts: int = 0


async def _racer(client: Client, name: str, tally: Tally, start_versions: dict[str, int], attempts: int) -> None:
    own_session = f"race-{name}"
    await call(client, "session_start", session_id=own_session, project_id=PROJECT)
    await call(client, "session_start", session_id=SHARED_SESSION, project_id=PROJECT)
    seen = dict(start_versions)
    for k in range(attempts):
        page, session = (PROJECT_PAGE, own_session) if k % 2 == 0 else (SESSION_PAGE, SHARED_SESSION)
        base = seen[page]
        content = f"{name}:{k}"
        result = await client.call_tool(
            "page_write",
            {
                "session_id": session,
                "page_id": page,
                "op": "set",
                "content": content,
                "base_version": base,
                "provenance": PROV,
            },
        )
        tally.attempts += 1
        if result.is_error or result.structured_content is None:
            tally.errors.append(error_text(result))
            continue
        sc: dict[str, Any] = result.structured_content
        if sc["status"] == "committed":
            assert sc["version"] == base + 1, (name, page, base, sc)
            tally.wins[page].append((sc["version"], content))
        else:
            assert sc["status"] == "rejected", sc
            assert {r["code"] for r in sc["reasons"]} == {"DESTRUCTIVE_OP"}, sc
            match = CURRENT.search(" ".join(r["detail"] for r in sc["reasons"]))
            assert match is not None, sc
            current = int(match.group(1))
            assert current == sc["version"] and current > base, (base, sc)
            tally.losses[page] += 1
        seen[page] = sc["version"]


async def test_processes_and_clients_race_set_with_base_version(tmp_path: Path, store_db: DB) -> None:
    db = store_db
    postgres = dbview.is_postgres(db)
    await dbview.prepare(db)
    http_servers, stdio_servers = (3, 0) if postgres else (2, 1)
    attempts = PG_ATTEMPTS_PER_RACER if postgres else ATTEMPTS_PER_RACER
    async with Client(stdio_params(db)) as setup:
        await call(setup, "session_start", session_id="race-setup", project_id=PROJECT)
        made = await call(
            setup,
            "page_write",
            session_id="race-setup",
            page_id=PROJECT_PAGE,
            op="create",
            type="preference",
            content="start",
            provenance=PROV,
        )
        await call(setup, "session_start", session_id=SHARED_SESSION, project_id=PROJECT)
        made2 = await call(
            setup,
            "page_write",
            session_id=SHARED_SESSION,
            page_id=SESSION_PAGE,
            op="create",
            type="conversation",
            content="start",
            provenance=PROV,
        )
    start_versions = {PROJECT_PAGE: made["version"], SESSION_PAGE: made2["version"]}

    servers: list[HttpServer] = []
    tally = Tally()
    try:
        servers = [start_http(db, tmp_path / f"http-{i}.log") for i in range(http_servers)]
        async with AsyncExitStack() as stack:
            racers: list[tuple[Client, str]] = []
            for i in range(stdio_servers):
                stdio_client = await stack.enter_async_context(Client(stdio_params(db)))
                racers += [(stdio_client, f"s{i}c{j}") for j in range(2)]
            racers += [
                (await stack.enter_async_context(server.client()), f"h{i}c{j}")
                for i, server in enumerate(servers)
                for j in range(2)
            ]
            async with anyio.create_task_group() as tg:
                for client, name in racers:
                    tg.start_soon(_racer, client, name, tally, start_versions, attempts)
    finally:
        for server in servers:
            server.stop()
    logs = "".join(s.log_text() for s in servers)

    assert tally.errors == [], tally.errors[:3]
    assert "locked" not in logs and "Traceback" not in logs, logs[-2000:]
    assert tally.attempts == len(racers) * attempts and tally.attempts >= 700
    assert await dbview.integrity(db) == "ok"
    rows = await dbview.journal(db)
    for page, ns in ((PROJECT_PAGE, f"p:{PROJECT}"), (SESSION_PAGE, f"s:{SHARED_SESSION}")):
        wins = sorted(tally.wins[page])
        versions = [v for v, _ in wins]
        (row,) = await dbview.pages(db, ns)
        final = row["version"]
        assert len(set(versions)) == len(versions), "two writers won the same version"
        assert versions == list(range(start_versions[page] + 1, final + 1)), "a version has no known winner"
        assert row["body"]["content"] == wins[-1][1], "the last winner's content is not the page's"
        counts = Counter(r["status"] for r in rows if (r["namespace"], r["page_id"]) == (ns, page))
        assert counts.get("committed") == 1 + len(wins)  # the create plus every win
        assert counts.get("rejected") == tally.losses[page]
        assert set(counts) <= {"committed", "rejected"}
    won = sum(len(w) for w in tally.wins.values())
    print(
        f"\nrace figures ({'PostgreSQL' if postgres else 'SQLite'}): processes {http_servers + stdio_servers}, "
        f"racers {len(racers)}, attempts {tally.attempts}, won {won}, "
        f"lost races {sum(tally.losses.values())}, errors 0, items lost 0"
    )
    assert won + sum(tally.losses.values()) == tally.attempts
    assert sum(tally.losses.values()) > 0, "no race was ever lost: the test did not race"
