"""Claude Code's hook wire format: the JSON a hook gets on stdin and the only JSON it may print on stdout.

Claude Code parses a hook's stdout as hook output when it is JSON, and refuses JSON with keys it does not know
("hook error: JSON validation failed"), so every output here is built from the keys the hooks reference names:
top-level ``systemMessage`` (shown to the user) and ``hookSpecificOutput`` (per event). Anything else a hook has to
say goes to stderr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Event = Literal["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "PreCompact", "Stop", "SessionEnd"]
EVENTS: tuple[Event, ...] = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PostToolUse",
    "PreCompact",
    "Stop",
    "SessionEnd",
)
# Claude Code caps injected hook output (additionalContext, systemMessage, plain stdout) at 10,000 characters.
CONTEXT_CAP = 10_000
TOP_LEVEL_KEYS = frozenset({"continue", "suppressOutput", "stopReason", "decision", "reason", "systemMessage"})
Json = dict[str, Any]


class PayloadError(ValueError):
    """The hook input is not what Claude Code sends; the message names the missing or malformed field."""


@dataclass(frozen=True, slots=True)
class HookInput:
    """The fields of one hook's stdin that the clawvm hook uses; the rest of the payload is kept in ``raw``."""

    event: Event
    session_id: str
    cwd: str
    transcript_path: str = ""
    source: str = ""  # SessionStart: startup | resume | clear | compact
    reason: str = ""  # SessionEnd: clear | logout | prompt_input_exit | other
    trigger: str = ""  # PreCompact: manual | auto
    prompt: str = ""  # UserPromptSubmit
    tool_name: str = ""
    tool_input: Json = field(default_factory=lambda: {})
    tool_use_id: str = ""
    tool_response: object = None
    raw: Json = field(default_factory=lambda: {})


def _text(data: Mapping[str, Any], key: str, required: bool = False) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise PayloadError(f"hook input field {key!r} must be a string, got {type(value).__name__}")
    if required and not value:
        raise PayloadError(f"hook input has no {key!r}")
    return value


def parse_input(event: Event, text: str) -> HookInput:
    """Parse a hook's stdin. The event comes from the command line, so a payload of another event is refused."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"hook input is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"hook input must be a JSON object, got {type(data).__name__}")
    named = data.get("hook_event_name")
    if named not in (None, "", event):
        raise PayloadError(f"hook input is for {named!r}, but this command handles {event}")
    tool_input = data.get("tool_input", {})
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, dict):
        raise PayloadError("hook input field 'tool_input' must be an object")
    needs_tool = event in ("PreToolUse", "PostToolUse")
    return HookInput(
        event=event,
        session_id=_text(data, "session_id", required=True),
        cwd=_text(data, "cwd"),
        transcript_path=_text(data, "transcript_path"),
        source=_text(data, "source"),
        reason=_text(data, "reason"),
        trigger=_text(data, "trigger"),
        prompt=_text(data, "prompt"),
        tool_name=_text(data, "tool_name", required=needs_tool),
        tool_input=tool_input,
        tool_use_id=_text(data, "tool_use_id"),
        tool_response=data.get("tool_response"),
        raw=data,
    )


def context_output(event: Event, text: str, user_message: str = "") -> Json:
    """SessionStart / UserPromptSubmit: text the model sees, as ``additionalContext`` (and a line for the user)."""
    out: Json = {"hookSpecificOutput": {"hookEventName": event, "additionalContext": text}}
    if user_message:
        out["systemMessage"] = user_message
    return out


def deny_output(reason: str) -> Json:
    """PreToolUse: do not run the tool; Claude Code shows ``reason`` to the model in place of the tool's result."""
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": reason,
        }
    }


def user_notice(message: str) -> Json:
    """Any event: a line shown to the user (never to the model), for failures the user has to know about."""
    return {"systemMessage": message}


def encode(output: Json | None) -> str:
    """The exact bytes for stdout: nothing, or one JSON object and a newline."""
    return "" if output is None else json.dumps(output, ensure_ascii=False) + "\n"
