"""Shared machinery for the reliability suites: real server processes, raw DB views, tool-call helpers.

Everything here talks to the product only through its public surfaces: the ``clawvm-mcp`` command line, MCP
clients (stdio, HTTP, in process) and the SQLite file itself (read-only views for checking, never writes).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

PROV: dict[str, Any] = {"source": "user", "ref": "ext:test", "turn": 0}
SUPPORT = Path(__file__).resolve().parent
CRASHING_SERVER = SUPPORT / "crashing_server.py"


def child_env(**extra: str) -> dict[str, str]:
    """stdio children get a minimal environment from the SDK; hand them ours (and quiet logs) explicitly."""
    env = dict(os.environ)
    env.setdefault("CLAWVM_LOG", "WARNING")
    env.update(extra)
    return env


def stdio_params(
    db: Path | str,
    *extra: str,
    pidfile: Path | None = None,
    env: Mapping[str, str] | None = None,
    crash: str | None = None,
) -> StdioServerParameters:
    """``clawvm-mcp serve --db DB`` as a stdio child. ``pidfile`` records the server's pid (the shell execs it).

    ``crash`` runs the same CLI under tests/support/crashing_server.py, which SIGKILLs itself at a chosen
    statement (see that module); without it the child is exactly ``python -m clawvm_mcp serve``.
    """
    cmd = [sys.executable, str(CRASHING_SERVER)] if crash else [sys.executable, "-m", "clawvm_mcp"]
    cmd += ["serve", "--db", str(db), *extra]
    full_env = child_env(**(dict(env) if env else {}))
    if crash:
        full_env["CLAWVM_TEST_CRASH"] = crash
    if pidfile is None:
        return StdioServerParameters(command=cmd[0], args=cmd[1:], env=full_env)
    script = 'echo $$ > "$0"; exec "$@"'
    return StdioServerParameters(command="/bin/sh", args=["-c", script, str(pidfile), *cmd], env=full_env)


def read_pid(pidfile: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = pidfile.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"server never wrote its pid to {pidfile}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of a dead shell is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def sigkill(pid: int) -> None:
    """Kill one server process we started, by its id."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"server pid {pid} did not die")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------- the DB file


@contextmanager
def db_conn(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection for checks (reads only; sqlite replays a WAL left by a killed writer)."""
    with closing(sqlite3.connect(str(db), timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        yield conn


def dump_tables(db: Path, skip_rejected: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: the store's content independent of page order on disk.

    ``skip_rejected`` leaves out journal rows with status ``rejected`` (a rejected write records its reasons
    there by design; everything else must be untouched), and with them the change sequence that recording them
    moved (the ``clock`` table and every ``seq`` column: bookkeeping of when, not content).
    """
    out: dict[str, list[tuple[Any, ...]]] = {}
    with db_conn(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for name in names:
            if name == "sqlite_sequence" or (skip_rejected and name == "clock"):
                continue
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')]
            kept = [c for c in columns if not (skip_rejected and c == "seq")] or ["*"]
            sql = f'SELECT {", ".join(kept if kept != ["*"] else ["*"])} FROM "{name}"'
            if skip_rejected and name == "journal":
                sql += " WHERE status != 'rejected'"
            out[name] = sorted((tuple(row) for row in conn.execute(sql)), key=repr)
    return out


def db_fingerprint(db: Path, skip_rejected: bool = False) -> str:
    """sha256 of the dump of all tables."""
    return hashlib.sha256(repr(dump_tables(db, skip_rejected)).encode()).hexdigest()


def integrity(db: Path) -> str:
    with db_conn(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- tool calls


class ToolFailed(AssertionError):
    """A tool call that had to succeed returned an error result."""


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = await client.call_tool(tool, args)
    if result.is_error or result.structured_content is None:
        raise ToolFailed(f"{tool} failed: {error_text(result)}")
    out: dict[str, Any] = result.structured_content
    return out


async def call_error(client: Client, tool: str, /, **args: Any) -> str:
    """Call a tool that must fail with a model-facing error; return the text."""
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} should have failed, got {result.structured_content}"
    return error_text(result)


def error_text(result: Any) -> str:
    return " ".join(str(getattr(block, "text", "")) for block in result.content)


def bare_error(tool: str, text: str) -> bool:
    """The SDK withholds the message of an unexpected exception: only ``Error executing tool X`` remains."""
    return text.strip() in (f"Error executing tool {tool}", f"Error executing tool {tool}:")


# ---------------------------------------------------------------------------------------------- HTTP servers


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HttpServer:
    proc: subprocess.Popen[bytes]
    port: int
    token: str | None
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, token: str | None = None, mode: str = "auto") -> Client:
        """A streamable-HTTP MCP client; ``mode`` "legacy" speaks the older protocol era, as stdio clients can."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        transport = streamable_http_client(self.url, http_client=create_mcp_http_client(headers=headers))
        return Client(transport, mode="legacy" if mode == "legacy" else "auto")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    async def aclose(self, timeout: float = 10.0) -> None:
        """:meth:`stop` without blocking the event loop: SIGTERM, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with anyio.move_on_after(timeout):
                while self.proc.poll() is None:
                    await anyio.sleep(0.05)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn_http(
    db: Path | str,
    log: Path,
    token: str | None = "s3cret-token",
    extra: Sequence[str] = (),
    port: int | None = None,
    crash: str | None = None,
) -> HttpServer:
    """``clawvm-mcp serve --http`` on ``port`` (a free loopback one by default), not yet listening. ``crash`` runs
    it under tests/support/crashing_server.py, as :func:`stdio_params` does."""
    port = port or free_port()
    env = child_env()
    if token is not None:
        env["CLAWVM_TOKEN"] = token
    if crash:
        env["CLAWVM_TEST_CRASH"] = crash
    cmd = [sys.executable, str(CRASHING_SERVER)] if crash else [sys.executable, "-m", "clawvm_mcp"]
    args = [*cmd, "serve", "--db", str(db), "--http", "--port", str(port), *extra]
    with open(log, "ab") as fh:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env)
    return HttpServer(proc, port, token, log)


def listening(server: HttpServer) -> bool:
    """True once the port accepts connections; an AssertionError if the server exited first."""
    if server.proc.poll() is not None:
        raise AssertionError(f"HTTP server exited with {server.proc.returncode}: {server.log_text()}")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.2):
            return True
    except OSError:
        return False


def start_http(
    db: Path | str,
    log: Path,
    token: str | None = "s3cret-token",
    extra: Sequence[str] = (),
    timeout: float = 20.0,
    port: int | None = None,
    crash: str | None = None,
) -> HttpServer:
    """``clawvm-mcp serve --http`` on a free loopback port; returns once the port accepts connections."""
    server = spawn_http(db, log, token, extra, port, crash)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(server):
            return server
        time.sleep(0.05)
    server.stop()
    raise AssertionError(f"HTTP server did not listen on {server.port}: {server.log_text()}")


async def start_http_async(
    db: Path | str,
    log: Path,
    token: str | None = "s3cret-token",
    timeout: float = 30.0,
    port: int | None = None,
    crash: str | None = None,
) -> HttpServer:
    """:func:`start_http` for an event loop that must keep running meanwhile (other clients, other servers)."""
    server = spawn_http(db, log, token, (), port, crash)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(server):
            return server
        await anyio.sleep(0.05)
    server.stop()
    raise AssertionError(f"HTTP server did not listen on {server.port}: {server.log_text()}")


def json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
