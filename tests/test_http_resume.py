"""Resumable SSE over streamable HTTP (found by the conformance suite's server-sse-polling scenario, issue 15):
each POST stream starts with a priming event (an id, empty data, the retry time), and a client that reconnects
with ``Last-Event-ID`` gets the events it missed. The replay buffer behind it is bounded in bytes."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp.types import JSONRPCResponse

from clawvm_mcp.server.http import RETRY_MS, ReplayBuffer
from tests.support.harness import HttpServer, start_http

TOKEN = "resume-token"
HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "Authorization": f"Bearer {TOKEN}",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    tmp = tmp_path_factory.mktemp("resume")
    srv = start_http(tmp / "r.db", tmp / "r.log", token=TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


def events(body: str) -> list[dict[str, str]]:
    """SSE events as field -> value (data lines joined)."""
    out = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, sep, value = line.partition(":")
            if sep and name:
                value = value.removeprefix(" ")
                fields[name] = fields[name] + "\n" + value if name in fields else value
        if fields:
            out.append(fields)
    return out


def request(
    server: HttpServer, method: str, body: dict[str, Any] | None, **headers: str
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, "/mcp", body=None if body is None else json.dumps(body), headers={**HEADERS, **headers})
    return conn.getresponse(), conn


def post(server: HttpServer, body: dict[str, Any], **headers: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    response, conn = request(server, "POST", body, **headers)
    try:
        return dict(response.getheaders()), events(response.read().decode())
    finally:
        conn.close()


def session(server: HttpServer) -> dict[str, str]:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
    }
    headers, _ = post(server, init)
    sid = {k.lower(): v for k, v in headers.items()}["mcp-session-id"]
    ids = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
    post(server, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **ids)
    return ids


def test_a_post_stream_starts_with_a_priming_event(server: HttpServer) -> None:
    ids = session(server)
    _, stream = post(server, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, **ids)
    priming, answer = stream[0], stream[-1]
    assert priming.get("data", "") == "" and priming["id"] and priming["retry"] == str(RETRY_MS)
    assert json.loads(answer["data"])["id"] == 2 and int(answer["id"]) > int(priming["id"])


def test_a_client_that_lost_the_stream_gets_the_answer_on_reconnect(server: HttpServer) -> None:
    ids = session(server)
    _, stream = post(server, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, **ids)
    priming = stream[0]["id"]
    response, conn = request(server, "GET", None, **ids, **{"last-event-id": priming})
    try:
        assert response.status == 200
        seen: list[str] = []
        while not any('"id":7' in line for line in seen):
            line = response.readline().decode()
            assert line, f"stream ended without the answer: {seen}"
            seen.append(line.replace(" ", ""))
    finally:
        conn.close()
    answer = next(line for line in seen if '"id":7' in line)
    assert "session_start" in answer  # the replayed tools/list answer


def message(n: int, size: int = 100) -> JSONRPCResponse:
    return JSONRPCResponse(jsonrpc="2.0", id=n, result={"text": "x" * size})


def test_the_replay_buffer_is_bounded_and_replays_one_stream() -> None:
    async def run() -> None:
        buf = ReplayBuffer(max_bytes=20_000)
        first = await buf.store_event("a", None)
        kept = [await buf.store_event("a" if n % 2 else "b", message(n)) for n in range(1, 11)]
        sent: list[Any] = []

        async def send(event: Any) -> None:
            sent.append(event)

        assert await buf.replay_events_after(first, send) == "a"
        assert [e.message.id for e in sent] == [1, 3, 5, 7, 9] and [e.event_id for e in sent] == kept[0::2]
        for n in range(11, 400):
            await buf.store_event("a", message(n))
        assert buf.size <= 20_000
        assert await buf.replay_events_after(first, send) is None  # dropped: the client must start over
        assert await buf.replay_events_after("no-such-id", send) is None

    anyio.run(run)


def test_one_event_larger_than_the_buffer_is_kept_until_the_next() -> None:
    async def run() -> None:
        buf = ReplayBuffer(max_bytes=1_000)
        sent: list[Any] = []

        async def send(event: Any) -> None:
            sent.append(event)

        big = await buf.store_event("a", message(1, size=5_000))
        assert await buf.replay_events_after(big, send) == "a" and sent == []  # still known
        await buf.store_event("a", message(2))
        assert await buf.replay_events_after(big, send) is None and buf.size <= 1_000

    anyio.run(run)
