"""The MCP adapter over the engine."""

from .app import AppState, ServerConfig, create_server

__all__ = ["AppState", "ServerConfig", "create_server"]
