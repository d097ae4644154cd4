"""Protocol behaviour the SDK leaves to the server, as request middleware (``MCPServer.middleware``).

- an unknown tool or prompt, or a prompt without its required arguments, is JSON-RPC -32602 (the SDK answers an
  unknown tool with an ``isError`` result and a prompt failure with code 0 and "Error rendering prompt");
- a tool-argument schema failure is reworded for the model (``arguments.explain``);
- a tool's text content can lead with one field of its structured result (context_assemble: the prompt);
- ``resources/list`` also lists what the request can enumerate (its principal's sessions);
- ``server/discover`` claims no list change (the SDK ties those flags to serving resource subscriptions);
- completion handlers, which the SDK calls without a request context, can reach the request being served.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.types import INVALID_PARAMS, Resource
from pydantic import BaseModel, ValidationError

from .arguments import error_text, explain

Middleware = Callable[[ServerRequestContext[Any, Any], CallNext], Awaitable[HandlerResult]]
_completion_request: ContextVar[ServerRequestContext[Any, Any]] = ContextVar("clawvm_completion_request")


def reject_unknown_tools(server: MCPServer[Any]) -> None:
    """The spec wants JSON-RPC -32602 for an unknown tool. The tool names are read once, at the first call: the
    server's tools are fixed when it starts, and listing them on every call cost a model dump per tool."""
    names: frozenset[str] | None = None

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        nonlocal names
        if ctx.method == "tools/call" and ctx.params is not None:
            name = ctx.params.get("name")
            if names is None:
                names = frozenset(t.name for t in await server.list_tools())
            if isinstance(name, str) and name not in names:
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown tool: {name}; call tools/list")
        return await call_next(ctx)

    server.middleware.append(middleware)


def check_prompt_arguments(server: MCPServer[Any]) -> None:
    """An unknown prompt or a missing required argument is -32602 naming what to send, before the SDK renders."""
    prompts: dict[str, list[tuple[str, str]]] | None = None  # name -> required (argument, description)

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        nonlocal prompts
        if ctx.method == "prompts/get" and ctx.params is not None:
            if prompts is None:
                prompts = {
                    p.name: [(a.name, a.description or "") for a in p.arguments or [] if a.required]
                    for p in await server.list_prompts()
                }
            name = ctx.params.get("name")
            if not isinstance(name, str) or name not in prompts:
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown prompt: {name!r}; call prompts/list")
            given = ctx.params.get("arguments")
            sent = set(given) if isinstance(given, dict) else set()
            missing = [f"{arg} ({about})" if about else arg for arg, about in prompts[name] if arg not in sent]
            if missing:
                message = f"Prompt {name} needs {', '.join(missing)}; send them as prompt arguments (strings)"
                raise MCPError(code=INVALID_PARAMS, message=message)
        return await call_next(ctx)

    server.middleware.append(middleware)


def explain_argument_errors(server: MCPServer[Any], tools: Mapping[str, Callable[..., Any]]) -> None:
    """A tool result that failed the input schema gets ``arguments.explain``'s text instead of pydantic's. The
    arguments are validated again only after the SDK already refused them, so a good call pays nothing."""

    @cache
    def validator(name: str) -> Callable[[dict[str, Any]], object]:
        return func_metadata(tools[name], skip_names=["ctx"]).validate_arguments

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or ctx.params is None or not isinstance(result, dict):
            return result
        name, arguments = ctx.params.get("name"), ctx.params.get("arguments") or {}
        if not isinstance(name, str) or name not in tools or not isinstance(arguments, dict):
            return result
        text = error_text(result)
        if text is None or not text.startswith(f"Error executing tool {name}: "):
            return result
        try:
            validator(name)(arguments)
        except ValidationError as exc:
            return {**result, "content": [{"type": "text", "text": explain(name, exc)}]}
        return result

    server.middleware.append(middleware)


def text_first(server: MCPServer[Any], tool: str, field: str) -> None:
    """``tool``'s text content becomes ``field`` of its structured result, then the rest of that result as compact
    JSON, instead of the SDK's indented JSON of everything (the field escaped inside it). Rewritten on the wire
    result, so the SDK still validates and dumps the result once; the structured content is unchanged."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/call" or ctx.params is None or ctx.params.get("name") != tool:
            return result
        if not isinstance(result, dict) or result.get("isError"):
            return result
        data = result.get("structuredContent")
        if not isinstance(data, dict) or not isinstance(data.get(field), str):
            return result
        rest = json.dumps({k: v for k, v in data.items() if k != field}, ensure_ascii=False, separators=(",", ":"))
        content = [{"type": "text", "text": data[field]}, {"type": "text", "text": rest}]
        return {**result, "content": content}

    server.middleware.append(middleware)


def list_extra_resources(
    server: MCPServer[Any], extra: Callable[[ServerRequestContext[Any, Any]], Awaitable[list[Resource]]]
) -> None:
    """``resources/list`` answers the static resources (we have none) plus ``extra(request)``."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "resources/list" or not isinstance(result, dict):
            return result
        listed = [r.model_dump(by_alias=True, mode="json", exclude_none=True) for r in await extra(ctx)]
        return {**result, "resources": [*result.get("resources", []), *listed]}

    server.middleware.append(middleware)


def no_list_changes(server: MCPServer[Any]) -> None:
    """At 2026-07-28 the SDK derives every ``listChanged`` flag from serving ``subscriptions/listen``; this server
    serves it for resource updates only (its tools, prompt and templates never change), so ``server/discover``
    claims ``resources.subscribe`` and no list change: a client must not wait for notifications never sent."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method not in ("server/discover", "initialize"):
            return result
        data = (
            result.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(result, BaseModel)
            else result
        )
        if not isinstance(data, dict) or not isinstance(data.get("capabilities"), dict):
            return result
        caps = dict(data["capabilities"])
        for kind in ("tools", "prompts", "resources"):
            if isinstance(caps.get(kind), dict):
                caps[kind] = {**caps[kind], "listChanged": False}
        return {**data, "capabilities": caps}

    server.middleware.append(middleware)


def expose_lifespan_to_completions(server: MCPServer[Any]) -> None:
    """The SDK calls a completion handler with (ref, argument, context) only; this makes the request (its
    lifespan state and its verified principal) readable there through ``completion_request()``."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "completion/complete":
            return await call_next(ctx)
        with _serving(ctx):
            return await call_next(ctx)

    server.middleware.append(middleware)


@contextmanager
def _serving(ctx: ServerRequestContext[Any, Any]) -> Iterator[None]:
    token = _completion_request.set(ctx)
    try:
        yield
    finally:
        _completion_request.reset(token)


def completion_request() -> ServerRequestContext[Any, Any]:
    """The completion request being served (LookupError outside one)."""
    return _completion_request.get()
