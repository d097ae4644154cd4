"""What an outside MCP client sees at the protocol's edges (issue 15): error codes and messages for prompts,
resources and tool arguments, tool descriptions, the text of context_assemble, completions and resources/list.

Every test runs through a real client over a real SQLite file, in both protocol eras (the legacy era goes through
JSON-RPC framing, which is where the SDK's code-0 prompt errors came from).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.types import INVALID_PARAMS, PromptReference, ResourceTemplateReference, TextContent, TextResourceContents

from clawvm_mcp.engine.results import AssembleResult
from clawvm_mcp.server import ServerConfig, create_server

from .conftest import PROV, call, call_error

pytestmark = pytest.mark.anyio

RULES = "# Rules\n- never push to main\n- run the tests"
CONTEXT = "clawvm://sessions/{session_id}/context{?budget}"
PAGES = "clawvm://sessions/{session_id}/pages/{page_id}"


async def start(client: Client, sid: str = "s1") -> None:
    await call(client, "session_start", session_id=sid, bootstrap=[{"page_id": "rules", "content": RULES}])


async def protocol_error(op: Any, *args: Any) -> MCPError:
    with pytest.raises(MCPError) as err:
        await op(*args)
    return err.value


# ------------------------------------------------------------------------------------------------ prompts/get


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"session_id": "s1", "budget": "abc"}, "budget must be a whole number of tokens"),
        ({"session_id": "s1", "budget": "-1"}, "budget must be a whole number of tokens"),
        ({"session_id": "s1", "budget": "1e3"}, "got '1e3'"),
        ({"session_id": "ghost", "budget": "300"}, "No session 'ghost'; call session_start first"),
        ({"session_id": "s1"}, "needs budget (tokens, a whole number such as 4000)"),
        ({"budget": "300"}, "needs session_id (the id you gave session_start)"),
        ({}, "needs session_id (the id you gave session_start), budget"),
    ],
)
async def test_prompt_argument_errors_are_invalid_params_with_the_reason(
    client: Client, arguments: dict[str, str], says: str
) -> None:
    await start(client)
    error = await protocol_error(client.get_prompt, "assemble_context", arguments)
    assert error.error.code == INVALID_PARAMS
    assert says in error.error.message
    assert "Error rendering prompt" not in error.error.message


async def test_unknown_prompt_is_invalid_params(client: Client) -> None:
    error = await protocol_error(client.get_prompt, "assemble_everything", {})
    assert (error.error.code, error.error.message) == (
        INVALID_PARAMS,
        "Unknown prompt: 'assemble_everything'; call prompts/list",
    )


async def test_prompt_arguments_are_described(client: Client) -> None:
    prompt = (await client.list_prompts()).prompts[0]
    described = {a.name: (a.required, a.description) for a in prompt.arguments or []}
    assert described == {
        "session_id": (True, "the id you gave session_start"),
        "budget": (True, "tokens, a whole number such as 4000"),
    }


async def test_a_good_prompt_still_renders(client: Client) -> None:
    await start(client)
    prompt = await client.get_prompt("assemble_context", {"session_id": "s1", "budget": " 400 "})
    block = prompt.messages[0].content
    assert isinstance(block, TextContent) and "never push to main" in block.text


# ------------------------------------------------------------------------------------------------ resources


@pytest.mark.parametrize("budget", ["abc", "-1", "", "12.5", "9" * 40, "１２"])
async def test_a_bad_context_budget_is_an_argument_error_without_a_traceback(
    client: Client, budget: str, caplog: pytest.LogCaptureFixture
) -> None:
    await start(client)
    uri = f"clawvm://sessions/s1/context?budget={budget}"
    with caplog.at_level(logging.INFO):
        error = await protocol_error(client.read_resource, uri)
    assert error.error.code == INVALID_PARAMS
    assert "budget must be a whole number of tokens" in error.error.message
    assert "not found" not in error.error.message.lower() and "No session" not in error.error.message
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_unknown_session_resource_is_not_found_with_the_uri(client: Client) -> None:
    error = await protocol_error(client.read_resource, "clawvm://sessions/ghost/context?budget=300")
    assert error.error.code == INVALID_PARAMS
    assert "No session 'ghost'; call session_start first" in error.error.message


async def test_context_budget_zero_and_default_are_served(client: Client) -> None:
    await start(client)
    for uri in ("clawvm://sessions/s1/context", "clawvm://sessions/s1/context?budget=0"):
        block = (await client.read_resource(uri)).contents[0]
        assert isinstance(block, TextResourceContents)


async def test_resources_list_names_the_principals_live_sessions(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "m.db"
    async with Client(create_server(ServerConfig(db=db, principal="other")), mode=mode) as other:  # type: ignore[arg-type]
        await start(other, "theirs")
    async with Client(create_server(ServerConfig(db=db)), mode=mode) as client:  # type: ignore[arg-type]
        assert (await client.list_resources()).resources == []
        for sid in ("s2", "s1", "gone"):
            await start(client, sid)
        await call(client, "lifecycle", session_id="gone", event="session_end")
        listed = (await client.list_resources()).resources
        assert [str(r.uri) for r in listed] == ["clawvm://sessions/s1/context", "clawvm://sessions/s2/context"]
        assert all(r.mime_type == "text/plain" and r.name for r in listed)
        for resource in listed:
            block = (await client.read_resource(str(resource.uri))).contents[0]
            assert isinstance(block, TextResourceContents) and "never push to main" in block.text


# ------------------------------------------------------------------------------------------------ tools


@pytest.mark.parametrize(
    ("tool", "args", "says"),
    [
        ("page_write", {"page_id": "x", "op": "overwrite", "provenance": PROV}, "op must be 'create', 'append'"),
        ("page_write", {"page_id": "X/..", "op": "create", "provenance": PROV}, "page_id must match"),
        (
            "page_write",
            {"page_id": "x", "op": "create", "provenance": {"source": "user"}},
            "provenance.ref is required",
        ),
        ("page_write", {"page_id": "x", "op": "create", "provenance": PROV, "fields": {"k": 3}}, "fields.k must be"),
        ("page_read", {"page_id": "rules", "fidelity": "huge"}, "fidelity must be 'pointer', 'structured'"),
        ("context_assemble", {"budget": -1}, "budget must be greater than or equal to 0 (got -1)"),
        ("context_assemble", {"demands": [{"page_id": "rules", "fidelity": "x"}]}, "demands[0].fidelity must be"),
        ("tool_execute", {"tool": "ls", "args": [1]}, "args must be a valid dictionary (got [1])"),
        ("lifecycle", {"event": "explode"}, "event must be 'turn_end', 'compaction'"),
        ("recall", {"query": "rules", "limit": 0}, "limit must be greater than or equal to 1 (got 0)"),
    ],
)
async def test_tool_argument_errors_say_what_to_do(client: Client, tool: str, args: dict[str, Any], says: str) -> None:
    await start(client)
    text = await call_error(client, tool, session_id="s1", **args)
    assert says in text
    assert text.startswith(f"Error executing tool {tool}: invalid arguments: ")
    assert text.endswith(f"call {tool} again (tools/list has the input schema).")
    assert "pydantic" not in text and "For further information" not in text and "\n" not in text


async def test_a_missing_argument_is_named_as_required(client: Client) -> None:
    text = await call_error(client, "page_read", page_id="x")
    assert text == (
        "Error executing tool page_read: invalid arguments: session_id is required. "
        "Fix it and call page_read again (tools/list has the input schema)."
    )


async def test_engine_errors_keep_their_own_message(client: Client) -> None:
    text = await call_error(client, "page_read", session_id="ghost", page_id="x")
    assert text == "Error executing tool page_read: No session 'ghost'; call session_start first"


async def test_tool_descriptions_carry_no_source_indentation(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        assert tool.description, tool.name
        assert "  " not in tool.description and "\n" not in tool.description, (tool.name, tool.description)
    tools = {t.name: t.description for t in (await client.list_tools()).tools}
    assert (
        tools["page_write"] is not None and "create never overwrites; append/merge add; set and" in tools["page_write"]
    )


async def test_context_assemble_text_is_the_prompt_first(client: Client) -> None:
    await start(client)
    result = await client.call_tool("context_assemble", {"session_id": "s1", "budget": 400})
    assert not result.is_error and result.structured_content is not None
    first, second = result.content
    assert isinstance(first, TextContent) and isinstance(second, TextContent)
    assembled = AssembleResult.model_validate(result.structured_content)
    assert first.text == assembled.prompt and "never push to main" in first.text
    assert json.loads(second.text) == {k: v for k, v in result.structured_content.items() if k != "prompt"}
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["context_assemble"].output_schema == AssembleResult.model_json_schema()


async def test_unknown_tool_check_lists_tools_once(db_path: Path) -> None:
    server = create_server(ServerConfig(db=db_path))
    real, listed = server.list_tools, []

    async def counting() -> Any:
        listed.append(1)
        return await real()

    server.list_tools = counting  # type: ignore[method-assign]
    async with Client(server, mode="legacy") as client:
        await start(client)
        await call(client, "session_stats", session_id="s1")
        after_first = len(listed)  # the client's own tools/list (for output schemas) and the check's one look
        for _ in range(20):
            await call(client, "session_stats", session_id="s1")
        error = await protocol_error(client.call_tool, "page_frobnicate", {})
        assert error.error.code == INVALID_PARAMS
    assert len(listed) == after_first <= 2


# ------------------------------------------------------------------------------------------------ completions


async def values(client: Client, ref: Any, name: str, value: str, **context: str) -> list[str]:
    result = await client.complete(ref, {"name": name, "value": value}, context or None)
    return list(result.completion.values)


async def test_completions_offer_sessions_pages_and_budget(tmp_path: Path, mode: str) -> None:
    db = tmp_path / "c.db"
    async with Client(create_server(ServerConfig(db=db, principal="other")), mode=mode) as other:  # type: ignore[arg-type]
        await start(other, "south")
    async with Client(create_server(ServerConfig(db=db)), mode=mode) as client:  # type: ignore[arg-type]
        caps = client.server_capabilities
        assert caps is not None and caps.completions is not None
        for sid in ("s1", "s2", "sx-ended"):
            await start(client, sid)
        await call(client, "lifecycle", session_id="sx-ended", event="session_end")
        await call(
            client,
            "page_write",
            session_id="s1",
            page_id="plan/main",
            op="create",
            type="plan",
            content="- [ ] ship",
            provenance=PROV,
        )
        for uri in (CONTEXT, PAGES, "clawvm://sessions/{session_id}/journal", "clawvm://sessions/{session_id}/faults"):
            ref = ResourceTemplateReference(type="ref/resource", uri=uri)
            assert await values(client, ref, "session_id", "s") == ["s1", "s2"]
        pages = ResourceTemplateReference(type="ref/resource", uri=PAGES)
        assert await values(client, pages, "page_id", "", session_id="s1") == ["plan/main", "rules"]
        assert await values(client, pages, "page_id", "pl", session_id="s1") == ["plan/main"]
        assert await values(client, pages, "page_id", "", session_id="south") == []  # another principal's
        assert await values(client, pages, "page_id", "") == []  # no session chosen yet
        prompt = PromptReference(type="ref/prompt", name="assemble_context")
        assert await values(client, prompt, "session_id", "s2") == ["s2"]
        assert await values(client, prompt, "budget", "", session_id="s1") == ["4000"]
        assert await values(client, PromptReference(type="ref/prompt", name="other"), "session_id", "") == []
        other_uri = ResourceTemplateReference(type="ref/resource", uri="test://template/{id}")
        assert await values(client, other_uri, "session_id", "") == []


async def test_no_list_change_is_claimed(client: Client) -> None:
    """The tools, prompt and templates never change at run time, and nothing publishes a list change: claiming
    listChanged made the conformance suite expect notifications that never come. Resource updates are published
    on subscriptions/listen (2026-07-28 only, tests/test_subscriptions.py); no legacy resources/subscribe."""
    caps = client.server_capabilities
    assert caps is not None and caps.tools is not None and caps.prompts is not None and caps.resources is not None
    assert not caps.tools.list_changed and not caps.prompts.list_changed and not caps.resources.list_changed
    assert caps.resources.subscribe is (client.protocol_version >= "2026-07-28")
