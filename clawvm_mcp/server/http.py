"""Streamable HTTP transport: loopback by default, bearer token required unless --no-auth is explicit."""

from __future__ import annotations

import hmac
import json
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send


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
    app: ASGIApp = server.streamable_http_app(host=host)  # DNS-rebinding protection is on for loopback hosts
    return app if token is None else BearerAuth(app, token)


async def serve_http(server: MCPServer[Any], host: str, port: int, token: str | None) -> None:
    config = uvicorn.Config(http_app(server, host, token), host=host, port=port, log_level="warning", lifespan="on")
    await uvicorn.Server(config).serve()
