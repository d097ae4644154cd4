"""Per-token principals (``serve --http --tokens FILE``): one real HTTP server process, two principals over one
SQLite file. Neither sees or writes the other's sessions or ungranted projects, by tool, resource or recall; the
table reloads on SIGHUP and a bad reload keeps the old one."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.harness import HttpServer, call, child_env, start_http
from tests.support.isolation import check_isolation, note

pytestmark = pytest.mark.anyio
ALICE = "alice-" + "a" * 40
BOB = "bob-" + "b" * 40
ALICE_RO = "alice-read-only-" + "r" * 40  # alice's second token: proj-a to read only
SHORT = "short-but-listed"  # its hash is in the file, but it is under 32 bytes: it must never authenticate


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def entry(token: str, principal: str, grants: dict[str, str]) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(token.encode()).hexdigest(), "principal": principal, "grants": grants}


def write_tokens(path: Path, bob_grants: dict[str, str]) -> None:
    tokens = [
        entry(ALICE, "alice", {"proj-a": "write", "shared": "write"}),
        entry(BOB, "bob", bob_grants),
        entry(ALICE_RO, "alice", {"proj-a": "read"}),
        entry(SHORT, "mallory", {"proj-a": "write"}),
    ]
    path.write_text(json.dumps({"tokens": tokens}))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    write_tokens(tmp_path / "tokens.json", {"proj-b": "write", "shared": "read"})
    srv = start_http(
        tmp_path / "t.db", tmp_path / "t.log", token=None, extra=["--tokens", str(tmp_path / "tokens.json")]
    )
    try:
        yield srv
    finally:
        srv.stop()


async def wait_for(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.1)


async def test_two_principals_cannot_reach_each_other(server: HttpServer) -> None:
    async with server.client(ALICE) as alice, server.client(BOB) as bob:
        await check_isolation(alice, bob)


async def test_each_token_has_its_own_grants_even_between_two_of_one_principal(server: HttpServer) -> None:
    """A principal's read-only token cannot write where its other token may, before, between or after that
    token's requests, and both reach the principal's sessions. (The grants of a request were once the union over
    every token of its principal, so a read-only token wrote.)"""
    async with server.client(ALICE) as rw, server.client(ALICE_RO) as ro:
        await call(rw, "session_start", session_id="a-rw", project_id="proj-a")
        await call(ro, "session_start", session_id="a-ro", project_id="proj-a")
        for n in range(3):
            ro_write = await call(ro, "page_write", **note("a-ro", f"ev/ro{n}", f"read token {n}", scope="project"))
            assert ro_write["status"] == "rejected", ro_write
            rw_write = await call(rw, "page_write", **note("a-rw", f"ev/rw{n}", f"okapi {n}", scope="project"))
            assert rw_write["status"] == "committed", rw_write
        found = await call(ro, "recall", session_id="a-ro", query="okapi")
        assert found["outcome"] == "hit" and len(found["results"]) == 3
        listed = await call(ro, "page_list", session_id="a-rw")  # the principal's session, through either token
        assert {p["page_id"] for p in listed["pages"]} >= {"ev/rw0", "ev/rw1", "ev/rw2"}


async def test_a_short_token_never_authenticates_even_when_listed(server: HttpServer) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces the 401 as its own error type
        async with server.client(SHORT) as client:
            await client.call_tool("session_start", {"session_id": "m1"})
    assert "m1" not in server.log_text()


async def test_sighup_reloads_the_table_and_a_bad_file_keeps_the_old_one(server: HttpServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    async with server.client(ALICE) as alice:
        await call(alice, "session_start", session_id="a1", project_id="proj-a")
        await call(alice, "page_write", **note("a1", "ev/plan", "quetzal project-wide", scope="project"))
    async with server.client(BOB) as bob:
        await call(bob, "session_start", session_id="b-in-a", project_id="proj-a")
        assert (await call(bob, "recall", session_id="b-in-a", query="quetzal"))["outcome"] == "denied"

    write_tokens(tokens, {"proj-b": "write", "proj-a": "read"})
    server.proc.send_signal(signal.SIGHUP)

    async def bob_sees() -> bool:
        async with server.client(BOB) as bob:
            found = await call(bob, "recall", session_id="b-in-a", query="quetzal")
        return bool(found["outcome"] == "hit")

    await wait_for(bob_sees, "bob's new read grant on proj-a")

    tokens.write_text("{not json")
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "not reloaded" not in server.log_text():
        assert time.monotonic() < deadline, server.log_text()
        time.sleep(0.1)
    async with server.client(BOB) as bob:  # the old table, with the grant, stays
        assert (await call(bob, "recall", session_id="b-in-a", query="quetzal"))["outcome"] == "hit"
    assert server.proc.poll() is None


def serve(tmp_path: Path, *extra: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("CLAWVM_TOKEN", None)
    if token is not None:
        env["CLAWVM_TOKEN"] = token
    args = [sys.executable, "-m", "clawvm_mcp", "serve", "--http", "--db", str(tmp_path / "t.db"), "--port", "1"]
    return subprocess.run(
        [*args, *extra], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not JSON"),
        ('{"tokens": []}', "expected"),
        ('{"tokens": [{"sha256": "' + "ab" * 20 + '", "principal": "p"}]}', "64 lowercase hex"),
        ('{"tokens": [{"sha256": "' + "ab" * 32 + '", "principal": ""}]}', "principal must be"),
        ('{"tokens": [{"sha256": "' + "ab" * 32 + '", "principal": "p", "grants": {"x": "admin"}}]}', "read or write"),
    ],
)
def test_a_bad_tokens_file_is_refused_at_start_with_one_line(tmp_path: Path, content: str, says: str) -> None:
    (tmp_path / "tokens.json").write_text(content)
    run = serve(tmp_path, "--tokens", str(tmp_path / "tokens.json"))
    assert run.returncode == 2
    assert says in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_missing_tokens_file_is_refused(tmp_path: Path) -> None:
    run = serve(tmp_path, "--tokens", str(tmp_path / "nope.json"))
    assert run.returncode == 2 and "cannot read the tokens file" in run.stderr


@pytest.mark.parametrize("token", ["", "x", "       "])
def test_an_empty_or_trivial_clawvm_token_is_refused(tmp_path: Path, token: str) -> None:
    run = serve(tmp_path, token=token)
    assert run.returncode == 2
    assert "CLAWVM_TOKEN" in run.stderr and "Traceback" not in run.stderr
