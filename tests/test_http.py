"""HTTP transport security: bearer token required (401), loopback by default, DNS-rebinding Host/Origin refused,
request bodies capped. One real ``clawvm-mcp serve --http`` process serves the whole module."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import PROV, HttpServer, call, child_env, db_fingerprint, start_http

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
