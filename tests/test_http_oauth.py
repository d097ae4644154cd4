"""OAuth 2.1 JWT principals (``serve --http --oauth``): one real HTTP server process, keys generated here and
served to it as a JWKS file. The SDK serves RFC 9728 metadata; bad, foreign, expired or unsigned tokens get 401;
two principals (``iss|sub``) are isolated as with ``--tokens``, with grants from ``clawvm:project:*`` scopes."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.harness import HttpServer, call, child_env, start_http
from tests.support.isolation import check_isolation, note

pytestmark = pytest.mark.anyio
ISSUER = "https://issuer.example"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
STRANGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
ALICE_SCOPES = "clawvm:project:proj-a:write clawvm:project:shared:write openid"
BOB_SCOPES = "clawvm:project:proj-b:write clawvm:project:shared:read"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def jwks() -> dict[str, Any]:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key()))
    return {"keys": [{**rsa_jwk, "kid": "r1", "alg": "RS256"}, {**ec_jwk, "kid": "e1", "alg": "ES256"}]}


def mint(
    srv: HttpServer, sub: str, scope: str, *, key: Any = RSA_KEY, kid: str = "r1", alg: str = "RS256", **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": sub, "aud": [srv.url, "other"], "iat": now, "exp": now + 600, "scope": scope}
    return jwt.encode({**body, **claims}, key, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[HttpServer]:
    (tmp_path / "jwks.json").write_text(json.dumps(jwks()))
    extra = ["--oauth", "--oauth-issuer", ISSUER, "--oauth-jwks", str(tmp_path / "jwks.json")]
    srv = start_http(tmp_path / "t.db", tmp_path / "t.log", token=None, extra=extra)
    try:
        yield srv
    finally:
        srv.stop()


def fetch(url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, Any, str]:
    """(status, headers, body text) of one real HTTP request; an error status is an answer, not an exception."""
    try:
        with urlopen(Request(url, data=body, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def post(srv: HttpServer, token: str | None) -> tuple[int, Any, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    return fetch(srv.url, headers, json.dumps(ping).encode())


def b64(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def test_protected_resource_metadata_is_served(server: HttpServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    status, _, text = fetch(f"{base}/.well-known/oauth-protected-resource/mcp")
    assert status == 200, text
    meta = json.loads(text)
    assert meta["resource"] == server.url
    assert meta["authorization_servers"] == [ISSUER]
    assert meta["bearer_methods_supported"] == ["header"]
    status, headers, _ = post(server, None)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in challenge


def test_bad_tokens_get_401(server: HttpServer) -> None:
    now = int(time.time())
    hs = jwt.encode({"iss": ISSUER, "sub": "x", "aud": server.url, "exp": now + 600}, "k" * 32, algorithm="HS256")
    unsigned = b64({"alg": "none"}) + "." + b64({"iss": ISSUER, "sub": "x", "aud": server.url, "exp": now + 600}) + "."
    bad = {
        "no signature of ours": mint(server, "alice", ALICE_SCOPES, key=STRANGER),
        "wrong audience": mint(server, "alice", ALICE_SCOPES, aud="http://elsewhere/mcp"),
        "wrong issuer": mint(server, "alice", ALICE_SCOPES, iss="https://evil.example"),
        "expired": mint(server, "alice", ALICE_SCOPES, exp=now - 120),
        "not yet valid": mint(server, "alice", ALICE_SCOPES, nbf=now + 300),
        "HS256 (shared secret)": hs,
        "alg none": unsigned,
        "RS256 header on the EC key": mint(server, "alice", ALICE_SCOPES, kid="e1"),
        "garbage": "not.a.jwt",
    }
    for what, token in bad.items():
        assert post(server, token)[0] == 401, what
    good = post(server, mint(server, "alice", ALICE_SCOPES))
    assert good[0] == 400 and "Missing session ID" in good[2], good  # past the bearer check, to the transport
    good_ec = post(server, mint(server, "bob", BOB_SCOPES, key=EC_KEY, kid="e1", alg="ES256"))
    assert good_ec[0] == 400 and "Missing session ID" in good_ec[2], good_ec
    assert "Traceback" not in server.log_text()


async def test_two_principals_cannot_reach_each_other(server: HttpServer) -> None:
    alice_token = mint(server, "alice", ALICE_SCOPES)
    bob_token = mint(server, "bob", BOB_SCOPES, key=EC_KEY, kid="e1", alg="ES256")
    async with server.client(alice_token) as alice, server.client(bob_token) as bob:
        await check_isolation(alice, bob)

    # the same sub from another token is the same principal; a token with fewer scopes narrows its grants
    async with server.client(mint(server, "bob", "clawvm:project:proj-b:write")) as bob:
        assert (await call(bob, "recall", session_id="b-shared", query="xylophone"))["outcome"] == "denied"


def serve(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("CLAWVM_TOKEN", None)
    args = [sys.executable, "-m", "clawvm_mcp", "serve", "--db", str(tmp_path / "t.db"), "--port", "1", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--oauth", "--oauth-issuer", ISSUER, "--oauth-jwks", "J"], "--oauth is for --http"),
        (["--http", "--oauth", "--oauth-jwks", "J"], "needs --oauth-issuer"),
        (["--http", "--oauth", "--oauth-issuer", ISSUER], "needs --oauth-issuer"),
        (["--http", "--oauth", "--no-auth", "--oauth-issuer", ISSUER, "--oauth-jwks", "J"], "without --tokens"),
        (["--http", "--oauth", "--tokens", "T", "--oauth-issuer", ISSUER, "--oauth-jwks", "J"], "without --tokens"),
        (["--http", "--oauth", "--oauth-issuer", ISSUER, "--oauth-jwks", "missing.json"], "cannot read the JWKS"),
        (["--http", "--oauth", "--oauth-issuer", ISSUER, "--oauth-jwks", "BAD"], "expected a JWK Set"),
        (["--http", "--oauth", "--oauth-issuer", ISSUER, "--oauth-jwks", "SECRET"], "no private part"),
        (["--http", "--oauth", "--oauth-issuer", "not a url", "--oauth-jwks", "J"], "not an http(s) URL"),
    ],
)
def test_bad_oauth_options_are_refused_with_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    files = {"J": jwks(), "BAD": {"keys": []}, "SECRET": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}
    for name, doc in files.items():
        (tmp_path / name).write_text(json.dumps(doc))
    run = serve(tmp_path, *[str(tmp_path / a) if a in (*files, "missing.json") else a for a in args])
    assert run.returncode == 2
    assert says in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_the_server_imports_the_jwt_verifier_only_for_oauth() -> None:
    """pyjwt and cryptography cost 30-100 ms of every cold start; only ``--oauth`` needs them."""
    code = "import sys, clawvm_mcp.server.app; print(sorted(m for m in ('jwt', 'clawvm_mcp.server.oauth') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def wait_for_log(srv: HttpServer, text: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.log_text().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} in the log: {srv.log_text()}"
        time.sleep(0.05)


def accepted(srv: HttpServer, token: str) -> bool:
    """Past the bearer check (the transport then wants a session id), or refused with 401."""
    status, _, text = post(srv, token)
    assert status in (400, 401), (status, text)
    return status == 400 and "Missing session ID" in text


def test_sighup_rotates_the_keys_and_a_bad_file_keeps_the_old_ones(server: HttpServer, tmp_path: Path) -> None:
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    old = mint(server, "alice", ALICE_SCOPES)
    new = mint(server, "alice", ALICE_SCOPES, key=rotated, kid="r2")
    assert accepted(server, old) and not accepted(server, new)

    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rotated.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "r2", "alg": "RS256"}]}))
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log(server, "JWKS file reloaded: 1 keys")
    assert accepted(server, new)
    assert not accepted(server, old)  # r1 left the file: its tokens are refused at once
    assert not accepted(server, mint(server, "bob", BOB_SCOPES, key=EC_KEY, kid="e1", alg="ES256"))

    (tmp_path / "jwks.json").write_text('{"keys": [')  # caught mid-write, say
    server.proc.send_signal(signal.SIGHUP)
    wait_for_log(server, "JWKS file not reloaded, the old keys stay")  # the log rate limit shows only one such line
    assert accepted(server, new) and not accepted(server, old)  # the rotated key stays
    assert server.proc.poll() is None
    assert "Traceback" not in server.log_text()


async def test_a_requests_grants_are_its_own_tokens_scopes_while_another_token_of_its_principal_works(
    server: HttpServer,
) -> None:
    """Two tokens of one sub, one writing proj-a and one only reading it, used at once: every write through the
    read-only token is rejected and every write through the other commits. (The grants once were those of the
    principal's latest verified token, so a request could run with the scopes of another request's token.)"""
    rw = mint(server, "alice", "clawvm:project:proj-a:write")
    ro = mint(server, "alice", "clawvm:project:proj-a:read")
    statuses: dict[str, list[str]] = {"ro": [], "rw": []}
    async with server.client(rw) as writer, server.client(ro) as reader:
        await call(writer, "session_start", session_id="a-rw", project_id="proj-a")
        await call(reader, "session_start", session_id="a-ro", project_id="proj-a")

        async def writes(client: Any, name: str, session: str) -> None:
            for n in range(12):
                out = await call(client, "page_write", **note(session, f"ev/{name}{n}", f"{name} {n}", "project"))
                statuses[name].append(out["status"])

        async with anyio.create_task_group() as tg:
            tg.start_soon(writes, reader, "ro", "a-ro")
            tg.start_soon(writes, writer, "rw", "a-rw")
    assert statuses == {"ro": ["rejected"] * 12, "rw": ["committed"] * 12}
