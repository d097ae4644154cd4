"""Scope and principals: a session's pages belong to its principal; project pages need a grant.

Several in-process servers (one per principal) share one SQLite file, as separate harnesses would. Every denied
attempt must leave the other principal's rows byte-identical (checked on a dump of the tables).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError

from clawvm_mcp.engine import EngineConfig
from clawvm_mcp.engine.policy import Grant
from clawvm_mcp.server import ServerConfig, create_server
from tests.support.harness import PROV, call, call_error, child_env, db_fingerprint, dump_tables, stdio_params

pytestmark = pytest.mark.anyio
SECRET = "xyzzy-alice-only"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def connect(tmp_path: Path) -> Connect:
    db = tmp_path / "scope.db"

    @asynccontextmanager
    async def open_as(principal: str, grants: dict[str, Grant] | None = None) -> AsyncIterator[Client]:
        config = ServerConfig(db=db, principal=principal, engine=EngineConfig(grants=grants))
        async with Client(create_server(config)) as client:
            yield client

    return open_as


def _rows_of(db: Path, namespace: str) -> list[tuple[object, ...]]:
    return [row for row in dump_tables(db)["pages"] if row[0] == namespace]


async def test_session_pages_are_invisible_and_unwritable_to_other_principals(connect: Connect, tmp_path: Path) -> None:
    db = tmp_path / "scope.db"
    async with connect("alice") as alice, connect("bob") as bob:
        await call(alice, "session_start", session_id="a1")
        await call(
            alice,
            "page_write",
            session_id="a1",
            page_id="conv/secret",
            op="create",
            type="conversation",
            content=f"the code word is {SECRET}",
            provenance=PROV,
        )
        await call(
            alice,
            "page_write",
            session_id="a1",
            page_id="conv/secret",
            op="append",
            content="staged",
            provenance=PROV,
            commit="boundary",
        )
        before = _rows_of(db, "s:a1")
        journal_before = [r for r in dump_tables(db)["journal"] if r[1] == "a1"]

        # bob cannot take over, read, write or flush alice's session by naming it
        taken = await call_error(bob, "session_start", session_id="a1")  # taken, and nothing says by whom
        assert "is not available; choose another id" in taken and "principal" not in taken
        cases: list[tuple[str, dict[str, Any]]] = [
            ("page_read", {"page_id": "conv/secret"}),
            ("page_write", {"page_id": "conv/secret", "op": "append", "content": "bob was here", "provenance": PROV}),
            ("page_write", {"page_id": "conv/secret", "op": "delete", "base_version": 1, "provenance": PROV}),
            ("page_pin", {"page_id": "conv/secret"}),
            ("page_unpin", {"page_id": "conv/secret"}),
            ("page_list", {}),
            ("recall", {"query": SECRET}),
            ("context_assemble", {}),
            ("tool_execute", {"tool": "grep", "args": {"q": SECRET}}),
            ("lifecycle", {"event": "session_end"}),
            ("lifecycle", {"event": "flush"}),
            ("session_stats", {}),
        ]
        for tool, args in cases:
            text = await call_error(bob, tool, session_id="a1", **args)
            assert "No session 'a1'" in text and "session_start" in text, (tool, text)
        for uri in (
            "clawvm://sessions/a1/pages/conv/secret",
            "clawvm://sessions/a1/journal",
            "clawvm://sessions/a1/faults",
            "clawvm://sessions/a1/context",
        ):
            with pytest.raises(MCPError):
                await bob.read_resource(uri)

        # nor see it from his own session, by id, by words or in his prompt
        await call(bob, "session_start", session_id="b1")
        assert (await call(bob, "page_read", session_id="b1", page_id="conv/secret"))["outcome"] == "no_match"
        assert (await call(bob, "recall", session_id="b1", query=SECRET))["outcome"] == "no_match"
        assert (await call(bob, "page_list", session_id="b1"))["outcome"] == "no_match"
        assert SECRET not in (await call(bob, "context_assemble", session_id="b1"))["prompt"]
        # the same page id in his own session is his own page
        own = await call(
            bob,
            "page_write",
            session_id="b1",
            page_id="conv/secret",
            op="create",
            type="conversation",
            content="bob's note",
            provenance=PROV,
        )
        assert (own["status"], own["version"]) == ("committed", 1)

        assert _rows_of(db, "s:a1") == before
        assert [r for r in dump_tables(db)["journal"] if r[1] == "a1"] == journal_before
        read = await call(alice, "page_read", session_id="a1", page_id="conv/secret")
        assert SECRET in read["page"]["text"] and "bob" not in read["page"]["text"]
        flushed = await call(alice, "lifecycle", session_id="a1", event="flush")
        assert flushed["committed"] == 1  # alice's staged row was still hers to commit


async def test_project_pages_need_a_grant(connect: Connect, tmp_path: Path) -> None:
    db = tmp_path / "scope.db"
    async with connect("owner") as owner:  # no grants given: the owner of the database writes every project
        await call(owner, "session_start", session_id="o1", project_id="projA")
        made = await call(
            owner,
            "page_write",
            session_id="o1",
            page_id="pref/style",
            op="create",
            type="preference",
            content="tabs, never spaces; style word quokka",
            provenance=PROV,
        )
        assert made["status"] == "committed"
    project_rows = _rows_of(db, "p:projA")
    assert len(project_rows) == 1

    async with connect("reader", {"projA": "read"}) as reader:
        await call(reader, "session_start", session_id="r1", project_id="projA")
        read = await call(reader, "page_read", session_id="r1", page_id="pref/style")
        assert read["outcome"] == "hit" and "quokka" in read["page"]["text"]
        before = db_fingerprint(db, skip_rejected=True)
        attempts: list[dict[str, Any]] = [
            {"page_id": "pref/style", "op": "append", "content": "and spaces"},
            {"page_id": "pref/style", "op": "set", "content": "spaces", "base_version": 1},
            {"page_id": "pref/style", "op": "delete", "base_version": 1},
            {"page_id": "pref/new", "op": "create", "type": "preference", "content": "x"},
            {"page_id": "conv/c", "op": "create", "type": "conversation", "content": "x", "scope": "project"},
        ]
        for args in attempts:
            out = await call(reader, "page_write", session_id="r1", provenance=PROV, **args)
            assert out["status"] == "rejected", (args, out)
            assert "SCOPE_DENIED" in {r["code"] for r in out["reasons"]}, (args, out)
            assert any("grant" in r["detail"] for r in out["reasons"] if r["code"] == "SCOPE_DENIED")
        pinned = await call(reader, "page_pin", session_id="r1", page_id="pref/style")
        assert pinned["status"] == "rejected" and "SCOPE_DENIED" in {r["code"] for r in pinned["reasons"]}
        assert db_fingerprint(db, skip_rejected=True) == before
        # a read grant still lets the principal keep its own session pages
        own = await call(
            reader,
            "page_write",
            session_id="r1",
            page_id="conv/own",
            op="create",
            type="conversation",
            content="mine",
            provenance=PROV,
        )
        assert own["status"] == "committed"

    async with connect("stranger", {"projB": "write"}) as stranger:
        await call(stranger, "session_start", session_id="x1", project_id="projA")
        assert (await call(stranger, "page_read", session_id="x1", page_id="pref/style"))["outcome"] == "denied"
        assert (await call(stranger, "page_list", session_id="x1", scope="project"))["outcome"] == "denied"
        assert (await call(stranger, "recall", session_id="x1", query="quokka"))["outcome"] == "denied"
        assert "quokka" not in (await call(stranger, "context_assemble", session_id="x1"))["prompt"]
        out = await call(
            stranger,
            "page_write",
            session_id="x1",
            page_id="pref/other",
            op="create",
            type="preference",
            content="x",
            provenance=PROV,
        )
        assert out["status"] == "rejected" and "SCOPE_DENIED" in {r["code"] for r in out["reasons"]}
        # a grant on another project opens only that project
        await call(stranger, "session_start", session_id="x2", project_id="projB")
        ok = await call(
            stranger,
            "page_write",
            session_id="x2",
            page_id="pref/other",
            op="create",
            type="preference",
            content="projB only",
            provenance=PROV,
        )
        assert ok["status"] == "committed"
        assert (await call(stranger, "page_read", session_id="x2", page_id="pref/style"))["outcome"] == "no_match"

    async with connect("writer", {"projA": "write"}) as writer:
        await call(writer, "session_start", session_id="w1", project_id="projA")
        out = await call(
            writer,
            "page_write",
            session_id="w1",
            page_id="pref/style",
            op="append",
            content="and a final newline",
            provenance=PROV,
        )
        assert (out["status"], out["version"]) == ("committed", 2)
    assert _rows_of(db, "p:projA") != project_rows  # only the writer changed it


async def test_cli_grant_flag_limits_a_stdio_server(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    async with Client(stdio_params(db)) as owner:
        await call(owner, "session_start", session_id="o1", project_id="projA")
        await call(
            owner,
            "page_write",
            session_id="o1",
            page_id="pref/style",
            op="create",
            type="preference",
            content="tabs",
            provenance=PROV,
        )
    before = {k: v for k, v in dump_tables(db, skip_rejected=True).items() if k in ("pages", "journal")}
    async with Client(stdio_params(db, "--principal", "carol", "--grant", "projA=read")) as carol:
        await call(carol, "session_start", session_id="c1", project_id="projA")
        assert (await call(carol, "page_read", session_id="c1", page_id="pref/style"))["outcome"] == "hit"
        out = await call(
            carol, "page_write", session_id="c1", page_id="pref/style", op="append", content="x", provenance=PROV
        )
        assert out["status"] == "rejected" and [r["code"] for r in out["reasons"]] == ["SCOPE_DENIED"]
        taken = await call_error(carol, "session_start", session_id="o1")
        assert "is not available; choose another id" in taken and "principal" not in taken
    after = dump_tables(db, skip_rejected=True)
    assert {k: after[k] for k in before} == before  # carol's only mark: her session row and rejected attempts

    bad = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(db), "--grant", "projA=admin"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert bad.returncode != 0
    assert "--grant takes PROJECT=read or PROJECT=write" in bad.stderr
