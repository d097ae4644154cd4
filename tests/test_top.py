"""`clawvm-mcp top`: every open session of a store, across principals and processes, read without writing (issue 13)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from clawvm_mcp.engine import ClawVMEngine, EngineConfig
from clawvm_mcp.faults import FaultEvent
from clawvm_mcp.journal import WriteRequest
from clawvm_mcp.pages import Provenance
from clawvm_mcp.store import open_store
from tests.conftest import PG_ENV
from tests.test_inspect import build

pytestmark = pytest.mark.anyio

PROV = Provenance("user", "ext:chat", 0)
HOLDER = """
import asyncio, sqlite3, sys
from clawvm_mcp.engine import ClawVMEngine, EngineConfig
from clawvm_mcp.store import SQLiteStore

async def main() -> None:
    store = await SQLiteStore.open(sys.argv[1])
    await ClawVMEngine(store, config=EngineConfig(principal="bob")).session_start("s2", project_id="proj")
    raw = sqlite3.connect(sys.argv[1], isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")  # the write lock, held: top must neither wait for it nor see this turn
    raw.execute("UPDATE sessions SET turn = 99 WHERE session_id = 's2'")
    print("holding", flush=True)
    sys.stdin.readline()
    raw.execute("ROLLBACK")
    await store.close()

asyncio.run(main())
"""


async def two_sessions(db: str | Path) -> None:
    """s2 (bob, project proj: three faults over two turns, one staged write) and s3, ended so not shown; on SQLite
    the tests add s1 first (test_inspect.build: local, a flush_miss, a staged and a rejected write)."""
    store = await open_store(db)
    try:
        bob = ClawVMEngine(store, config=EngineConfig(principal="bob"))
        await bob.session_start("s2", project_id="proj", budget=800)
        await bob.write("s2", WriteRequest("create", "notes/a", PROV, "evidence", "first"))
        await bob.write("s2", WriteRequest("append", "notes/a", PROV, content="later", commit="boundary"))
        await bob.lifecycle("s2", "turn_end")
        await bob.lifecycle("s2", "turn_end")
        await store.add_faults(
            "s2",
            [
                FaultEvent("refetch", 1, "notes/a"),
                FaultEvent("refetch", 2, "notes/a"),
                FaultEvent("silent_recall", 2, "x"),
            ],
        )
        await bob.session_start("s3")
        await bob.lifecycle("s3", "session_end")
    finally:
        await store.close()


def top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "top", *args], capture_output=True, text=True, timeout=60, check=False
    )


def rows(out: str) -> dict[str, list[str]]:
    cells = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if ln.startswith("│ ")]
    return {r[0]: r for r in cells[1:]}


def files(folder: Path) -> dict[str, str]:
    """The database and its -wal with a hash of their bytes; a -wal that is empty counts as absent. The -shm is
    left out: it is SQLite's shared-memory index, where every reader (read-only ones too) takes its read mark, and
    a read-only reader of a WAL database leaves an empty -wal and the -shm behind, holding no data."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if not p.name.endswith("-shm") and p.stat().st_size
    }


S1 = ["s1", "local", "default", "1", "1", "fm1", "1.00", "1.000", "1", "1", "1", "3"]
S2 = ["s2", "bob", "proj", "2", "3", "r2 sr1", "1.50", "3.000", "1", "0", "0", "1"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_once_shows_every_open_session_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "store" / "memory.db"
    db.parent.mkdir()
    await build(db)
    await two_sessions(db)
    before = files(db.parent)
    run = top("--db", str(db), "--once")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"clawvm-mcp top  {db}  ") and "2 open sessions" in run.stdout.splitlines()[0]
    assert rows(run.stdout) == {"s1": S1, "s2": S2}  # s3 ended; bob's and local's sessions side by side
    assert "\x1b" not in run.stdout  # not a terminal: no screen clearing
    assert files(db.parent) == before  # no byte of the database changed, no frame in a -wal


async def test_a_session_held_by_another_process_is_shown_without_waiting(tmp_path: Path) -> None:
    db = tmp_path / "store" / "memory.db"
    db.parent.mkdir()
    await build(db)
    await two_sessions(db)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        before = files(db.parent)
        run = top("--db", str(db), "--once")
        assert run.returncode == 0, run.stderr
        held = rows(run.stdout)["s2"]
        assert held[3] == "2"  # the committed turn, not the uncommitted 99
        assert held == [*S2[:8], "0", *S2[9:]]  # the holder's resume settled the staged write; top saw that
        assert files(db.parent) == before
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0


def test_without_once_it_prints_a_table_each_interval(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    anyio.run(two_sessions, db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawvm_mcp", "top", "--db", str(db), "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        heads = 0
        while heads < 2:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            heads += line.startswith("clawvm-mcp top  ")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_a_bad_interval_is_a_clear_error(tmp_path: Path, value: str) -> None:
    run = top("--db", str(tmp_path / "x.db"), "--interval", value, "--once")
    assert run.returncode == 2
    assert "argument --interval" in run.stderr and "seconds" in run.stderr


def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    run = top("--db", str(tmp_path / "missing.db"), "--once")
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.strip() == f"Error: no database at {tmp_path / 'missing.db'}"
    assert not (tmp_path / "missing.db").exists()


async def test_every_store(store_db: str | Path) -> None:
    """SQLite always, PostgreSQL when CLAWVM_TEST_PG names a server (tests/conftest.py store_db)."""
    if isinstance(store_db, Path):
        await build(store_db)
    await two_sessions(store_db)
    run = top("--db", str(store_db), "--once")
    assert run.returncode == 0, run.stderr
    assert rows(run.stdout) == ({"s1": S1, "s2": S2} if isinstance(store_db, Path) else {"s2": S2})


def test_on_a_terminal_each_refresh_clears_the_screen(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    anyio.run(two_sessions, db)
    main, child = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawvm_mcp", "top", "--db", str(db), "--interval", "0.2"], stdout=child
    )
    os.close(child)
    try:
        seen = b""
        while seen.count(b"\x1b[H\x1b[2J") < 2:
            chunk = os.read(main, 65536)
            assert chunk, seen
            seen += chunk
        assert b"clawvm-mcp top  " in seen and b"\x1b" not in seen.replace(b"\x1b[H\x1b[2J", b"")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        os.close(main)


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"top exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def refreshing(db: str | Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """``top --interval 0.2`` with its stdout and stderr in files, so neither blocks while the other is quiet."""
    out, err = tmp_path / "top.out", tmp_path / "top.err"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clawvm_mcp", "top", "--db", str(db), "--interval", "0.2"],
            stdout=fo,
            stderr=fe,
            text=True,
        )
    try:
        yield proc, out, err
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def frames(out: Path) -> int:
    return sum(line.startswith("clawvm-mcp top  ") for line in out.read_text().splitlines())


async def test_a_refreshing_top_reports_a_store_failure_and_retries(tmp_path: Path) -> None:
    db = tmp_path / "memory.db"
    await two_sessions(db)
    with refreshing(db, tmp_path) as (proc, out, err):
        wait_until(lambda: frames(out) >= 1, "the first table", proc)
        db.rename(tmp_path / "away.db")  # the store is gone for a moment (a restore, a remount)
        wait_until(lambda: "retrying" in err.read_text(), "the failure on stderr", proc)
        time.sleep(1)  # five more intervals: the outage is said once, not once per interval
        assert err.read_text().splitlines() == [f"Error: no database at {db} (retrying every 0.2s)"]
        shown = frames(out)
        (tmp_path / "away.db").rename(db)
        wait_until(lambda: frames(out) > shown, "a table after the store came back", proc)
    assert "Traceback" not in err.read_text()


def test_a_refreshing_top_on_a_missing_database_still_fails_at_once(tmp_path: Path) -> None:
    """Only a store that had worked, or one that is busy or unreachable, is waited for: a typo is an error."""
    with refreshing(tmp_path / "typo.db", tmp_path) as (proc, _out, err):
        assert proc.wait(timeout=30) == 2
    assert err.read_text().strip() == f"Error: no database at {tmp_path / 'typo.db'}"


async def allow_connections(url: str | Path, yes: bool) -> None:
    """ALLOW_CONNECTIONS on the test database: false refuses every new connection, superusers' too."""
    import asyncpg  # type: ignore[import-untyped]

    name = str(url).partition("?")[0].rsplit("/", 1)[1]
    admin = await asyncpg.connect(os.environ[PG_ENV])
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(yes).lower()}')
    finally:
        await admin.close()


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PostgreSQL store: set {PG_ENV}=postgresql://...")
async def test_a_refreshing_top_waits_for_a_database_unreachable_at_start(store_db: str | Path, tmp_path: Path) -> None:
    await two_sessions(store_db)
    await allow_connections(store_db, False)
    try:
        with refreshing(store_db, tmp_path) as (proc, out, err):
            wait_until(lambda: "retrying" in err.read_text(), "the failure on stderr", proc)
            assert frames(out) == 0
            await allow_connections(store_db, True)
            wait_until(lambda: frames(out) >= 1, "a table once the database took connections", proc)
    finally:
        await allow_connections(store_db, True)


@pytest.mark.parametrize("store_kind", ["postgres"])
@pytest.mark.skipif(not os.environ.get(PG_ENV), reason=f"PostgreSQL store: set {PG_ENV}=postgresql://...")
async def test_a_refreshing_top_rides_out_a_postgres_outage(store_db: str | Path, tmp_path: Path) -> None:
    await two_sessions(store_db)
    with refreshing(store_db, tmp_path) as (proc, out, err):
        wait_until(lambda: frames(out) >= 1, "the first table", proc)
        await allow_connections(store_db, False)
        try:
            wait_until(lambda: "retrying" in err.read_text(), "the failure on stderr", proc)
            assert "not currently accepting connections" in err.read_text()
            shown = frames(out)
        finally:
            await allow_connections(store_db, True)
        wait_until(lambda: frames(out) > shown, "a table after the database came back", proc)
        assert rows(out.read_text().split("clawvm-mcp top  ")[-1])["s2"] == S2
    assert "Traceback" not in err.read_text()
