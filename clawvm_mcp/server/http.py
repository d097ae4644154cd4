"""Streamable HTTP transport: loopback by default, bearer token required unless --no-auth is explicit, and SSE
streams a client can resume after a dropped connection."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import signal
from collections import OrderedDict
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage
from starlette.types import ASGIApp, Receive, Scope, Send

from .principals import TableVerifier

RETRY_MS = 2000  # the SSE retry a client waits before it reconnects to a stream
REPLAY_BYTES = 8 << 20  # what the replay buffer keeps, oldest events dropped first


class ReplayBuffer(EventStore):
    """The recent events of every SSE stream, in memory and bounded in bytes: with it the SDK starts each stream
    with a priming event (an id, empty data, the retry time), and a client that lost its connection mid-call
    reconnects with ``Last-Event-ID`` and gets the events it missed (resumability; SEP-1699 polling)."""

    def __init__(self, max_bytes: int = REPLAY_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._ids = itertools.count(1)
        self._events: OrderedDict[EventId, tuple[StreamId, JSONRPCMessage | None, int]] = OrderedDict()

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = str(next(self._ids))
        size = 64 if message is None else 64 + len(message.model_dump_json(by_alias=True, exclude_none=True))
        self._events[event_id] = (stream_id, message, size)
        self.size += size
        while self.size > self.max_bytes and len(self._events) > 1:
            _, (_, _, dropped) = self._events.popitem(last=False)
            self.size -= dropped
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        """Sends the stream's events after ``last_event_id``; None when that event is no longer (or never was) kept."""
        known = self._events.get(last_event_id)
        if known is None:
            return None
        stream_id, after = known[0], False
        for event_id, (stream, message, _) in list(self._events.items()):
            if after and stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
            after = after or event_id == last_event_id
        return stream_id


class BearerAuth:
    """Refuses every HTTP request without ``Authorization: Bearer <token>`` (401), compared in constant time."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "unauthorized", "detail": "send Authorization: Bearer <CLAWVM_TOKEN>"})
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="clawvm-mcp"'),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer[Any], host: str, token: str | None) -> ASGIApp:
    # DNS-rebinding protection is on for loopback hosts
    app: ASGIApp = server.streamable_http_app(host=host, event_store=ReplayBuffer(), retry_interval=RETRY_MS)
    return app if token is None else BearerAuth(app, token)


async def serve_http(
    server: MCPServer[Any], host: str, port: int, token: str | None, tokens: TableVerifier | None = None
) -> None:
    """Serve until stopped; with a tokens table, SIGHUP reloads it (a bad file keeps the old table)."""
    config = uvicorn.Config(http_app(server, host, token), host=host, port=port, log_level="warning", lifespan="on")
    if tokens is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, tokens.reload)
    await uvicorn.Server(config).serve()
