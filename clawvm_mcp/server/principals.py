"""Per-token principals over HTTP: a file of sha256-hashed bearer tokens, each naming a principal and its project
grants, checked by the SDK's bearer middleware through ``TableVerifier`` and reloaded on SIGHUP.

The file (JSON)::

    {"tokens": [{"sha256": "<64 hex>", "principal": "alice", "grants": {"proj-a": "write", "proj-b": "read"}}]}

Only hashes are stored, so a leaked file gives no token away; a presented token shorter than ``MIN_TOKEN_BYTES``
never authenticates (its length cannot be read off a hash, so it is checked when it is presented).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings

from ..engine.policy import Grant

log = logging.getLogger(__name__)
MIN_TOKEN_BYTES = 32  # a --tokens bearer token: 256 bits if it is random bytes
MIN_ENV_TOKEN_CHARS = 8  # CLAWVM_TOKEN: refuses the empty and trivially short tokens that were accepted before
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PRINCIPAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@|-]{0,127}")
PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class TokenFileError(ValueError):
    """The tokens file cannot be used; the message is one line saying where and why."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    principal: str
    grants: Mapping[str, Grant]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, where: str) -> dict[str, TokenEntry]:
    """The table (digest -> entry) a tokens file describes, or TokenFileError naming the first problem."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TokenFileError(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise TokenFileError(f'{where}: expected {{"tokens": [{{"sha256": ..., "principal": ..., "grants": ...}}]}}')
    table: dict[str, TokenEntry] = {}
    for n, item in enumerate(items, 1):
        at = f"{where}: token {n}"
        if not isinstance(item, dict) or set(item) - {"sha256", "principal", "grants"}:
            raise TokenFileError(f"{at}: an object with sha256, principal and grants only")
        digest, principal, grants = item.get("sha256"), item.get("principal"), item.get("grants", {})
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise TokenFileError(f"{at}: sha256 must be 64 lowercase hex digits (sha256 of the token, not the token)")
        if digest in table:
            raise TokenFileError(f"{at}: the same token hash appears twice")
        if not isinstance(principal, str) or not PRINCIPAL.fullmatch(principal):
            raise TokenFileError(f"{at}: principal must be 1-128 of A-Z a-z 0-9 . _ : @ | - (letter/digit first)")
        if not isinstance(grants, dict):
            raise TokenFileError(f"{at}: grants must be an object of project: read|write")
        checked: dict[str, Grant] = {}
        for project, level in grants.items():
            if not PROJECT.fullmatch(project) or level not in ("read", "write"):
                raise TokenFileError(f"{at}: grant {project!r}: {level!r} must be a project id mapped to read or write")
            checked[project] = "write" if level == "write" else "read"
        table[digest] = TokenEntry(principal, checked)
    return table


def load_tokens(path: Path) -> dict[str, TokenEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path}: cannot read the tokens file ({exc})") from None
    return parse_tokens(text, str(path))


class TableVerifier:
    """The SDK's ``TokenVerifier`` over a tokens file. ``reload`` swaps the table whole, or keeps the old one and
    logs why, so a bad edit never locks everyone out. The AccessToken's client_id is the principal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table = load_tokens(path)

    def reload(self) -> bool:
        try:
            table = load_tokens(self.path)
        except TokenFileError as exc:
            log.error("tokens file not reloaded, the old table stays: %s", exc)
            return False
        self.table = table
        log.warning("tokens file reloaded: %d tokens, %d principals", len(table), len(self.principals()))
        return True

    def auth_settings(self) -> AuthSettings:
        """The issuer URL is required by ``AuthSettings`` but unused: a static table serves no metadata."""
        return AuthSettings(issuer_url="http://127.0.0.1", resource_server_url=None)  # type: ignore[arg-type]

    def principals(self) -> set[str]:
        return {entry.principal for entry in self.table.values()}

    def grants_of(self, principal: str) -> Mapping[str, Grant]:
        """The principal's standing grants (the union over its tokens; write wins over read), for work done
        outside a request, such as announcing resource updates to its listeners. A request has its token's."""
        out: dict[str, Grant] = {}
        for entry in self.table.values():
            if entry.principal == principal:
                for project, level in entry.grants.items():
                    out[project] = "write" if "write" in (level, out.get(project)) else "read"
        return out

    async def verify_token(self, token: str) -> AccessToken | None:
        if len(token.encode()) < MIN_TOKEN_BYTES:
            return None
        digest = token_digest(token)  # looked up by hash: the timing of the lookup says nothing about a token
        entry = self.table.get(digest)
        if entry is None:
            return None
        scopes = [f"project:{p}:{g}" for p, g in sorted(entry.grants.items())]
        return AccessToken(token=digest, client_id=entry.principal, scopes=scopes)

    def token_grants(self, token: AccessToken) -> Mapping[str, Grant]:
        """The grants of the table's entry for this token now (its digest): a reload that narrows or revokes
        them applies to the next operation of a request already verified."""
        entry = self.table.get(token.token)
        return entry.grants if entry is not None and entry.principal == token.client_id else {}


class PrincipalVerifier(Protocol):
    """What the server needs of a per-principal verifier (``TableVerifier``, ``oauth.JwtVerifier``): the SDK's
    ``verify_token``, the current grants of a verified principal, a SIGHUP reload and the SDK's auth settings
    (so the server imports no verifier it does not use: the JWT one pulls in pyjwt and cryptography)."""

    async def verify_token(self, token: str) -> AccessToken | None: ...

    def token_grants(self, token: AccessToken) -> Mapping[str, Grant]:
        """The grants of one verified token: what a request carrying it may do."""
        ...

    def grants_of(self, principal: str) -> Mapping[str, Grant]:
        """A principal's standing grants, where no request (and so no token) is at hand."""
        ...

    def reload(self) -> bool: ...

    def auth_settings(self) -> AuthSettings:
        """What the SDK's auth layer is configured with for this kind of token."""
        ...


# The verified token of the request being served: the engine of a principal is shared by all its tokens, so the
# grants of an operation are read from the token of the request it serves (set by ``serving``)
_request_token: ContextVar[AccessToken | None] = ContextVar("clawvm_request_token", default=None)


def serving(token: AccessToken | None) -> None:
    """Name the verified token of the request this task serves. Each request is handled in a task of its own (a
    copy of the context), so the name lasts for that request and goes no further."""
    _request_token.set(token)


class LiveGrants(Mapping[str, Grant]):
    """A principal's grants as the engine reads them, looked up on every check: those of the token of the request
    being served (``serving``), else the principal's standing grants. A SIGHUP reload that changes or revokes a
    grant applies to the next operation, with no engine rebuilt."""

    def __init__(self, verifier: PrincipalVerifier, principal: str) -> None:
        self.verifier = verifier
        self.principal = principal

    def _now(self) -> Mapping[str, Grant]:
        token = _request_token.get()
        if token is not None and token.client_id == self.principal:
            return self.verifier.token_grants(token)
        return self.verifier.grants_of(self.principal)

    def __getitem__(self, project: str) -> Grant:
        return self._now()[project]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def token_of(request: object) -> AccessToken | None:
    """The token the SDK's bearer middleware verified for this HTTP request; None without one (stdio, or the
    single CLAWVM_TOKEN, whose principal is the server's --principal)."""
    scope = getattr(request, "scope", None)
    user = scope.get("user") if isinstance(scope, dict) else None
    return user.access_token if isinstance(user, AuthenticatedUser) else None
