"""Streamable HTTP transport: loopback by default, bearer token required unless --no-auth is explicit, SSE
streams a client can resume after a dropped connection, and limits that keep sockets without a request (or a
token) from starving a client that has one: a deadline for the request head and for the body, a connection cap
below the file-descriptor limit that evicts the oldest connection still waiting for its first request, and log
lines rate-limited so a flood cannot fill the disk."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import resource
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.types import JSONRPCMessage
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from .principals import PrincipalVerifier

RETRY_MS = 2000  # the SSE retry a client waits before it reconnects to a stream
REPLAY_BYTES = 8 << 20  # what the replay buffer keeps, oldest events dropped first
HEADER_SECONDS = 10.0  # from connect (or the end of the last response's keep-alive) to a complete request head
BODY_SECONDS = 30.0  # from the request head to the end of its body
MAX_CONNECTIONS = 512
FD_RESERVE = 64  # descriptors kept free of connections: the store, logs, the event loop
# also how many sockets asyncio accepts in one go, before any is admitted; an evicted socket's descriptor is freed
# a loop iteration later, so three batches' worth are kept free as well
BACKLOG = 32
LOG_EVERY_SECONDS = 10.0  # one line per (logger, message) this often at most; the rest are counted
log = logging.getLogger(__name__)


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


class BodyDeadline:
    """A request body must arrive whole within ``seconds`` of its head. A slower one is answered 408 with
    ``Connection: close`` here, and the handler reads a disconnect (anything it sends after is dropped). Only the
    body is timed: an open SSE stream waits for its disconnect unbounded."""

    def __init__(self, app: ASGIApp, seconds: float = BODY_SECONDS) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + self.seconds
        body_done = answered = False

        async def timed_receive() -> Message:
            nonlocal body_done, answered
            if body_done:
                return await receive()
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                message = await receive()
                body_done = message["type"] != "http.request" or not message.get("more_body", False)
                return message
            log.warning("request body not received within %.0fs; answered 408", self.seconds)
            body_done = answered = True
            body = b'{"error": "request_timeout", "detail": "the request body did not arrive in time"}'
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, timed_receive, guarded_send)


class Admission:
    """The connections of one server: those still waiting for their first request head, oldest first, are the
    ones evicted when the cap is reached, so a connection that already sent a request is never pushed out."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open = 0
        self.waiting: dict[GuardedH11, None] = {}
        self.evicted = 0


def guarded_protocol(admission: Admission, header_seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request-head deadline and the connection cap of ``admission``."""

    class Guarded(GuardedH11):
        pass

    Guarded.admission, Guarded.header_seconds = admission, header_seconds
    return Guarded


class GuardedH11(H11Protocol):
    admission: Admission
    header_seconds: float = HEADER_SECONDS
    deadline: asyncio.TimerHandle | None = None
    last_cycle: object = None  # the request being served when the wait for the next head began

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self.admission
        guard.open += 1
        if guard.open > guard.max_connections:
            oldest = next(iter(guard.waiting), None)
            if oldest is None:  # every connection is serving a request: refuse this one
                transport.close()
                return
            guard.evicted += 1
            oldest.transport.close()
            guard.waiting.pop(oldest, None)
        self.wait_for_head()

    def wait_for_head(self) -> None:
        self.last_cycle = self.cycle
        self.admission.waiting[self] = None
        self.deadline = self.loop.call_later(self.header_seconds, self.head_too_late)

    def head_too_late(self) -> None:
        self.admission.waiting.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self.admission.waiting and self.cycle is not self.last_cycle:  # uvicorn began a new request
            self.admission.waiting.pop(self, None)
            if self.deadline is not None:
                self.deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():  # a kept-alive connection waits for its next head on the same terms
            self.wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admission.open -= 1
        self.admission.waiting.pop(self, None)
        if self.deadline is not None:
            self.deadline.cancel()
        super().connection_lost(exc)


class RateLimit(logging.Filter):
    """At most one line per (logger, message template) every ``seconds``; the next line that passes says how many
    like it were dropped. A flood of refused sockets then costs a few lines, not the disk."""

    def __init__(self, seconds: float = LOG_EVERY_SECONDS) -> None:
        super().__init__()
        self.seconds = seconds
        self.last: dict[tuple[str, str], float] = {}
        self.dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self.last.get(key, -self.seconds) < self.seconds:
            self.dropped[key] = self.dropped.get(key, 0) + 1
            return False
        self.last[key] = now
        dropped = self.dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} like it in the last {self.seconds:.0f}s not logged]"
        return True


def connection_cap(wanted: int) -> int:
    """``wanted``, lowered to fit the descriptor limit (raised to its hard limit first) less what the process and
    one accept batch need."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return max(8, min(wanted, soft - FD_RESERVE - 3 * BACKLOG))


def http_app(server: MCPServer[Any], host: str, token: str | None, body_seconds: float = BODY_SECONDS) -> ASGIApp:
    # DNS-rebinding protection is on for loopback hosts
    app: ASGIApp = server.streamable_http_app(host=host, event_store=ReplayBuffer(), retry_interval=RETRY_MS)
    return BodyDeadline(app if token is None else BearerAuth(app, token), body_seconds)


@dataclass(frozen=True, slots=True)
class Limits:
    header_seconds: float = HEADER_SECONDS
    body_seconds: float = BODY_SECONDS
    max_connections: int = MAX_CONNECTIONS


async def serve_http(
    server: MCPServer[Any],
    host: str,
    port: int,
    token: str | None,
    tokens: PrincipalVerifier | None = None,
    limits: Limits | None = None,
) -> None:
    """Serve until stopped; with a tokens table, SIGHUP reloads it (a bad file keeps the old table)."""
    lim = limits or Limits()
    for handler in logging.getLogger().handlers:
        handler.addFilter(RateLimit())
    admission = Admission(connection_cap(lim.max_connections))
    log.info(
        "http limits: %d connections, head %.0fs, body %.0fs",
        admission.max_connections,
        lim.header_seconds,
        lim.body_seconds,
    )
    config = uvicorn.Config(
        http_app(server, host, token, lim.body_seconds),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        http=guarded_protocol(admission, lim.header_seconds),
        timeout_keep_alive=5,
        backlog=BACKLOG,
    )
    if tokens is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, tokens.reload)
    await uvicorn.Server(config).serve()
