"""Tool-argument errors in words a model can act on.

The SDK reports a schema failure as pydantic's text (``1 validation error for page_writeArguments ... For further
information visit https://errors.pydantic.dev/...``). This module turns the same ``ValidationError`` into one line
per argument that names it, says what it must be and what was sent, and says to call the tool again.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

ErrorDetails = Mapping[str, Any]  # one entry of ValidationError.errors()

# pydantic puts a union member's type in the error location (``fields.a.str``, ``fields.a.list[str]``); these are
# not argument names, and an argument path never contains them
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list", "bytes", "any"})
_HINTS = {
    "page_id": "lower-case letters, digits and . _ / - with a letter or digit first, e.g. plan/main",
}
_SHOULD = ("Input should ", "String should ", "List should ", "Dictionary should ", "Value should ", "Object should ")

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlevel = 2
_short.maxdict = 4
_short.maxlist = 4


def _is_tag(part: str | int) -> bool:
    return isinstance(part, str) and (part in _UNION_TAGS or "[" in part)


def _path(loc: Sequence[str | int]) -> str:
    """``('bootstrap', 0, 'content')`` -> ``bootstrap[0].content``; union-member tags are dropped."""
    out = ""
    for part in loc:
        if _is_tag(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += part if not out else f".{part}"
    return out or "arguments"


def _requirement(error: ErrorDetails) -> str:
    """What the value must be, from pydantic's message without its leading "Input should"."""
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        return f"must match {pattern}"
    message = str(error["msg"])
    for prefix in _SHOULD:
        if message.startswith(prefix):
            return "must " + message[len(prefix) :]
    return "is invalid: " + message[:1].lower() + message[1:]


def _sent(error: ErrorDetails) -> str:
    return "" if error["type"] == "missing" else f" (got {_short.repr(error['input'])})"


def problems(exc: ValidationError) -> list[str]:
    """One sentence per bad argument path; a union's alternatives are folded into one "or"."""
    grouped: dict[str, list[ErrorDetails]] = {}
    for error in exc.errors(include_url=False):
        grouped.setdefault(_path(error["loc"]), []).append(error)
    out: list[str] = []
    for path, errors in grouped.items():
        if any(e["type"] == "missing" for e in errors):
            out.append(f"{path} is required")
            continue
        needs = list(dict.fromkeys(_requirement(e) for e in errors))
        sentence = f"{path} {' or '.join(needs[:1] + [n.removeprefix('must ') for n in needs[1:]])}"
        hint = _HINTS.get(path.rsplit(".", 1)[-1]) if errors[0]["type"] == "string_pattern_mismatch" else None
        out.append(sentence + (f": {hint}" if hint else "") + _sent(errors[0]))
    return out


def explain(tool: str, exc: ValidationError) -> str:
    """The whole error text for an ``isError`` result of ``tool``."""
    found = problems(exc)
    return (
        f"Error executing tool {tool}: invalid arguments: {'; '.join(found)}. "
        f"Fix {'it' if len(found) == 1 else 'them'} and call {tool} again (tools/list has the input schema)."
    )


def error_text(result: dict[str, Any]) -> str | None:
    """The text of a wire ``CallToolResult`` that is an error with one text block, else None."""
    content = result.get("content")
    if not result.get("isError") or not isinstance(content, list) or len(content) != 1:
        return None
    block = content[0]
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        return None
    text: str = block["text"]
    return text
