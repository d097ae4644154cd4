"""Claude Code's tool calls as clawvm sees them: the text a result is stored as, whether a stored result may stand in
for a rerun, and the plan page TodoWrite keeps.

A stored result is served from memory only when it is certain to be what the tool would return now:
- Read: the stored lines are compared with the file on disk (same range); any difference, a grown file, an
  unreadable file or a cut result means the tool runs again.
- Grep, Glob, LS: only while no tool with side effects has run since the result was stored (the hook counts them).
- WebFetch, WebSearch and tools made idempotent in the configuration: while the engine holds the result as valid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

MAX_RESULT_BYTES = 60 * 1024  # an evidence page holds at most 64 KiB
CUT_MARK = "[… clawvm: "
FS_SCANS = frozenset({"Grep", "Glob", "LS"})
DROPPED_KEYS = frozenset({"originalFile"})  # Edit/Write echo the whole file before the change: not the result


def _read_text(response: Mapping[str, Any]) -> str | None:
    """Read's ``{"type": "text", "file": {"content", "startLine", ...}}`` as Claude Code shows it to the model:
    ``cat -n`` style lines, ``     1→text``."""
    file = response.get("file")
    if response.get("type") != "text" or not isinstance(file, dict):
        return None
    content = file.get("content")
    if not isinstance(content, str):
        return None
    start = file.get("startLine", 1)
    start = start if isinstance(start, int) and start > 0 else 1
    lines = content.split("\n") if content else []
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no line of its own
    return number_lines(lines, start)


def number_lines(lines: Sequence[str], start: int) -> str:
    return "\n".join(f"{n:>6}→{line}" for n, line in enumerate(lines, start=start))


def _cut(text: str) -> str:
    data = text.encode("utf-8")
    if len(data) <= MAX_RESULT_BYTES:
        return text
    half = MAX_RESULT_BYTES // 2 - 100
    head = data[:half].decode("utf-8", errors="ignore")
    tail = data[-half:].decode("utf-8", errors="ignore")
    note = f"{CUT_MARK}{len(data) - 2 * half} bytes cut here; the whole result is in the transcript …]"
    return f"{head}\n{note}\n{tail}"


def render_result(tool: str, response: object) -> str:
    """The text a tool's ``tool_response`` is stored as (at most 60 KiB; a longer one is cut in the middle)."""
    text: str | None = None
    if isinstance(response, str):
        text = response
    elif isinstance(response, dict):
        if tool == "Read":
            text = _read_text(response)
        if text is None and isinstance(response.get("stdout"), str):
            stderr = response.get("stderr")
            text = response["stdout"] + (f"\n[stderr]\n{stderr}" if isinstance(stderr, str) and stderr else "")
        if text is None and tool == "WebFetch" and isinstance(response.get("result"), str):
            text = response["result"]
        if text is None and tool in ("Grep", "Glob"):  # Grep's content mode, else the matching file names
            if isinstance(response.get("content"), str):
                text = response["content"]
            elif isinstance(response.get("filenames"), list):
                text = "\n".join(str(name) for name in response["filenames"]) or "(no matches)"
        if text is None:
            kept = {k: v for k, v in response.items() if k not in DROPPED_KEYS}
            text = json.dumps(kept, sort_keys=True, ensure_ascii=False)
    if text is None:
        text = json.dumps(response, sort_keys=True, ensure_ascii=False)
    return _cut(text)


def _unnumber(stored: str) -> tuple[int, list[str]] | None:
    """Invert ``number_lines``: (first line number, lines), or None if ``stored`` is not such a listing."""
    if not stored:
        return None
    start = 0
    lines: list[str] = []
    for i, row in enumerate(stored.split("\n")):
        number, arrow, text = row.partition("→")
        if not arrow or not number.strip().isdigit():
            return None
        if i == 0:
            start = int(number)
        elif int(number) != start + i:
            return None
        lines.append(text)
    return start, lines


def read_is_current(tool_input: Mapping[str, Any], stored: str) -> bool:
    """True when a stored Read result is exactly what reading the file now would return."""
    if CUT_MARK in stored:
        return False
    path = tool_input.get("file_path")
    parsed = _unnumber(stored)
    if not isinstance(path, str) or not Path(path).is_absolute() or parsed is None:
        return False
    start, lines = parsed
    try:
        disk = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return False
    if disk and disk[-1] == "":
        disk.pop()  # the newline that ends the last line starts no line of its own
    end = start - 1 + len(lines)
    if [ln.rstrip("\r") for ln in disk[start - 1 : end]] != [ln.rstrip("\r") for ln in lines]:
        return False
    limit = tool_input.get("limit")
    return isinstance(limit, int) or len(disk) <= end  # read to the end then: the file must not have grown


def answer_reason(tool: str, why: str, call_id: str, page_id: str, stored: str) -> str:
    """What the model reads in place of the tool's output when a repeat is answered from memory."""
    return (
        f"Answered from clawvm memory, not an error: this exact {tool} call already ran in this session and its "
        f"result is still valid ({why}), so it was not run again. Stored result (call {call_id}, page {page_id}):\n"
        f"{stored}"
    )


TODO_MARKS = {"completed": "[x]", "in_progress": "[ ]", "pending": "[ ]"}
TODO_ORDER = {"completed": 0, "in_progress": 1, "pending": 2}


def todo_plan(tool_input: Mapping[str, Any]) -> str | None:
    """TodoWrite's list as a plan page: done items first, then the one in progress (the current step), then the
    rest. None when the input holds no list."""
    todos = tool_input.get("todos")
    if not isinstance(todos, list):
        return None
    items: list[tuple[int, int, str]] = []
    for index, todo in enumerate(todos):
        if not isinstance(todo, dict) or not isinstance(todo.get("content"), str):
            continue
        status = str(todo.get("status", "pending"))
        mark = TODO_MARKS.get(status, "[ ]")
        note = " (in progress)" if status == "in_progress" else ""
        items.append((TODO_ORDER.get(status, 2), index, f"- {mark} {' '.join(todo['content'].split())}{note}"))
    lines = [text for _, _, text in sorted(items)] or ["(no items)"]
    return "\n".join(["Todo list (Claude Code TodoWrite)", *lines])
