"""The MCP surface through a real client, in both protocol eras, over a real SQLite file (issue 2)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import TextContent, TextResourceContents

from clawvm_mcp.engine import EngineConfig
from clawvm_mcp.pages import TYPE_POLICIES, Fidelity
from clawvm_mcp.server import ServerConfig, create_server

from .conftest import PROV, call, call_error

pytestmark = pytest.mark.anyio

RULES = "# Deploy rules\n- never push to main\n- run the tests before merging\n- ask before deleting data"
TOOLS = {
    "session_start",
    "page_write",
    "page_read",
    "page_pin",
    "page_unpin",
    "page_list",
    "recall",
    "context_assemble",
    "tool_execute",
    "lifecycle",
    "session_stats",
}


async def start(client: Client, sid: str = "s1", **extra: Any) -> dict[str, Any]:
    return await call(
        client, "session_start", session_id=sid, bootstrap=[{"page_id": "rules", "content": RULES}], **extra
    )


async def write(client: Client, page_id: str, op: str = "create", sid: str = "s1", **args: Any) -> dict[str, Any]:
    args.setdefault("provenance", PROV)
    return await call(client, "page_write", session_id=sid, page_id=page_id, op=op, **args)


def levels(assembly: dict[str, Any]) -> dict[str, str]:
    return {p["page_id"]: p["level"] for p in assembly["pages"]}


async def test_tools_are_listed_with_schemas_and_annotations(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.output_schema is not None, tool.name
        assert tool.annotations is not None, tool.name
    read_only = {"page_read", "page_list", "recall", "context_assemble", "session_stats"}
    for name in read_only:
        assert tools[name].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert tools["page_write"].annotations.destructive_hint is True  # type: ignore[union-attr]
    assert set(tools["page_write"].input_schema["required"]) == {"session_id", "page_id", "op", "provenance"}


async def test_unknown_tool_is_invalid_params(client: Client) -> None:
    with pytest.raises(MCPError) as err:
        await client.call_tool("page_frobnicate", {})
    assert err.value.error.code == -32602
    assert "page_frobnicate" in err.value.error.message


async def test_unknown_session_error_says_what_to_do(client: Client) -> None:
    text = await call_error(client, "page_read", session_id="ghost", page_id="x")
    assert "No session 'ghost'; call session_start first" in text


async def test_missing_page_is_no_match_not_error(client: Client) -> None:
    await start(client)
    read = await call(client, "page_read", session_id="s1", page_id="nope")
    assert read["outcome"] == "no_match"
    assert read["page"] is None
    assert "page_list" in read["detail"]


async def test_unknown_demand_page_is_a_tool_error(client: Client) -> None:
    await start(client)
    text = await call_error(client, "context_assemble", session_id="s1", demands=[{"page_id": "nope"}])
    assert "No page 'nope' in session 's1'; call page_list" in text


async def test_write_read_roundtrip_and_versions(client: Client) -> None:
    await start(client)
    created = await write(client, "plan/main", type="plan", content="Ship v1\n- [x] design\n- [ ] build\n- [ ] test")
    assert created["status"] == "committed" and created["version"] == 1 and created["txn_id"] > 0
    appended = await write(client, "plan/main", op="append", content="- [ ] release")
    assert (appended["status"], appended["version"]) == ("committed", 2)
    read = await call(client, "page_read", session_id="s1", page_id="plan/main")
    page = read["page"]
    assert read["outcome"] == "hit"
    assert page["version"] == 2 and page["text"].endswith("- [ ] release")
    assert page["fields"]["current_step"] == "build"
    pointer = await call(client, "page_read", session_id="s1", page_id="plan/main", fidelity="pointer")
    assert pointer["page"]["text"].startswith("[page plan/main plan v2: goal: Ship v1; current step: build")
    assert pointer["page"]["text"].endswith("page_read to load]")


@pytest.mark.parametrize("page_type", list(TYPE_POLICIES))
async def test_each_type_floor_holds_under_shrinking_budgets(client: Client, page_type: str) -> None:
    await call(client, "session_start", session_id="s1", budget=100_000)
    body = "\n".join(f"- line {i}: details about {page_type} item number {i} with some words" for i in range(40))
    await write(client, "p/x", type=page_type, content=f"{page_type} heading\n- [ ] first step\n{body}")
    if TYPE_POLICIES[page_type].default_pin != "hard":  # type: ignore[index]
        assert (await call(client, "page_pin", session_id="s1", page_id="p/x"))["status"] == "committed"
    policy = TYPE_POLICIES[page_type]  # type: ignore[index]
    floor = policy.min_fidelity
    allowed = {}  # the levels this type may take (its degradation path, cut at its floor) and their sizes
    for level in policy.path:
        if level >= floor:
            read = await call(client, "page_read", session_id="s1", page_id="p/x", fidelity=level.label)
            allowed[level.label] = read["page"]["tokens"]
    floor_tokens = min(allowed.values())
    seen: list[str] = []
    budgets = {100_000, 2000, 800, 400, 200, 120, 80, 60, 40, 20, 10, 5, floor_tokens, floor_tokens - 1}
    for budget in sorted(budgets, reverse=True):
        result = await call(client, "context_assemble", session_id="s1", budget=budget)
        level = Fidelity.parse(levels(result)["p/x"])
        assert result["tokens_used"] <= budget
        if budget < floor_tokens:  # the floor itself does not fit: explicit, with the exact shortfall
            assert result["physical_insufficiency"] is True
            assert result["unmet_required"] == ["p/x"]
            assert result["shortfall_tokens"] == floor_tokens - budget
        else:
            assert result["physical_insufficiency"] is False
            assert level >= floor and level.label in allowed, (budget, level)
            seen.append(level.label)
    assert seen[0] == "full"
    assert allowed[seen[-1]] == floor_tokens  # squeezed to the cheapest form its floor allows, never below


async def test_floor_under_pressure_degrades_along_path_only(client: Client) -> None:
    await call(
        client, "session_start", session_id="s1", budget=100_000, bootstrap=[{"page_id": "rules", "content": RULES}]
    )
    big = RULES + "\n" + "\n".join(f"- extra rule {i} about deployments and reviews" for i in range(60))
    await call(client, "session_start", session_id="s1", bootstrap=[{"page_id": "rules", "content": big}])
    roomy = await call(client, "context_assemble", session_id="s1", budget=100_000)
    tight = await call(client, "context_assemble", session_id="s1", budget=roomy["tokens_used"] - 1)
    assert levels(roomy)["rules"] == "full"
    assert levels(tight)["rules"] == "structured"  # bootstrap's path is full -> structured: never compressed


async def test_bootstrap_survives_compaction_and_reset(client: Client) -> None:
    await start(client)
    await write(client, "ev/log", type="evidence", content="build log: all green")
    for event in ("compaction", "reset"):
        life = await call(client, "lifecycle", session_id="s1", event=event)
        assert life["reinjected"] == ["rules"]
        assert life["faults"] == []
        result = await call(client, "context_assemble", session_id="s1", budget=60)
        assert result["prompt"].startswith('<page id="rules" type="bootstrap" v="1" level="full">\n# Deploy rules')
        assert levels(result)["rules"] in ("full", "structured")
    stats = await call(client, "session_stats", session_id="s1")
    assert stats["faults"]["post_compaction_bootstrap"] == 0
    assert stats["faults"]["pinned_invariant_miss"] == 0
    assert stats["faults_total"] == 0


@pytest.mark.parametrize("event", ["compaction", "reset", "flush", "session_end"])
async def test_boundary_write_commits_at_every_boundary(client: Client, event: str) -> None:
    await start(client)
    await write(client, "pref/tone", type="preference", content="tone: terse")
    staged = await write(client, "pref/tone", op="append", content="also: no emoji", commit="boundary")
    assert staged["status"] == "staged" and staged["version"] == 1
    read = await call(client, "page_read", session_id="s1", page_id="pref/tone")
    assert read["page"]["dirty"] is True and "no emoji" in read["page"]["text"]  # visible before commit
    assembled = await call(client, "context_assemble", session_id="s1", demands=[{"page_id": "pref/tone"}])
    assert "no emoji" in assembled["prompt"]
    life = await call(client, "lifecycle", session_id="s1", event=event)
    assert life["committed"] == 1 and life["rejected"] == 0 and life["faults"] == []
    if event == "session_end":
        await call(client, "session_start", session_id="s1")
    read = await call(client, "page_read", session_id="s1", page_id="pref/tone")
    assert read["page"]["dirty"] is False and read["page"]["version"] == 2
    stats = await call(client, "session_stats", session_id="s1")
    assert stats["faults"]["flush_miss"] == 0
    assert stats["journal"] == {"committed": 3}


async def test_boundary_write_survives_server_restart(db_path: Path, mode: str) -> None:
    async with Client(create_server(ServerConfig(db=db_path)), mode=mode) as c:  # type: ignore[arg-type]
        await start(c)
        await write(c, "plan/main", type="plan", content="Ship\n- [ ] build")
        staged = await write(c, "plan/main", op="append", content="- [ ] test", commit="boundary")
        assert staged["status"] == "staged"
    # the process is gone without any lifecycle event; the staged row is durable in the journal
    async with Client(create_server(ServerConfig(db=db_path)), mode=mode) as c:  # type: ignore[arg-type]
        resumed = await call(c, "session_start", session_id="s1")
        assert resumed["resumed"] is True
        assert (resumed["settled_committed"], resumed["settled_rejected"]) == (1, 0)
        read = await call(c, "page_read", session_id="s1", page_id="plan/main")
        assert read["page"]["version"] == 2 and read["page"]["text"].endswith("- [ ] test")
        stats = await call(c, "session_stats", session_id="s1")
        assert stats["faults"]["flush_miss"] == 0 and stats["dirty_pages"] == 0


async def test_set_with_stale_base_version_is_rejected_and_changes_nothing(client: Client) -> None:
    await start(client)
    await write(client, "pref/lang", type="preference", content="language: python")
    await write(client, "pref/lang", op="set", content="language: rust", base_version=1)
    stale = await write(client, "pref/lang", op="set", content="language: go", base_version=1)
    assert stale["status"] == "rejected"
    assert [r["code"] for r in stale["reasons"]] == ["DESTRUCTIVE_OP"]
    assert "current version is 2" in stale["reasons"][0]["detail"]
    missing = await write(client, "pref/lang", op="set", content="language: go")
    assert [r["code"] for r in missing["reasons"]] == ["DESTRUCTIVE_OP"]
    recreate = await write(client, "pref/lang", type="preference", content="language: c")
    assert [r["code"] for r in recreate["reasons"]] == ["DESTRUCTIVE_OP"]
    read = await call(client, "page_read", session_id="s1", page_id="pref/lang")
    assert read["page"]["text"] == "language: rust" and read["page"]["version"] == 2
    journal = await client.read_resource("clawvm://sessions/s1/journal")
    content = journal.contents[0]
    assert isinstance(content, TextResourceContents)
    rows = json.loads(content.text)["entries"]
    assert [r["status"] for r in rows[-3:]] == ["rejected"] * 3
    assert rows[-3]["reasons"][0]["code"] == "DESTRUCTIVE_OP"


async def test_delete_needs_base_version_and_respects_hard_pins(client: Client) -> None:
    await start(client)
    await write(client, "ev/a", type="evidence", content="result a")
    pinned = await write(client, "rules", op="delete", base_version=1)
    assert [r["code"] for r in pinned["reasons"]] == ["INVARIANT_VIOLATION"]
    gone = await write(client, "ev/a", op="delete", base_version=1)
    assert gone["status"] == "committed"
    assert (await call(client, "page_read", session_id="s1", page_id="ev/a"))["outcome"] == "no_match"
    unpin = await call(client, "page_unpin", session_id="s1", page_id="rules")
    assert unpin["status"] == "rejected" and unpin["reasons"][0]["code"] == "INVARIANT_VIOLATION"


async def test_dangling_provenance_is_rejected(client: Client) -> None:
    await start(client)
    for ref in ("page:nowhere", "tool:c0000", "nonsense"):
        result = await write(client, "ev/x", type="evidence", content="x", provenance={"source": "model", "ref": ref})
        assert result["status"] == "rejected", ref
        assert [r["code"] for r in result["reasons"]] == ["PROVENANCE_DANGLING"], ref
    ok = await write(client, "ev/x", type="evidence", content="x", provenance={"source": "model", "ref": "page:rules"})
    assert ok["status"] == "committed"
    assert (await call(client, "page_read", session_id="s1", page_id="ev/x"))["page"]["version"] == 1


async def test_schema_and_invariant_checks_list_every_failure(client: Client) -> None:
    await start(client)
    bad = await write(
        client,
        "plan/x",
        type="plan",
        content="goal only",
        fields={"colour": "red"},
        provenance={"source": "model", "ref": "page:missing"},
    )
    codes = {r["code"] for r in bad["reasons"]}
    assert codes == {"SCHEMA_INVALID", "PROVENANCE_DANGLING"}
    floorless = await write(client, "plan/y", type="plan", content="just a goal line")
    assert [r["code"] for r in floorless["reasons"]] == ["INVARIANT_VIOLATION"]
    assert "current_step" in floorless["reasons"][0]["detail"]


async def test_project_write_without_grant_is_scope_denied(db_path: Path, mode: str) -> None:
    config = ServerConfig(db=db_path, principal="bob", engine=EngineConfig(grants={"default": "read"}))
    async with Client(create_server(config), mode=mode) as c:  # type: ignore[arg-type]
        started = await call(c, "session_start", session_id="bob-1", bootstrap=[{"page_id": "rules", "content": RULES}])
        assert started["bootstrap"][0]["reasons"][0]["code"] == "SCOPE_DENIED"
        result = await write(c, "pref/x", sid="bob-1", type="preference", content="k: v", scope="project")
        assert result["status"] == "rejected"
        assert [r["code"] for r in result["reasons"]] == ["SCOPE_DENIED"]
        session_ok = await write(c, "pref/y", sid="bob-1", type="preference", content="k: v", scope="session")
        assert session_ok["status"] == "committed"


async def test_repeated_tool_call_returns_stored_result(client: Client) -> None:
    await start(client)
    first = await call(
        client,
        "tool_execute",
        session_id="s1",
        tool="read_file",
        args={"path": "a.py", "lines": [1, 2]},
        result="def f():\n    return 1\n",
        idempotent=True,
    )
    assert first["status"] == "recorded" and first["evidence_page_id"].startswith("ev/read_file/")
    again = await call(
        client,
        "tool_execute",
        session_id="s1",
        tool="read_file",
        args={"lines": [1, 2], "path": "a.py"},
        idempotent=True,
    )
    assert again["status"] == "duplicate_signature"
    assert again["stored_result"] == "def f():\n    return 1\n"
    assert again["call_id"] == first["call_id"]
    await call(client, "lifecycle", session_id="s1", event="compaction")
    after = await call(
        client,
        "tool_execute",
        session_id="s1",
        tool="read_file",
        args={"path": "a.py", "lines": [1, 2]},
        idempotent=True,
    )
    assert after["status"] == "duplicate_signature"  # evicted from the context but resolvable through its pointer
    ev = await write(
        client,
        "note/x",
        type="conversation",
        content="used it",
        provenance={"source": "tool", "ref": f"tool:{first['call_id']}"},
    )
    assert ev["status"] == "committed"
    stats = await call(client, "session_stats", session_id="s1")
    assert stats["duplicate_signature"] == 2 and stats["faults"]["duplicate_tool"] == 0


async def test_recall_typed_outcomes(db_path: Path, mode: str) -> None:
    async with Client(create_server(ServerConfig(db=db_path)), mode=mode) as owner:  # type: ignore[arg-type]
        await start(owner)
        await write(owner, "pref/theme", type="preference", content="theme: solarized dark", scope="project")
        hit = await call(owner, "recall", session_id="s1", query="solarized theme")
        assert hit["outcome"] == "hit" and hit["results"][0]["page_id"] == "pref/theme"
        assert hit["results"][0]["pointer"].startswith("[page pref/theme preference v1")
        miss = await call(owner, "recall", session_id="s1", query="kubernetes")
        assert miss["outcome"] == "no_match" and miss["results"] == [] and miss["detail"]
    stranger = ServerConfig(db=db_path, principal="eve", engine=EngineConfig(grants={}))
    async with Client(create_server(stranger), mode=mode) as c:  # type: ignore[arg-type]
        await call(c, "session_start", session_id="eve-1")
        denied = await call(c, "recall", session_id="eve-1", query="solarized")
        assert denied["outcome"] == "denied" and denied["results"] == []
        hidden = await call(c, "page_read", session_id="eve-1", page_id="pref/theme")
        assert hidden["outcome"] == "denied"
        other = await call_error(c, "page_read", session_id="s1", page_id="pref/theme")
        assert "No session 's1'" in other
    async with Client(create_server(ServerConfig(db=db_path)), mode=mode) as c:  # type: ignore[arg-type]
        await call(c, "session_start", session_id="s1")
        with sqlite3.connect(db_path) as raw:  # break the backend underneath the running server
            raw.execute("ALTER TABLE pages RENAME TO pages_gone")
        broken = await call(c, "recall", session_id="s1", query="solarized")
        assert broken["outcome"] == "backend_error" and "failed" in broken["detail"]


async def test_assembly_is_byte_identical_across_runs(tmp_path: Path, mode: str) -> None:
    outputs = []
    for run in range(2):
        async with Client(create_server(ServerConfig(db=tmp_path / f"run{run}.db")), mode=mode) as c:  # type: ignore[arg-type]
            await start(c)
            for i in range(12):
                await write(c, f"ev/{i:02d}", type="evidence", content=f"result {i}\n" + "detail line\n" * (i % 5))
            await write(c, "plan/p", type="plan", content="Goal\n- [ ] a\n- [ ] b")
            await call(c, "tool_execute", session_id="s1", tool="grep", args={"q": "x"}, result="a.py:1: x")
            result = await c.call_tool(
                "context_assemble",
                {"session_id": "s1", "budget": 150, "demands": [{"page_id": "ev/03", "fidelity": "full"}]},
            )
            block = result.content[0]
            assert isinstance(block, TextContent)
            outputs.append(block.text)
    assert outputs[0] == outputs[1]


async def test_physical_insufficiency_reports_shortfall(client: Client) -> None:
    await start(client)
    result = await call(client, "context_assemble", session_id="s1", budget=5)
    assert result["physical_insufficiency"] is True
    assert result["unmet_required"] == ["rules"]
    read = await call(client, "page_read", session_id="s1", page_id="rules", fidelity="structured")
    assert result["shortfall_tokens"] == read["page"]["tokens"] - 5
    assert result["tokens_used"] == 0
    reasons = {p["page_id"]: p["reason"] for p in result["pages"]}
    assert reasons["rules"] == "dropped"
    stats = await call(client, "session_stats", session_id="s1")
    assert stats["physical_insufficiency"] == 1 and stats["faults_total"] == 0


async def test_resources_and_prompt(client: Client) -> None:
    await start(client)
    await write(client, "ev/a/b", type="evidence", content="nested id")
    templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
    assert templates == {
        "clawvm://sessions/{session_id}/context{?budget}",
        "clawvm://sessions/{session_id}/pages/{page_id}",
        "clawvm://sessions/{session_id}/journal",
        "clawvm://sessions/{session_id}/faults",
    }
    page = (await client.read_resource("clawvm://sessions/s1/pages/ev%2Fa%2Fb")).contents[0]
    assert isinstance(page, TextResourceContents) and page.text == "nested id"
    context = (await client.read_resource("clawvm://sessions/s1/context?budget=400")).contents[0]
    assert isinstance(context, TextResourceContents)
    assert context.text.startswith('<page id="rules" type="bootstrap" v="1" level="full">\n# Deploy rules')
    faults = (await client.read_resource("clawvm://sessions/s1/faults")).contents[0]
    assert isinstance(faults, TextResourceContents)
    assert json.loads(faults.text)["stats"]["faults_total"] == 0
    with pytest.raises(MCPError) as err:
        await client.read_resource("clawvm://sessions/ghost/journal")
    assert err.value.error.code == -32602
    prompt = await client.get_prompt("assemble_context", {"session_id": "s1", "budget": "400"})
    text = prompt.messages[0].content
    assert isinstance(text, TextContent)
    assert text.text.startswith('<page id="rules" type="bootstrap" v="1" level="full">\n# Deploy rules')


async def test_invalid_arguments_are_clear_errors(client: Client) -> None:
    await start(client)
    assert "fidelity" in await call_error(client, "page_read", session_id="s1", page_id="rules", fidelity="huge")
    assert "op" in await call_error(client, "page_write", session_id="s1", page_id="x", op="overwrite", provenance=PROV)
    assert "page_id" in await call_error(client, "page_read", session_id="s1", page_id="../etc/passwd")
    assert "budget" in await call_error(client, "context_assemble", session_id="s1", budget=-1)
    assert "event" in await call_error(client, "lifecycle", session_id="s1", event="explode")


async def test_assemble_output_schema_lists_pages_without_a_ref(tmp_path: Path) -> None:
    """The Python SDK client re-validates every structured result; a "$ref" per listed page cost ~40% of that
    check on a 170-page result. The item schema is written in place, and a real result still validates."""
    async with Client(create_server(ServerConfig(db=tmp_path / "m.db"))) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        schema = tools["context_assemble"].output_schema
        assert schema is not None and "$ref" not in json.dumps(schema)
        assert set(schema["properties"]["pages"]["items"]["required"]) == {"page_id", "level", "tokens", "reason"}
        await call(c, "session_start", session_id="s1", budget=500)
        wrote = await call(
            c,
            "page_write",
            session_id="s1",
            page_id="p1",
            op="create",
            type="constraint",
            content="hi",
            provenance=PROV,
        )
        assert wrote["status"] == "committed", wrote
        out = await call(c, "context_assemble", session_id="s1")  # the client validated it against the schema
        assert [p["page_id"] for p in out["pages"]] == ["p1"]
