"""OAuth 2.1 resource server (``serve --http --oauth``): JWT access tokens checked against a JWK Set read from a
local file (no network at run time), so a principal per token comes from any issuer that signs JWTs.

A token authenticates when its RS256 or ES256 signature verifies against a key of the JWKS (``none`` and HS* are
never accepted: a shared secret or no signature would let a client mint its own grants), ``iss`` equals
``--oauth-issuer``, ``aud`` contains the audience (default: the resource URL) and ``exp``/``nbf`` hold within
``LEEWAY_SECONDS``. The principal is ``iss|sub``. Grants come from the ``scope`` claim (space-separated, or a list in
``scp``)::

    clawvm:project:<project-id>:read     clawvm:project:<project-id>:write

Other scopes are ignored. A principal's grants are those of its latest verified token, so a new token with fewer
scopes narrows them at the next call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from pydantic import AnyHttpUrl, ValidationError

from ..engine.policy import Grant
from .principals import PROJECT

log = logging.getLogger(__name__)
ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 30
SCOPE = re.compile(r"clawvm:project:(?P<project>\S+):(?P<level>read|write)")


class OAuthConfigError(ValueError):
    """The JWKS file or an OAuth option cannot be used; the message is one line saying where and why."""


def load_jwks(path: Path) -> list[jwt.PyJWK]:
    """The RS256/ES256 public keys of a JWK Set file, or OAuthConfigError naming the problem."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise OAuthConfigError(f"{path}: cannot read the JWKS file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise OAuthConfigError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise OAuthConfigError(f'{path}: expected a JWK Set, {{"keys": [...]}}')
    keys: list[jwt.PyJWK] = []
    for n, item in enumerate(data["keys"], 1):
        if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC") or "d" in item:
            raise OAuthConfigError(f"{path}: key {n}: an RSA or EC public key (kty RSA/EC, no private part)")
        alg = item.get("alg", "RS256" if item["kty"] == "RSA" else "ES256")
        if alg not in ALGORITHMS:
            raise OAuthConfigError(f"{path}: key {n}: alg {alg!r} is not one of {', '.join(ALGORITHMS)}")
        try:
            keys.append(jwt.PyJWK(item, algorithm=alg))
        except jwt.PyJWTError as exc:
            raise OAuthConfigError(f"{path}: key {n}: {exc}") from None
    return keys


def grants_from_scopes(scopes: list[str]) -> dict[str, Grant]:
    """Project grants named by ``clawvm:project:<id>:read|write`` scopes; write wins over read."""
    out: dict[str, Grant] = {}
    for scope in scopes:
        match = SCOPE.fullmatch(scope)
        if match is None or not PROJECT.fullmatch(match["project"]):
            continue
        level: Grant = "write" if match["level"] == "write" else "read"
        out[match["project"]] = "write" if "write" in (level, out.get(match["project"])) else "read"
    return out


def scopes_of(claims: Mapping[str, Any]) -> list[str]:
    scope, scp = claims.get("scope"), claims.get("scp")
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scp, list):
        return [s for s in scp if isinstance(s, str)]
    return []


class JwtVerifier:
    """The SDK's ``TokenVerifier`` over JWTs; the AccessToken's client_id is the principal ``iss|sub``, as with
    ``TableVerifier``. A request's grants are its token's scopes; ``grants_of`` (outside a request) serves those
    of the principal's latest verified token."""

    def __init__(self, jwks: Path, issuer: str, audience: str, resource: str) -> None:
        for name, url in (("--oauth-issuer", issuer), ("--oauth-resource", resource)):
            try:
                AnyHttpUrl(url)  # AuthSettings takes them as URLs: refused here with one line, not at startup
            except ValidationError:
                raise OAuthConfigError(f"{name} {url!r} is not an http(s) URL") from None
        self.path = jwks
        self.issuer = issuer
        self.audience = audience
        self.resource = resource
        self.keys = load_jwks(jwks)
        self.latest: dict[str, dict[str, Grant]] = {}

    def reload(self) -> bool:
        try:
            keys = load_jwks(self.path)
        except OAuthConfigError as exc:
            log.error("JWKS file not reloaded, the old keys stay: %s", exc)
            return False
        self.keys = keys
        log.warning("JWKS file reloaded: %d keys", len(keys))
        return True

    def token_grants(self, token: AccessToken) -> Mapping[str, Grant]:
        return grants_from_scopes(token.scopes)

    def grants_of(self, principal: str) -> Mapping[str, Grant]:
        return self.latest.get(principal, {})

    def auth_settings(self) -> AuthSettings:
        """The SDK serves RFC 9728 metadata for ``resource`` and names it in 401s; ``aud`` is checked here."""
        return AuthSettings(
            issuer_url=self.issuer,  # type: ignore[arg-type]
            resource_server_url=self.resource,  # type: ignore[arg-type]
            validate_token_resource=False,
        )

    def candidates(self, header: Mapping[str, Any]) -> list[jwt.PyJWK]:
        kid = header.get("kid")
        return [k for k in self.keys if kid is None or k.key_id == kid]

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            return None
        for key in self.candidates(header):
            if key.algorithm_name != alg:
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key.key,
                    algorithms=[alg],
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iss", "sub", "aud"]},
                )
            except jwt.InvalidSignatureError:
                continue  # another key of the set may have signed it
            except jwt.PyJWTError:
                return None
            sub = claims["sub"]
            if not isinstance(sub, str) or not sub:
                return None
            principal = f"{claims['iss']}|{sub}"
            scopes = scopes_of(claims)
            self.latest[principal] = grants_from_scopes(scopes)
            exp = claims.get("exp")
            return AccessToken(
                token=hashlib.sha256(token.encode()).hexdigest()[:12],
                client_id=principal,
                scopes=scopes,
                expires_at=int(exp) if isinstance(exp, int | float) else None,
                resource=self.audience,
                subject=sub,
                claims={"iss": claims["iss"]},
            )
        return None
