"""What a user can tune in the Claude Code hook, read from the project's ``.claude/clawvm.json``.

A project file, not environment variables: settings ``env`` reaches hooks in the interactive CLI but not in
stream-json or IDE mode, and the file travels with the project. Every key is optional; a malformed file or value
is reported (stderr and the injected context) and its default is used, so a typo never switches memory off silently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from .cc_io import CONTEXT_CAP

PromptContext = Literal["delta", "full"]
CONFIG_FILE = Path(".claude") / "clawvm.json"
# Read-only tools Claude Code declares; a repeat of one of these whose stored result is still valid can be answered
# from memory (DESIGN section 9).
DEFAULT_IDEMPOTENT = frozenset({"Read", "Grep", "Glob", "WebFetch", "WebSearch", "LS"})
# Tools with side effects: never answered from memory, whatever the configuration says.
SIDE_EFFECTS = frozenset(
    {"Bash", "BashOutput", "KillShell", "Edit", "MultiEdit", "Write", "NotebookEdit", "TodoWrite", "Task", "Agent"}
)
# clawvm's own MCP tools are memory operations, not tool calls to record: as a user-registered server
# (`claude mcp add clawvm`) and as the plugin's bundled server (mcp__plugin_<plugin>_<server>__<tool>).
MEMORY_TOOL_PREFIXES = ("mcp__clawvm__", "mcp__plugin_clawvm_clawvm__")


@dataclass(frozen=True, slots=True)
class HookConfig:
    budget: int = 2000  # tokens for the assembled context (about 8,000 characters of English)
    max_chars: int = 9500  # the injected text stays under Claude Code's 10,000-character cap
    answer_from_memory: bool = True  # PreToolUse denies an idempotent repeat with its stored result
    max_answer_chars: int = 40_000  # a longer stored result is not served from memory: the tool reruns
    prompt_context: PromptContext = "delta"
    user_claude_md: bool = False  # also keep ~/.claude/CLAUDE.md as a bootstrap page of this project
    idempotent: Mapping[str, bool] = field(default_factory=lambda: {})  # per-tool overrides of the defaults
    warnings: tuple[str, ...] = ()

    def is_idempotent(self, tool: str) -> bool:
        if tool in SIDE_EFFECTS:
            return False
        return self.idempotent.get(tool, tool in DEFAULT_IDEMPOTENT)


def is_memory_tool(tool: str) -> bool:
    return tool.startswith(MEMORY_TOOL_PREFIXES)


def _int(data: Mapping[str, Any], key: str, default: int, low: int, high: int, warn: list[str]) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        warn.append(f"{key} must be an integer from {low} to {high}; using {default}")
        return default
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool, warn: list[str]) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        warn.append(f"{key} must be true or false; using {str(default).lower()}")
        return default
    return value


def parse_config(data: object, where: str) -> HookConfig:
    warn: list[str] = []
    if not isinstance(data, dict):
        return HookConfig(warnings=(f"{where}: must be a JSON object; using the defaults",))
    known = {"budget", "max_chars", "answer_from_memory", "max_answer_chars", "prompt_context", "user_claude_md"}
    known.add("idempotent")
    warn.extend(f"unknown key {key!r} ignored" for key in sorted(set(data) - known))
    base = HookConfig()
    prompt_context: PromptContext = base.prompt_context
    raw_mode = data.get("prompt_context", base.prompt_context)
    if raw_mode in ("delta", "full"):
        prompt_context = "full" if raw_mode == "full" else "delta"
    else:
        warn.append("prompt_context must be 'delta' or 'full'; using 'delta'")
    idempotent: dict[str, bool] = {}
    raw_tools = data.get("idempotent", {})
    if isinstance(raw_tools, dict):
        for tool, flag in sorted(raw_tools.items()):
            if not isinstance(flag, bool):
                warn.append(f"idempotent.{tool} must be true or false; ignored")
            elif flag and tool in SIDE_EFFECTS:
                warn.append(f"{tool} has side effects and is never answered from memory; idempotent.{tool} ignored")
            else:
                idempotent[str(tool)] = flag
    else:
        warn.append("idempotent must be an object of tool name -> true/false; ignored")
    config = HookConfig(
        budget=_int(data, "budget", base.budget, 1, 100_000, warn),
        max_chars=_int(data, "max_chars", base.max_chars, 500, CONTEXT_CAP, warn),
        answer_from_memory=_bool(data, "answer_from_memory", base.answer_from_memory, warn),
        max_answer_chars=_int(data, "max_answer_chars", base.max_answer_chars, 0, 1_000_000, warn),
        prompt_context=prompt_context,
        user_claude_md=_bool(data, "user_claude_md", base.user_claude_md, warn),
        idempotent=idempotent,
    )
    return replace(config, warnings=tuple(f"{where}: {w}" for w in warn))


def load_config(project_dir: Path, explicit: Path | None = None) -> HookConfig:
    """The project's configuration (or ``explicit``); no file means the defaults."""
    path = explicit if explicit is not None else project_dir / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit is not None:
            return HookConfig(warnings=(f"{path}: no such file; using the defaults",))
        return HookConfig()
    except (OSError, UnicodeDecodeError) as exc:
        return HookConfig(warnings=(f"{path}: unreadable ({exc}); using the defaults",))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return HookConfig(warnings=(f"{path}: not JSON ({exc.msg}, line {exc.lineno}); using the defaults",))
    return parse_config(data, str(path))
