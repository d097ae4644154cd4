"""Issue 10's defects, one regression test each: acknowledged writes lost once a second process, a cancelled call or
a concurrent ``session_start`` is involved, and store failures reported as something else.

Every test drives the product through its public surfaces only: ``clawvm-mcp serve`` over stdio with a real MCP
client (a second process is a second real server), ``clawvm-mcp lifecycle`` as its own process (what a harness hook
runs), and the SQLite file itself (a plain connection that holds the write lock, or reads what another connection
would see). Assertions are on what a caller is told, what another process reads and what survives a restart.

Each test failed on the code before the fix (commit 523ef64) and passes since; ``CLAWVM_STORE_TIMEOUT`` (seconds,
default 5) bounds the waits, and ``STORE_BUSY`` is the reason code of a write that could not wait longer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import TextResourceContents

from tests.support import harness
from tests.support.harness import PROV, bare_error, child_env, error_text, stdio_params

pytestmark = pytest.mark.anyio

CALL_BOUND = 30.0  # no single call in these tests may take longer; a hang fails the test instead of the suite


# ---------------------------------------------------------------------------------------------- helpers


async def call(client: Client, tool: str, /, **args: Any) -> dict[str, Any]:
    """A tool call that must succeed, and answer within CALL_BOUND."""
    with anyio.fail_after(CALL_BOUND):
        return await harness.call(client, tool, **args)


async def call_error(client: Client, tool: str, /, **args: Any) -> str:
    """A tool call that must fail with a model-facing error, within CALL_BOUND; its text."""
    with anyio.fail_after(CALL_BOUND):
        return await harness.call_error(client, tool, **args)


async def write(client: Client, session: str, page_id: str, op: str, content: str, **extra: Any) -> dict[str, Any]:
    """A page_write that must answer with a result (committed, staged or rejected), never an error."""
    return await call(
        client, "page_write", session_id=session, page_id=page_id, op=op, content=content, provenance=PROV, **extra
    )


async def text_of(client: Client, session: str, page_id: str) -> tuple[int, str]:
    read = await call(client, "page_read", session_id=session, page_id=page_id)
    assert read["outcome"] == "hit", read
    return int(read["page"]["version"]), str(read["page"]["text"])


async def journal_status(client: Client, session: str) -> dict[int, dict[str, Any]]:
    """The session's journal as the server reports it (the journal resource), by txn id."""
    with anyio.fail_after(CALL_BOUND):
        res = await client.read_resource(f"clawvm://sessions/{session}/journal")
    content = res.contents[0]
    assert isinstance(content, TextResourceContents)
    return {int(e["txn_id"]): e for e in json.loads(content.text)["entries"]}


async def hook(db: Path, session: str, event: str) -> dict[str, Any]:
    """``clawvm-mcp lifecycle`` in its own process, exactly as a harness hook runs it."""
    cmd = [sys.executable, "-m", "clawvm_mcp", "lifecycle", "--db", str(db), "--session", session, "--event", event]
    with anyio.fail_after(CALL_BOUND):
        done = await anyio.run_process(cmd, env=child_env(), check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@contextmanager
def foreign_write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (this test process, not the server) holding the file's write lock."""
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=5)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def can_take_write_lock(db: Path, timeout: float = 2.0) -> bool:
    conn = sqlite3.connect(str(db), isolation_level=None, timeout=timeout)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


DISK_FULL = re.compile(r"disk (is )?full|database or disk is full|no space left", re.IGNORECASE)


def names_disk_full(text: str) -> bool:
    return bool(DISK_FULL.search(text)) and "busy" not in text.lower()


def filler(size: int) -> str:
    """About ``size`` characters of ordinary words (a page of text, not one pathological 40 KB token)."""
    words = "the store must say when the disk is full and keep every write it acknowledged".split()
    return " ".join(words[k % len(words)] for k in range(size // 5))


# ---------------------------------------------------------------------------------------------- cancellation


async def test_cancelled_write_under_a_foreign_lock_loses_no_later_commit(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
        with foreign_write_lock(db):
            with anyio.move_on_after(1.0) as waited:
                await a.call_tool(
                    "page_write",
                    {
                        "session_id": "s1",
                        "page_id": "conv/a",
                        "op": "append",
                        "content": "given-up",
                        "provenance": PROV,
                        "commit": "boundary",
                    },
                )
            assert waited.cancelled_caught, "the write did not wait on the foreign lock: nothing was cancelled"
            await anyio.sleep(0.3)  # the cancellation reaches the server while the lock is still held
        await anyio.sleep(0.5)  # the lock is free; whatever the server still had queued runs now
        after = await write(a, "s1", "conv/a", "append", "after-cancel")
        assert after["status"] == "committed", after
        assert can_take_write_lock(db), "the server still holds the write lock after the cancelled write"
        async with Client(stdio_params(db)) as b:  # another process reads what was acknowledged
            await call(b, "session_start", session_id="s1")
            version, text = await text_of(b, "s1", "conv/a")
            assert (version, "after-cancel" in text) == (after["version"], True), "a committed write is invisible"
    async with Client(stdio_params(db)) as c:  # and it survives a restart
        await call(c, "session_start", session_id="s1")
        version, text = await text_of(c, "s1", "conv/a")
    assert version == after["version"] and "after-cancel" in text


# ---------------------------------------------------------------------------------------------- staged rows


async def test_hook_turn_end_between_two_staged_writes_commits_both(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "A0", type="conversation")
        a1 = await write(a, "s1", "conv/a", "append", "A1", commit="boundary")
        await hook(db, "s1", "turn_end")  # Claude Code's Stop hook, in its own process
        a2 = await write(a, "s1", "conv/a", "append", "A2", commit="boundary")
        assert (a1["status"], a2["status"]) == ("staged", "staged")
        flushed = await call(a, "lifecycle", session_id="s1", event="flush")
        assert flushed["rejected"] == 0, flushed
        _, text = await text_of(a, "s1", "conv/a")
        assert text.splitlines() == ["A0", "A1", "A2"]
        journal = await journal_status(a, "s1")
    assert [journal[s["txn_id"]]["status"] for s in (a1, a2)] == ["committed", "committed"]


async def test_session_start_rerun_under_600_staged_appends_rejects_none(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    pages = [f"conv/{i}" for i in range(6)]
    staged: list[tuple[str, str, dict[str, Any]]] = []
    committed: list[tuple[str, str, dict[str, Any]]] = []
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        for page in pages:
            await write(a, "s1", page, "create", f"{page}:0", type="conversation")
        limit = anyio.Semaphore(24)
        done = anyio.Event()

        async def append(k: int, commit: str) -> None:
            page, token = pages[k % len(pages)], f"{commit}-{k}"
            async with limit:
                result = await write(a, "s1", page, "append", token, commit=commit)
            (staged if commit == "boundary" else committed).append((page, token, result))

        async def rerun() -> None:
            while not done.is_set():
                with anyio.fail_after(CALL_BOUND):
                    await call(a, "session_start", session_id="s1")
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            tg.start_soon(rerun)
            async with anyio.create_task_group() as writers:
                for k in range(600):
                    writers.start_soon(append, k, "boundary")
                    if k % 6 == 0:
                        writers.start_soon(append, k, "now")
            done.set()
        refused = [(t, r) for _, t, r in staged if r["status"] != "staged"]
        refused += [(t, r) for _, t, r in committed if r["status"] != "committed"]
        assert refused == [], f"{len(refused)} of {len(staged) + len(committed)} writes refused: {refused[:3]}"
        flushed = await call(a, "lifecycle", session_id="s1", event="flush")
        assert flushed["rejected"] == 0, flushed
    async with Client(stdio_params(db)) as b:
        await call(b, "session_start", session_id="s1")
        texts = {page: (await text_of(b, "s1", page))[1].splitlines() for page in pages}
    lost = [t for p, t, _ in staged + committed if texts[p].count(t) != 1]
    assert lost == [], f"{len(lost)} acknowledged appends missing or doubled: {lost[:5]}"


async def test_two_principals_racing_session_start_one_owns_it(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    rounds = 40
    both: list[int] = []
    async with (
        Client(stdio_params(db, "--principal", "alice")) as alice,
        Client(stdio_params(db, "--principal", "bob")) as bob,
    ):
        # what each principal is told about an id nobody ever started: the answer the loser must get
        unknown = {
            name: (await call_error(c, "page_list", session_id="never-started")).replace("never-started", "{id}")
            for name, c in (("alice", alice), ("bob", bob))
        }
        for i in range(rounds):
            sid = f"race-{i}"
            outcome: dict[str, bool] = {}

            async def start(name: str, client: Client, sid: str = sid, outcome: dict[str, bool] = outcome) -> None:
                with anyio.fail_after(CALL_BOUND):
                    result = await client.call_tool("session_start", {"session_id": sid})
                outcome[name] = not result.is_error

            async with anyio.create_task_group() as tg:
                tg.start_soon(start, "alice", alice)
                tg.start_soon(start, "bob", bob)
            if all(outcome.values()):
                both.append(i)
                continue
            assert any(outcome.values()), f"round {i}: neither principal got the session"
            winner, loser = ("alice", "bob") if outcome["alice"] else ("bob", "alice")
            owner, other = (alice, bob) if winner == "alice" else (bob, alice)
            await write(owner, sid, "conv/secret", "create", f"{winner}-only", type="conversation")
            seen = await call_error(other, "page_read", session_id=sid, page_id="conv/secret")
            never = await call_error(other, "page_read", session_id="never-started", page_id="conv/secret")
            assert seen == never.replace("never-started", sid), f"round {i}: {loser} sees {winner}'s session"
            assert (await call_error(other, "page_list", session_id=sid)) == unknown[loser].replace("{id}", sid)
    assert both == [], f"both principals got the session in {len(both)} of {rounds} rounds"


# ---------------------------------------------------------------------------------------------- one truth


async def test_pinned_constraint_committed_by_another_server_is_in_the_prompt(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a, Client(stdio_params(db)) as b:
        await call(b, "session_start", session_id="s1")
        await call(a, "session_start", session_id="s1")
        made = await write(a, "s1", "constraint/prod", "create", "- never push to prod on fridays", type="constraint")
        assert made["status"] == "committed"
        prompt = await call(b, "context_assemble", session_id="s1", budget=2000)
        assert "never push to prod on fridays" in prompt["prompt"], prompt
        stats = await call(b, "session_stats", session_id="s1")
        assert stats["faults_total"] == 0, stats


async def test_project_page_set_in_one_session_is_seen_at_its_new_version_in_another(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1", project_id="p")
        await write(a, "s1", "pref/lang", "create", "language: python", type="preference")
        await call(a, "session_start", session_id="s2", project_id="p")
        assert await text_of(a, "s2", "pref/lang") == (1, "language: python")
        changed = await write(a, "s1", "pref/lang", "set", "language: rust", base_version=1)
        assert changed["status"] == "committed"
        assert await text_of(a, "s2", "pref/lang") == (changed["version"], "language: rust")
        prompt = await call(a, "context_assemble", session_id="s2", budget=2000)
        assert "language: rust" in prompt["prompt"] and "python" not in prompt["prompt"], prompt


async def test_turn_advanced_by_a_hook_process_is_seen_by_the_server(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        started = await call(a, "session_start", session_id="s1")
        assert started["turn"] == 0
        assert (await hook(db, "s1", "turn_end"))["turn"] == 1
        assert (await hook(db, "s1", "turn_end"))["turn"] == 2
        stats = await call(a, "session_stats", session_id="s1")
        prompt = await call(a, "context_assemble", session_id="s1")
        assert (stats["turn"], prompt["turn"]) == (2, 2)
        ended = await call(a, "lifecycle", session_id="s1", event="turn_end")
    assert ended["turn"] == 3


async def test_stale_staged_copy_of_a_project_page_does_not_drop_another_sessions_commit(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as c:
        await call(c, "session_start", session_id="a1", project_id="p")
        x0 = await write(c, "a1", "pref/shared", "create", "X0", type="preference")
        assert x0["status"] == "committed"
        await call(c, "session_start", session_id="a2", project_id="p")
        x1 = await write(c, "a2", "pref/shared", "append", "X1", commit="boundary")
        y = await write(c, "a1", "pref/shared", "append", "Y")
        z = await write(c, "a2", "pref/shared", "append", "Z")
        assert (x1["status"], y["status"], y["version"]) == ("staged", "committed", 2)
        flushed = await call(c, "lifecycle", session_id="a2", event="flush")
    async with Client(stdio_params(db)) as fresh:
        await call(fresh, "session_start", session_id="a1", project_id="p")
        _, text = await text_of(fresh, "a1", "pref/shared")
    lines = text.splitlines()
    assert "Y" in lines, f"acknowledged v2 'Y' is gone: {lines}"
    if z["status"] == "committed":
        assert "Z" in lines, lines
    assert ("X1" in lines) or flushed["rejected"] >= 1, "the staged X1 vanished without a rejection reported to a2"


# ---------------------------------------------------------------------------------------------- bounded waits


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(600)
"""


@contextmanager
def stopped_lock_holder(db: Path) -> Iterator[int]:
    """A process that takes the write lock and is then SIGSTOPped: it holds the lock and never lets go."""
    proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        os.kill(proc.pid, signal.SIGSTOP)
        yield proc.pid
    finally:
        proc.kill()  # SIGKILL ends a stopped process too; the lock goes with it
        proc.wait(10)


@pytest.mark.parametrize(
    ("timeout_env", "bound", "commits"),
    [(None, 5.0, ("now",)), ("1", 1.0, ("now", "boundary"))],
    ids=["default-5s", "CLAWVM_STORE_TIMEOUT=1"],
)
async def test_write_blocked_by_a_stopped_lock_holder_is_rejected_store_busy_in_bounded_time(
    tmp_path: Path, timeout_env: str | None, bound: float, commits: tuple[str, ...]
) -> None:
    db = tmp_path / "m.db"
    env = {"CLAWVM_STORE_TIMEOUT": timeout_env} if timeout_env else None
    async with Client(stdio_params(db, env=env)) as a:
        await call(a, "session_start", session_id="s1")
        made = await write(a, "s1", "conv/a", "create", "zero", type="conversation")
        answers: list[tuple[str, float, dict[str, Any]]] = []
        with stopped_lock_holder(db):
            for commit in commits:
                began = time.monotonic()
                with anyio.fail_after(bound + 6):
                    result = await call(
                        a,
                        "page_write",
                        session_id="s1",
                        page_id="conv/a",
                        op="append",
                        content=f"blocked-{commit}",
                        provenance=PROV,
                        commit=commit,
                    )
                answers.append((commit, time.monotonic() - began, result))
        for commit, took, result in answers:
            assert result["status"] == "rejected", (commit, result)
            assert [r["code"] for r in result["reasons"]] == ["STORE_BUSY"], (commit, result)
            assert bound * 0.5 <= took <= bound + 2.5, f"{commit}: answered after {took:.1f}s, bound {bound}s"
        version, text = await text_of(a, "s1", "conv/a")
    assert (version, text) == (made["version"], "zero"), "a STORE_BUSY rejection changed the page"


# ---------------------------------------------------------------------------------------------- store failures


SMALL_DISK = (
    'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 3; "$3" -m clawvm_mcp serve --db "$2/m.db"; cp "$2"/m.db* "$4"/'
)


def small_disk_available() -> bool:
    """A user and mount namespace of our own lets any user mount a tmpfs, seen by the server process alone."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def small_disk_params(mount: Path, size: str, out: Path) -> StdioServerParameters:
    """``clawvm-mcp serve --db MOUNT/m.db`` on a tmpfs of ``size`` (a real ENOSPC, SQLITE_FULL, when it fills); when
    the server exits, its files are copied to ``out`` so the test can check what survived."""
    args = ["--user", "--map-root-user", "--mount", "sh", "-c", SMALL_DISK, "sh", size, str(mount), sys.executable]
    return StdioServerParameters(command="unshare", args=[*args, str(out)], env=child_env())


async def test_disk_full_is_reported_as_disk_full(tmp_path: Path) -> None:
    if not small_disk_available():
        pytest.skip("no user/mount namespace to mount a small tmpfs in")
    mount, out = tmp_path / "small", tmp_path / "out"
    mount.mkdir()
    out.mkdir()
    db = out / "m.db"
    acknowledged: list[tuple[str, int]] = []
    errors: list[tuple[str, str, str]] = []  # (tool, what, error text)
    async with Client(small_disk_params(mount, "1536k", out)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
        staged = await write(a, "s1", "conv/a", "append", "staged-before-full", commit="boundary")
        assert staged["status"] == "staged"
        # fill the disk with ever smaller pages until even a small one no longer fits
        for size in (40_000, 8_000, 1_500, 300):
            for i in range(400):
                page_id = f"conv/fill-{size}-{i}"
                with anyio.fail_after(CALL_BOUND):
                    result = await a.call_tool(
                        "page_write",
                        {
                            "session_id": "s1",
                            "page_id": page_id,
                            "op": "create",
                            "type": "conversation",
                            "content": f"{i}\n{filler(size)}",
                            "provenance": PROV,
                        },
                    )
                if result.is_error:
                    errors.append(("page_write", f"create {size}", error_text(result)))
                    break
                assert result.structured_content is not None
                assert result.structured_content["status"] == "committed", result.structured_content
                acknowledged.append((page_id, int(result.structured_content["version"])))
        assert len(errors) == 4, f"the disk never filled: {errors}"  # one per size
        with anyio.fail_after(CALL_BOUND):
            boundary = await a.call_tool(
                "page_write",
                {
                    "session_id": "s1",
                    "page_id": "conv/a",
                    "op": "append",
                    "content": filler(40_000),
                    "provenance": PROV,
                    "commit": "boundary",
                },
            )
        assert boundary.is_error, f"a staged write on a full disk answered {boundary.structured_content}"
        errors.append(("page_write", "staged append", error_text(boundary)))
        with anyio.fail_after(CALL_BOUND):
            flush = await a.call_tool("lifecycle", {"session_id": "s1", "event": "flush"})
        if flush.is_error:
            errors.append(("lifecycle", "flush", error_text(flush)))
    misnamed = [(what, text) for tool, what, text in errors if not names_disk_full(text) or bare_error(tool, text)]
    assert misnamed == [], misnamed
    async with Client(stdio_params(db)) as b:  # room again: everything acknowledged is there
        await call(b, "session_start", session_id="s1")
        for page_id, version in acknowledged:
            assert (await text_of(b, "s1", page_id))[0] == version
        assert "staged-before-full" in (await text_of(b, "s1", "conv/a"))[1]


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The file cannot be written by the server. root ignores permission bits, so root makes it immutable."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(mode)


async def test_read_only_db_is_refused_at_start_with_one_clear_line(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
    assert not Path(f"{db}-wal").exists(), "a clean shutdown leaves no WAL"
    before = db.read_bytes()
    with read_only(db):
        done = subprocess.run(
            [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(db)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error:"), lines
    assert re.search(r"read-only|read only|readonly", lines[0], re.IGNORECASE) and str(db) in lines[0], lines
    assert db.read_bytes() == before


@pytest.mark.parametrize("how", ["deleted", "replaced"])
async def test_db_file_deleted_or_replaced_while_running_refuses_writes(tmp_path: Path, how: str) -> None:
    db = tmp_path / "m.db"
    other = tmp_path / "other.db"
    async with Client(stdio_params(other)) as o:  # a valid clawvm database of its own to put in its place
        await call(o, "session_start", session_id="s1")
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            shutil.copyfile(other, db)
        answers = []
        for op, extra in (("append", {}), ("append", {"commit": "boundary"})):
            with anyio.fail_after(CALL_BOUND):
                answers.append(
                    await a.call_tool(
                        "page_write",
                        {"session_id": "s1", "page_id": "conv/a", "op": op, "content": "x", "provenance": PROV} | extra,
                    )
                )
    for result in answers:
        assert result.is_error, f"a write to a {how} database file answered {result.structured_content}"
        text = error_text(result)
        assert re.search(r"delet|replac|moved|missing|no longer", text, re.IGNORECASE), text
        assert not bare_error("page_write", text), text


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_new_db_files_are_private_and_existing_ones_are_left_alone(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "nested" / "memory.db"
    async with Client(stdio_params(fresh)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
        modes = {p.name: mode_of(p) for p in fresh.parent.iterdir() if p.name.startswith("memory.db")}
        dir_mode = mode_of(fresh.parent)
    assert dir_mode == 0o700, oct(dir_mode)
    assert set(modes) >= {"memory.db", "memory.db-wal", "memory.db-shm"}, modes
    assert all(m == 0o600 for m in modes.values()), {k: oct(v) for k, v in modes.items()}

    existing_dir = tmp_path / "existing"
    existing_dir.mkdir(mode=0o755)
    existing_dir.chmod(0o755)
    existing = existing_dir / "memory.db"
    existing.touch()
    existing.chmod(0o644)
    async with Client(stdio_params(existing)) as b:
        await call(b, "session_start", session_id="s1")
    assert (mode_of(existing_dir), mode_of(existing)) == (0o755, 0o644), "existing files must be left as they are"


async def test_rejected_journal_row_keeps_reasons_a_digest_and_at_most_4_kib(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        await write(a, "s1", "conv/a", "create", "zero", type="conversation")
    size_before = db.stat().st_size
    huge = "y" * 1_000_000
    async with Client(stdio_params(db)) as a:
        await call(a, "session_start", session_id="s1")
        rejected = [await write(a, "s1", "conv/a", "append", f"{k}{huge}") for k in range(10)]
        journal = await journal_status(a, "s1")
    assert all(r["status"] == "rejected" for r in rejected), [r["status"] for r in rejected]
    for r in rejected:
        row = journal[r["txn_id"]]
        assert row["status"] == "rejected" and [x["code"] for x in row["reasons"]] == ["SCHEMA_INVALID"], row
    grown = db.stat().st_size - size_before
    assert grown < 1_000_000, f"10 rejected 1 MB writes grew the database by {grown:,} bytes"
    with closing(sqlite3.connect(str(db))) as conn:
        conn.row_factory = sqlite3.Row
        marks = ",".join("?" * len(rejected))
        rows = conn.execute(f"SELECT * FROM journal WHERE txn_id IN ({marks})", [r["txn_id"] for r in rejected])
        for row in rows:
            stored = " ".join(str(v) for v in tuple(row))
            assert len(stored) <= 4096 + 2048, f"txn {row['txn_id']}: {len(stored):,} characters kept"
            assert re.search(r"[0-9a-f]{32,}", stored), f"txn {row['txn_id']}: no digest of the request kept"
