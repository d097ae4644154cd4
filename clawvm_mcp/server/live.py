"""Live resource updates over ``subscriptions/listen`` (2026-07-28): a session's context URI and its page URIs
are announced when they change, only to listeners whose principal owns the session.

Two sources feed it: the server's own tool calls publish at once (``publish_write``), and ``watch`` follows the
store's change sequence, so a commit by another server process or a harness hook is announced too: at once when
the store has a change feed (PostgreSQL NOTIFY), with a re-read every ``FALLBACK_SECONDS`` in case the feed fails
silently; otherwise (SQLite) by polling every ``POLL_SECONDS``. Events are level triggers ("refetch if you care"),
so an update announced twice is harmless.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.subscriptions import ResourceUpdated, ServerEvent

from ..engine.session import project_namespace, session_namespace
from ..store.base import ChangeEvents, ChangeFeed, Store

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5
FALLBACK_SECONDS = 10.0  # with a change feed: the safety re-read when no notification came
SPACING_SECONDS = 0.05  # with a change feed: looks start at least this far apart; commits meanwhile merge into one
SESSION_URI = re.compile(r"clawvm://sessions/([A-Za-z0-9][A-Za-z0-9._:-]{0,127})/(?:context|pages/[^?]+)")
ProjectCheck = Callable[[str, str], bool]  # (principal, project_id) -> may that principal read the project's pages
_listener: ContextVar[tuple[str, frozenset[str]]] = ContextVar("clawvm_listener")


def context_uri(session_id: str) -> str:
    return f"clawvm://sessions/{session_id}/context"


def page_uri(session_id: str, page_id: str) -> str:
    """The page resource's URI: its id's "/" percent-encoded, as the resource template reads it."""
    return f"clawvm://sessions/{session_id}/pages/{quote(page_id, safe='')}"


@dataclass(frozen=True, slots=True)
class Listener:
    principal: str
    sessions: frozenset[str]
    deliver: Callable[[ServerEvent], None]


class PrincipalBus:
    """The SDK's ``SubscriptionBus`` with an owner per listener: the ``subscriptions/listen`` middleware names the
    listening principal and its URIs before the SDK's handler subscribes, and ``publish_to`` delivers only to that
    principal's listeners. ``publish`` (any principal) is never called by this server."""

    def __init__(self) -> None:
        self._listeners: dict[object, Listener] = {}

    async def publish(self, event: ServerEvent) -> None:
        for listener in list(self._listeners.values()):
            _deliver(listener, event)
        await anyio.lowlevel.checkpoint()

    async def publish_to(self, principal: str, events: Iterable[ServerEvent]) -> None:
        for event in events:
            for listener in list(self._listeners.values()):
                if listener.principal == principal:
                    _deliver(listener, event)
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        principal, uris = _listener.get(("", frozenset()))
        if not principal:  # a listen the middleware did not see: it can receive nothing
            return lambda: None
        sessions = frozenset(m.group(1) for uri in uris if (m := SESSION_URI.fullmatch(uri)))
        token = object()
        self._listeners[token] = Listener(principal, sessions, listener)

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    def listening(self, principal: str) -> bool:
        return any(listener.principal == principal for listener in self._listeners.values())

    def watched(self) -> dict[str, set[str]]:
        """principal -> the session ids its listeners subscribed to."""
        out: dict[str, set[str]] = {}
        for listener in self._listeners.values():
            out.setdefault(listener.principal, set()).update(listener.sessions)
        return out


def _deliver(listener: Listener, event: ServerEvent) -> None:
    try:
        listener.deliver(event)
    except Exception:  # fan-out boundary: one broken stream must not stop the others
        log.exception("subscription listener raised; continuing")


@contextmanager
def _listening(principal: str, uris: frozenset[str]) -> Iterator[None]:
    token = _listener.set((principal, uris))
    try:
        yield
    finally:
        _listener.reset(token)


def name_listeners(server: MCPServer[Any], principal_of: Callable[[ServerRequestContext[Any, Any]], str]) -> None:
    """Middleware: a ``subscriptions/listen`` request's principal and resource URIs, for ``PrincipalBus``."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "subscriptions/listen":
            return await call_next(ctx)
        wanted = ((ctx.params or {}).get("notifications") or {}).get("resourceSubscriptions") or []
        uris = frozenset(u for u in wanted if isinstance(u, str))
        with _listening(principal_of(ctx), uris):
            return await call_next(ctx)

    server.middleware.append(middleware)


def updates(session_id: str, page_ids: Iterable[str]) -> list[ServerEvent]:
    return [ResourceUpdated(context_uri(session_id)), *(ResourceUpdated(page_uri(session_id, p)) for p in page_ids)]


async def announce(
    store: Store, bus: PrincipalBus, principal: str, session_id: str, since: int, can_read_project: ProjectCheck
) -> None:
    """Announce the session's context and the pages it can see that changed after ``since``, to its owner only."""
    record = await store.get_session(session_id)
    if record is None or record.principal != principal:
        return  # not this principal's session: it hears nothing of it
    namespaces = [session_namespace(session_id)]
    if can_read_project(principal, record.project_id):
        namespaces.append(project_namespace(record.project_id))
    changed = {page.page_id for _, page in await store.pages_since(namespaces, since)}
    if changed or record.seq > since:
        await bus.publish_to(principal, updates(session_id, sorted(changed)))


class Watcher:
    """The change sequence last looked at, and one look: every watched session whose pages or row moved since
    then is announced to its owner. Store failures are logged at most once a minute; the next look retries."""

    def __init__(self, store: Store, bus: PrincipalBus, can_read_project: ProjectCheck) -> None:
        self.store, self.bus, self.can_read_project = store, bus, can_read_project
        self.last: int | None = None  # kept current while nobody listens, so a new listener hears no history
        self._quiet_until = 0.0

    async def look(self) -> None:
        try:
            seq = await self.store.change_seq()
            if self.last is not None and seq != self.last:
                for principal, sessions in self.bus.watched().items():
                    for session_id in sorted(sessions):
                        await announce(self.store, self.bus, principal, session_id, self.last, self.can_read_project)
            self.last = seq
        except Exception as exc:  # a store outage must not end the watcher; the next look retries
            now = time.monotonic()
            if now >= self._quiet_until:
                log.warning("resource update watcher: %s (retrying)", exc)
                self._quiet_until = now + 60


async def watch(
    store: Store,
    bus: PrincipalBus,
    can_read_project: ProjectCheck,
    interval: float | None = None,
) -> None:
    """Announce what other processes commit: woken by the store's change feed when it has one (re-reading at
    least every ``FALLBACK_SECONDS``), else polling every ``POLL_SECONDS``; ``interval`` overrides either."""
    watcher = Watcher(store, bus, can_read_project)
    if isinstance(store, ChangeFeed):
        async with store.change_feed() as feed:
            await _follow(watcher, feed, FALLBACK_SECONDS if interval is None else interval)
    else:
        await _poll(watcher, POLL_SECONDS if interval is None else interval)


async def _poll(watcher: Watcher, every: float) -> None:
    while True:
        await watcher.look()
        await anyio.sleep(every)


async def _follow(watcher: Watcher, feed: ChangeEvents, fallback: float) -> None:
    """Look after each wake-up from the feed, or after ``fallback`` seconds without one. Every wake-up re-reads
    the sequence, so a revalidation (None: the feed reconnected) needs nothing more than a look. Under a storm of
    commits from other processes, looks are spaced ``SPACING_SECONDS`` apart: a look per commit would cost each
    server as many queries as the whole cluster commits."""
    while True:
        with anyio.move_on_after(fallback):
            if await feed.receive() is None:
                log.debug("change feed (re)connected: revalidating from seq %s", watcher.last)
        started = time.monotonic()
        await watcher.look()
        await anyio.sleep(max(0.0, SPACING_SECONDS - (time.monotonic() - started)))
