"""Canonical JSON: the one encoding used wherever bytes are stored, hashed or compared."""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["dumps", "tool_signature"]


def dumps(value: object) -> str:
    """Sorted keys, no spaces, no ASCII escaping: stored bytes and hashes are reproducible."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tool_signature(tool: str, args: Mapping[str, object]) -> str:
    """Tool name + canonical JSON of its arguments: key order and whitespace never make two calls differ."""
    return f"{tool}\x00{dumps(args)}"
