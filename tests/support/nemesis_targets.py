"""Where the nemesis (tests/support/nemesis.py) runs: a store and the transport its servers speak.

- :class:`SQLiteStdio`: ``clawvm-mcp serve --db FILE`` over stdio, every process on one SQLite file.
- :class:`PostgresHttp`: ``clawvm-mcp serve --http --port P --db postgresql://...``, each slot on a port of its
  own (a restarted server comes back on its slot's port), all on one PostgreSQL database, driven by
  streamable-HTTP MCP clients.

Either way a server is one process the nemesis may SIGKILL or SIGSTOP by its pid, and ``--db`` is what hook
processes are given too.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Literal, Protocol

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.support.dbview import DB, is_postgres
from tests.support.harness import child_env, free_port, start_http_async

TOKEN = "nemesis-bearer-token-0123456789"  # CLAWVM_TOKEN of the HTTP servers (long enough for the minimum)
Mode = Literal["auto", "legacy"]


class Target(Protocol):
    db: DB
    label: str  # for the figures: "SQLite over stdio"

    def serve(self, name: str, generation: int, mode: Mode) -> AbstractAsyncContextManager[tuple[Client, int]]:
        """One server process, up and connected: (its client, its pid). ``name`` is the slot (same port, same
        log across restarts), ``generation`` counts its restarts."""
        ...


def server_params(db: Path, pidfile: Path, log: Path) -> StdioServerParameters:
    """``clawvm-mcp serve --db DB`` over stdio; the shell writes the server's pid and execs it, stderr to ``log``."""
    script = 'echo $$ > "$0"; exec "$@" 2>>"$NEMESIS_LOG"'
    env = child_env(NEMESIS_LOG=str(log))
    cmd = [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(db)]
    return StdioServerParameters(command="/bin/sh", args=["-c", script, str(pidfile), *cmd], env=env)


async def wait_pid(pidfile: Path, timeout: float = 30.0) -> int:
    with anyio.fail_after(timeout):
        while True:
            try:
                text = pidfile.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text:
                return int(text)
            await anyio.sleep(0.01)


class SQLiteStdio:
    label = "SQLite file, stdio servers"

    def __init__(self, db: Path, workdir: Path) -> None:
        self.db: DB = db
        self.workdir = workdir

    @asynccontextmanager
    async def serve(self, name: str, generation: int, mode: Mode) -> AsyncIterator[tuple[Client, int]]:
        pidfile = self.workdir / f"{name}-{generation}.pid"
        params = server_params(Path(self.db), pidfile, self.workdir / f"{name}.log")
        async with Client(params, mode=mode) as client:
            yield client, await wait_pid(pidfile)


class PostgresHttp:
    label = "PostgreSQL database, HTTP servers on their own ports"

    def __init__(self, url: str, workdir: Path) -> None:
        self.db: DB = url
        self.workdir = workdir
        self.ports: dict[str, int] = {}

    @asynccontextmanager
    async def serve(self, name: str, generation: int, mode: Mode) -> AsyncIterator[tuple[Client, int]]:
        port = self.ports.setdefault(name, free_port())
        server = await start_http_async(self.db, self.workdir / f"{name}.log", token=TOKEN, port=port)
        try:
            async with server.client(mode=mode) as client:
                yield client, server.pid
        finally:
            with anyio.CancelScope(shield=True):
                await server.aclose()


def target_for(db: DB, workdir: Path) -> Target:
    """SQLite files are served over stdio, PostgreSQL databases over HTTP (several ports, one database)."""
    return PostgresHttp(str(db), workdir) if is_postgres(db) else SQLiteStdio(Path(db), workdir)
