"""Limits: per-page size, per-session page count, budgets and the hard-pinned floor. Each limit gives a clear,
named answer and leaves the store as it was. (The HTTP request-size limit is in test_http.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from clawvm_mcp.engine import EngineConfig
from clawvm_mcp.pages import MAX_PAGE_BYTES
from clawvm_mcp.server import ServerConfig, create_server
from tests.support.harness import PROV, call, call_error, db_fingerprint

pytestmark = pytest.mark.anyio
PAGE_LIMIT = 4


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "limits.db"


@pytest.fixture
async def client(db: Path) -> AsyncIterator[Client]:
    config = ServerConfig(db=db, engine=EngineConfig(max_pages_per_session=PAGE_LIMIT))
    async with Client(create_server(config)) as c:
        await call(c, "session_start", session_id="s", budget=200_000)
        yield c


def _size_reason(out: dict[str, object]) -> str:
    assert out["status"] == "rejected", out
    reasons = out["reasons"]
    assert isinstance(reasons, list)
    details = [r["detail"] for r in reasons if r["code"] == "SCHEMA_INVALID"]
    assert any(f"the limit is {MAX_PAGE_BYTES} bytes per page" in d for d in details), reasons
    return str(details)


async def write(client: Client, **args: Any) -> dict[str, Any]:
    return await call(client, "page_write", session_id="s", provenance=PROV, **args)


async def test_page_size_limit_is_64_kib_in_bytes(client: Client, db: Path) -> None:
    assert MAX_PAGE_BYTES == 64 * 1024
    exact = await write(client, page_id="conv/exact", op="create", type="conversation", content="x" * MAX_PAGE_BYTES)
    assert exact["status"] == "committed"
    before = db_fingerprint(db, skip_rejected=True)
    over: list[dict[str, Any]] = [
        {"page_id": "conv/over", "op": "create", "type": "conversation", "content": "x" * (MAX_PAGE_BYTES + 1)},
        # bytes, not characters: 2-byte characters reach the limit at half the length
        {"page_id": "conv/wide", "op": "create", "type": "conversation", "content": "é" * (MAX_PAGE_BYTES // 2 + 1)},
        {"page_id": "conv/exact", "op": "append", "content": "y"},
        {"page_id": "conv/exact", "op": "set", "content": "z" * (MAX_PAGE_BYTES + 1), "base_version": 1},
        {"page_id": "conv/exact", "op": "merge", "fields": {"gist": "g" * 10}},
        # fields count too: a small content cannot smuggle a huge structured form
        {
            "page_id": "conv/fields",
            "op": "create",
            "type": "conversation",
            "content": "x",
            "fields": {"gist": "g" * (MAX_PAGE_BYTES + 1)},
        },
        {"page_id": "conv/exact", "op": "append", "content": "y", "commit": "boundary"},
    ]
    for args in over:
        _size_reason(await write(client, **args))
    assert db_fingerprint(db, skip_rejected=True) == before
    read = await call(client, "page_read", session_id="s", page_id="conv/exact")
    assert read["page"]["version"] == 1 and len(read["page"]["text"]) == MAX_PAGE_BYTES


async def test_staged_appends_count_toward_the_page_size(client: Client) -> None:
    half = MAX_PAGE_BYTES // 2
    assert (await write(client, page_id="conv/a", op="create", type="conversation", content="x"))[
        "status"
    ] == "committed"
    first = await write(client, page_id="conv/a", op="append", content="y" * half, commit="boundary")
    assert first["status"] == "staged"
    _size_reason(await write(client, page_id="conv/a", op="append", content="z" * half, commit="boundary"))
    flushed = await call(client, "lifecycle", session_id="s", event="flush")
    assert (flushed["committed"], flushed["rejected"]) == (1, 0)


async def test_tool_result_over_the_page_limit_is_a_clear_error(client: Client, db: Path) -> None:
    before = db_fingerprint(db)
    text = await call_error(
        client, "tool_execute", session_id="s", tool="cat", args={"path": "big.log"}, result="r" * (MAX_PAGE_BYTES + 1)
    )
    assert f"evidence pages hold at most {MAX_PAGE_BYTES}" in text and "summary" in text
    assert db_fingerprint(db) == before


async def test_session_page_limit(client: Client, db: Path) -> None:
    for i in range(PAGE_LIMIT):
        out = await write(client, page_id=f"conv/{i}", op="create", type="conversation", content=f"page {i}")
        assert out["status"] == "committed"
    before = db_fingerprint(db, skip_rejected=True)
    for commit in ("now", "boundary"):
        out = await write(
            client, page_id="conv/extra", op="create", type="conversation", content="one too many", commit=commit
        )
        assert out["status"] == "rejected"
        assert [r["detail"] for r in out["reasons"]] == [f"session page limit of {PAGE_LIMIT} reached"]
    text = await call_error(client, "tool_execute", session_id="s", tool="ls", args={}, result="a b c")
    assert f"session page limit of {PAGE_LIMIT} reached" in text
    assert db_fingerprint(db, skip_rejected=True) == before
    # a delete frees a slot
    gone = await write(client, page_id="conv/0", op="delete", base_version=1)
    assert gone["status"] == "committed"
    assert (await write(client, page_id="conv/extra", op="create", type="conversation", content="fits"))[
        "status"
    ] == "committed"


async def test_staged_creates_count_toward_the_session_page_limit(client: Client, db: Path) -> None:
    statuses = []
    for i in range(PAGE_LIMIT + 2):
        out = await write(
            client, page_id=f"conv/{i}", op="create", type="conversation", content=f"p{i}", commit="boundary"
        )
        statuses.append(out["status"])
    assert statuses == ["staged"] * PAGE_LIMIT + ["rejected"] * 2
    flushed = await call(client, "lifecycle", session_id="s", event="flush")
    assert flushed["committed"] == PAGE_LIMIT
    assert len((await call(client, "page_list", session_id="s"))["pages"]) == PAGE_LIMIT


async def test_budgets_out_of_range_are_clear_errors(client: Client, db: Path) -> None:
    before = db_fingerprint(db)
    assert "budget" in await call_error(client, "session_start", session_id="s2", budget=0)
    assert "budget" in await call_error(client, "session_start", session_id="s2", budget=-5)
    assert "budget must be between 1 and" in await call_error(client, "session_start", session_id="s2", budget=10**12)
    assert "budget" in await call_error(client, "context_assemble", session_id="s", budget=-1)
    assert db_fingerprint(db) == before


async def test_budget_below_the_hard_pinned_floor_reports_physical_insufficiency(db: Path) -> None:
    rules = [
        {"page_id": f"rules/{i}", "content": f"Rule {i}: " + "always check the deploy target twice. " * 8}
        for i in range(3)
    ]
    async with Client(create_server(ServerConfig(db=db))) as client:
        started = await call(client, "session_start", session_id="floor", budget=2000, bootstrap=rules)
        assert all(b["status"] == "committed" for b in started["bootstrap"])
        full = await call(client, "context_assemble", session_id="floor")
        assert not full["physical_insufficiency"] and full["shortfall_tokens"] == 0
        floor = sum(p["tokens"] for p in full["pages"] if p["reason"] in ("required", "pinned"))
        for budget in (0, 1, floor // 3, floor - 1):
            out = await call(client, "context_assemble", session_id="floor", budget=budget)
            assert out["physical_insufficiency"] is True, (budget, out)
            assert out["shortfall_tokens"] > 0 and out["unmet_required"], out
            assert set(out["unmet_required"]) <= {r["page_id"] for r in rules}
            assert out["tokens_used"] <= budget
        resource = await client.read_resource("clawvm://sessions/floor/context?budget=1")
        assert resource.contents  # the resource answers too, with whatever fits
        prompt = await client.get_prompt("assemble_context", {"session_id": "floor", "budget": "1"})
        assert "tokens short" in str(prompt.messages[0].content)
        stats = await call(client, "session_stats", session_id="floor")
        assert stats["physical_insufficiency"] >= 4
        assert stats["faults_total"] == 0  # insufficiency is reported separately, never as a fault


async def test_hard_pin_whose_floor_exceeds_the_budget_is_an_invariant_violation(db: Path) -> None:
    async with Client(create_server(ServerConfig(db=db))) as client:
        await call(client, "session_start", session_id="tight", budget=20)
        out = await call(
            client,
            "page_write",
            session_id="tight",
            page_id="rules/big",
            op="create",
            type="constraint",
            content="Never deploy on Fridays. " * 40,
            provenance=PROV,
            pin="hard",
        )
        assert out["status"] == "rejected"
        assert "INVARIANT_VIOLATION" in {r["code"] for r in out["reasons"]}
        assert any("session budget is 20" in r["detail"] for r in out["reasons"])
