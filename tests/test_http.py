"""HTTP transport security: bearer token required (401), loopback by default, DNS-rebinding Host/Origin refused,
request bodies capped. One real ``clawvm-mcp serve --http`` process serves the whole module."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.harness import PROV, HttpServer, call, child_env, db_fingerprint, free_port, start_http

pytestmark = pytest.mark.anyio
TOKEN = "correct-horse-battery-staple"
INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
WRITE_ARGS: dict[str, Any] = {
    "session_id": "h1",
    "page_id": "conv/x",
    "op": "create",
    "type": "conversation",
    "content": "intruder",
    "provenance": PROV,
}
WRITE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 2,
    "method": "tools/call",
    "params": {"name": "page_write", "arguments": WRITE_ARGS},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    tmp = tmp_path_factory.mktemp("http")
    srv = start_http(tmp / "http.db", tmp / "http.log", token=TOKEN)
    try:
        yield srv
    finally:
        srv.stop()


def _db(server: HttpServer) -> Path:
    return server.log.parent / "http.db"


def post(
    server: HttpServer, body: bytes | dict[str, Any], headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    hdrs.update(headers or {})
    try:
        conn.request(method, "/mcp", body=data if method == "POST" else None, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": f"bearer  {TOKEN}"},
]


@pytest.mark.parametrize("headers", BAD_AUTH, ids=[str(i) for i in range(len(BAD_AUTH))])
def test_requests_without_the_bearer_token_get_401_and_write_nothing(
    server: HttpServer, headers: dict[str, str]
) -> None:
    db = _db(server)
    before = db_fingerprint(db)
    for body in (INIT, WRITE):
        status, resp_headers, payload = post(server, body, headers)
        assert status == 401, payload
        assert resp_headers.get("www-authenticate", "").startswith("Bearer")
        assert b"Bearer" in payload
    for method in ("GET", "DELETE"):
        assert post(server, b"", headers, method=method)[0] == 401
    assert db_fingerprint(db) == before


def test_the_right_token_is_let_in(server: HttpServer) -> None:
    status, headers, payload = post(server, INIT, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, payload
    assert b"clawvm-mcp" in payload


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "attacker.test:80",
        "localhost.evil.example:{port}",
    ],
)
def test_dns_rebinding_host_headers_are_refused(server: HttpServer, host: str) -> None:
    db = _db(server)
    before = db_fingerprint(db)
    status, _, payload = post(
        server, WRITE, {"Authorization": f"Bearer {TOKEN}", "Host": host.format(port=server.port)}
    )
    assert status == 421, payload  # the SDK's DNS-rebinding protection: Misdirected Request
    assert b"Invalid Host header" in payload
    assert db_fingerprint(db) == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}"])
def test_loopback_host_headers_are_accepted(server: HttpServer, host: str) -> None:
    status, _, payload = post(server, INIT, {"Authorization": f"Bearer {TOKEN}", "Host": host.format(port=server.port)})
    assert status == 200, payload


def test_foreign_origin_is_refused(server: HttpServer) -> None:
    status, _, payload = post(server, INIT, {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"})
    assert status == 403 and b"Invalid Origin header" in payload


def test_request_body_over_the_limit_is_refused_and_the_server_lives_on(server: HttpServer) -> None:
    db = _db(server)
    before = db_fingerprint(db)
    arguments = {**WRITE_ARGS, "content": "x" * (5 * 1024 * 1024)}
    huge = {**WRITE, "params": {"name": "page_write", "arguments": arguments}}
    status, _, payload = post(server, huge, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 413 and b"too large" in payload
    assert db_fingerprint(db) == before
    assert post(server, INIT, {"Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_server_binds_loopback_only(server: HttpServer) -> None:
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port = local.rsplit(":", 1)
            if state == "0A" and int(port, 16) == server.port:  # 0A: LISTEN
                listening.add(address)
    if not listening:
        pytest.skip("no /proc/net/tcp to inspect")
    assert listening == {"0100007F"}, listening  # 127.0.0.1 only: not 0.0.0.0, not ::


async def test_mcp_client_with_the_token_works_and_without_it_fails(server: HttpServer) -> None:
    async with server.client() as client:
        await call(client, "session_start", session_id="h-ok")
        out = await call(
            client,
            "page_write",
            session_id="h-ok",
            page_id="conv/a",
            op="create",
            type="conversation",
            content="over http",
            provenance=PROV,
        )
        assert out["status"] == "committed"
        read = await call(client, "page_read", session_id="h-ok", page_id="conv/a")
        assert read["page"]["text"] == "over http"
    with pytest.raises(Exception):  # noqa: B017 - the SDK surfaces the 401 as its own error type
        async with server.client(token="wrong") as client:
            await client.call_tool("session_start", {"session_id": "h-bad"})


def test_http_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    env = child_env()
    env.pop("CLAWVM_TOKEN", None)
    run = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "serve", "--http", "--db", str(tmp_path / "t.db"), "--port", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2
    assert "CLAWVM_TOKEN" in run.stderr and "Traceback" not in run.stderr


def test_default_bind_address_is_loopback() -> None:
    from clawvm_mcp.cli import build_parser

    args = build_parser().parse_args(["serve", "--http"])
    assert args.host == "127.0.0.1"


# ---------------------------------------------------------------------------------------------- hardening


def spawn(tmp: Path, *extra: str, nofile: int | None = None) -> HttpServer:
    """``serve --http`` with ``extra`` options, optionally under a file-descriptor limit of ``nofile``."""
    port = free_port()
    env = child_env(CLAWVM_TOKEN=TOKEN)
    args = [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(tmp / "h.db"), "--http", "--port", str(port)]

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = tmp / "h.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [*args, *extra], stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env, preexec_fn=limit
        )
    srv = HttpServer(proc, port, TOKEN, log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, srv.log_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return srv
        except OSError:
            time.sleep(0.05)
    srv.stop()
    raise AssertionError(f"no listener on {port}: {srv.log_text()}")


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (or answers and closes) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


async def test_idle_sockets_without_a_token_do_not_starve_a_token_holder(tmp_path: Path) -> None:
    """The issue's lock-out: more idle sockets than the server has descriptors. The cap (256 - 64 reserved)
    evicts the oldest socket that never sent a request, so the token holder's connection gets in."""
    srv = spawn(tmp_path, "--max-connections", "100000", "--header-timeout", "60", nofile=256)
    idle: list[socket.socket] = []
    try:
        for _ in range(400):
            try:
                idle.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
            except OSError:
                pass
        for s in idle[:50]:  # some send half a request head and stop (slowloris)
            with contextlib.suppress(OSError):
                s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        with anyio.fail_after(30):
            async with srv.client() as client:
                out = await call(client, "session_start", session_id="starved-not")
        elapsed = time.monotonic() - started
        assert out["session_id"] == "starved-not"
        assert elapsed < 15, elapsed
        assert srv.proc.poll() is None
        assert "Too many open files" not in srv.log_text()
        assert srv.log.stat().st_size < 20_000, srv.log.stat().st_size
    finally:
        for s in idle:
            s.close()
        srv.stop()


def test_a_request_head_must_arrive_in_time(tmp_path: Path) -> None:
    srv = spawn(tmp_path, "--header-timeout", "1")
    try:
        silent = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        slow.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert closed_within(silent, 6) and closed_within(slow, 6)
        kept = socket.create_connection(("127.0.0.1", srv.port), timeout=5)  # a second head on a kept-alive socket
        kept.sendall(f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        first = kept.recv(65536)
        while not first.endswith(b"0\r\n\r\n"):  # the whole chunked 401
            first += kept.recv(65536)
        assert first.startswith(b"HTTP/1.1 401"), first
        kept.sendall(b"POST /mcp HTTP/1.1\r\n")
        started = time.monotonic()
        assert closed_within(kept, 6) and time.monotonic() - started < 4  # the head deadline, not keep-alive's 5 s
        status, _, _ = post(srv, INIT, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200  # a prompt client is unaffected
    finally:
        srv.stop()


def test_a_request_body_must_arrive_in_time(tmp_path: Path) -> None:
    srv = spawn(tmp_path, "--body-timeout", "1")
    try:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Length: 1000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"jsonrpc"')
        started = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert closed_within(sock, 3)  # Connection: close, not a kept-alive socket
        assert time.monotonic() - started < 4
        assert post(srv, INIT, {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert "request body not received within 1s" in srv.log_text()
    finally:
        srv.stop()


def test_repeated_log_lines_are_rate_limited() -> None:
    from clawvm_mcp.server.http import RateLimit

    limit = RateLimit(seconds=60)
    records = [logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "accept failed: %s", ("EMFILE",), None)]
    records += [logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "accept failed: %s", ("EMFILE",), None)] * 999
    passed = [r for r in records if limit.filter(r)]
    assert len(passed) == 1
    other = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "another line", (), None)
    assert limit.filter(other)
    limit.last = {k: v - 61 for k, v in limit.last.items()}
    again = logging.LogRecord("asyncio", logging.ERROR, __file__, 1, "accept failed: %s", ("EMFILE",), None)
    assert limit.filter(again) and "999 like it" in again.getMessage()


async def test_session_id_rides_in_a_routing_header(server: HttpServer) -> None:
    """A gateway can route on Mcp-Param-Session-Id: a 2026-07-28 client sends it on every call that names a
    session (x-mcp-header on session_id), and the server refuses a header that disagrees with the body."""
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    seen: list[tuple[dict[str, str], bytes]] = []

    async def record(request: httpx.Request) -> None:
        seen.append((dict(request.headers), request.content))

    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, event_hooks={"request": [record]})
    async with http, Client(streamable_http_client(server.url, http_client=http)) as client:
        assert client.protocol_version >= "2026-07-28"
        await client.list_tools()  # the client learns which argument to mirror from the tool's input schema
        await call(client, "session_start", session_id="routed-1")
        await call(client, "page_list", session_id="routed-1")
    calls = [(headers, body) for headers, body in seen if b'"tools/call"' in body]
    assert [h.get("mcp-param-session-id") for h, _ in calls] == ["routed-1", "routed-1"], calls

    headers, body = calls[1]
    keep = {k: v for k, v in headers.items() if k not in ("host", "content-length", "connection", "accept-encoding")}
    good = post(server, body, keep)
    assert good[0] == 200, good
    forged = post(server, body, {**keep, "mcp-param-session-id": "someone-else"})
    assert forged[0] == 400 and b"Session-Id" in forged[2], forged


@pytest.mark.parametrize("option", [["--max-connections", "0"], ["--header-timeout", "0"], ["--body-timeout", "-1"]])
def test_limits_must_be_positive(tmp_path: Path, option: list[str]) -> None:
    env = child_env(CLAWVM_TOKEN=TOKEN)
    run = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "serve", "--http", "--db", str(tmp_path / "t.db"), "--port", "1", *option],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 2 and "must be positive" in run.stderr and "Traceback" not in run.stderr
