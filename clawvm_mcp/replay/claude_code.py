"""Claude Code logs to replay traces (DESIGN section 8): ``clawvm-mcp trace from-claude-code LOG... --out DIR``.

Reads interactive transcripts (``~/.claude/projects/<cwd>/<session>.jsonl``) and ``claude -p --output-format
stream-json`` logs, which share their message shapes, so that a user can replay their own sessions under every
policy. What becomes what (docs/replay.md, "Claude Code logs"):

- each ``tool_use`` with its ``tool_result``: an evidence page and a ``tool`` event naming it as ``result_page``;
- TodoWrite: the plan page ``plan/todo``; an invoked skill's body: a constraint ``skill/<name>``;
- the first user prompt: the constraint ``task``; CLAUDE.md text the log shows: a bootstrap page;
- later prompts, assistant text and compaction summaries: conversation pages;
- ``system`` lines with subtype ``compact_boundary``: ``compaction``; the end of the log: ``session_end``;
- one ``assemble`` per model call, demanding at full what entered the conversation since the previous call, plus
  the earlier result of every read-only call it repeats whose result the log shows unchanged ("repeated reads as
  demands"); one turn per user prompt (``--turns step``: per model call).

Bad input is a ``ConvertError`` whose message starts with ``file:line:``; unknown line types are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from ..engine.session import SESSION_ID_RE
from ..pages import MAX_PAGE_BYTES
from .trace import Trace, TraceError, dump_events, parse_lines

TurnUnit = Literal["prompt", "step"]
TURN_UNITS: tuple[TurnUnit, ...] = get_args(TurnUnit)
# read-only tools whose repeat may be answered from memory (DESIGN section 9's Claude Code list)
IDEMPOTENT_TOOLS = frozenset({"Read", "Grep", "Glob", "LS", "WebFetch", "WebSearch"})
IGNORED_TYPES = frozenset({"summary", "file-history-snapshot"})  # session titles and checkpoints: no context
# room left under the engine's page limit for the fields it stores beside a tool result
PAGE_BYTES = MAX_PAGE_BYTES - 1024
SKILL_PREFIX = "Base directory for this skill:"
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
# the claudeMd context Claude Code puts in a system reminder: "Contents of PATH (what it is):" and the text
_CLAUDE_MD = re.compile(
    r"Contents of (\S*CLAUDE(?:\.local)?\.md)[^\n]*:\n\n(.*?)"
    r"(?=\n\s*Contents of \S+|\n# currentDate|\n\s*IMPORTANT: this context may or may not|\s*</system-reminder>|\Z)",
    re.S,
)
_COMMAND = re.compile(r"^\s*<(command-name|command-message|local-command-stdout|local-command-stderr)>")
_LINE_NUMBER = re.compile(r"^ *\d+→", re.M)
Record = dict[str, object]
ItemKind = Literal["init", "prompt", "call", "text", "tool_use", "tool_result", "skill", "claude_md", "compact", "end"]


class ConvertError(ValueError):
    """A log that cannot be converted; the message starts with ``file:line:`` (or ``file:``)."""


@dataclass(frozen=True, slots=True)
class Converted:
    """One session's trace: the JSONL records, the same validated by the trace reader, and what was counted."""

    source: str
    name: str  # file name to write, ``<stem>.jsonl``
    session: str
    records: tuple[Record, ...]
    trace: Trace
    counts: Mapping[str, int]
    skipped: Mapping[str, int]
    warnings: tuple[str, ...]

    def text(self) -> str:
        return dump_events(self.records)


@dataclass(frozen=True, slots=True)
class _Item:
    kind: ItemKind
    line: int
    text: str = ""
    ident: str = ""  # tool_use id (tool_use, tool_result), message id (call), path (claude_md)
    name: str = ""  # tool name, skill name
    args: Mapping[str, object] = field(default_factory=lambda: {})
    is_error: bool = False


@dataclass(slots=True)
class _Log:
    items: list[_Item] = field(default_factory=lambda: [])
    session: str = ""
    cwd: str = ""
    skipped: dict[str, int] = field(default_factory=lambda: {})
    warnings: list[str] = field(default_factory=lambda: [])
    unknown_first: dict[str, int] = field(default_factory=lambda: {})

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


# ---------------------------------------------------------------------------------------------- reading the log


def _clean(text: str) -> str:
    """Text the engine accepts: lone surrogates replaced, cut below the page limit at a character boundary."""
    data = text.encode("utf-8", "replace")
    if len(data) <= PAGE_BYTES:
        return data.decode("utf-8")
    kept = data[: PAGE_BYTES - 200].decode("utf-8", "ignore")
    return f"{kept}\n[… {len(data) - len(kept.encode())} bytes cut by clawvm-mcp trace: pages hold at most 64 KiB]"


def _clean_value(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean_value(k): _clean_value(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [_clean_value(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def _block_text(content: object) -> str:
    """A tool result's or message's text: a string, or text blocks joined (other blocks named in brackets)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for block in content:  # pyright: ignore[reportUnknownVariableType]
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(str(block["text"]))
        elif isinstance(block, dict):
            parts.append(f"[{block.get('type', 'block')}]")
    return "\n".join(parts)


class _Reader:
    """Turns one log's lines into items; raises ConvertError naming the line."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.log = _Log()
        self.message_ids: set[str] = set()
        self.last_skill = ""
        self.ended = False

    def fail(self, number: int, message: str) -> ConvertError:
        return ConvertError(f"{self.where}:{number}: {message}")

    def read(self, lines: Sequence[str], ends_with_newline: bool) -> _Log:
        last = max((i for i, t in enumerate(lines, 1) if t.strip()), default=0)
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                if number == last and not ends_with_newline:
                    self.log.warnings.append(f"{self.where}:{number}: truncated last line (cut mid-write), skipped")
                    self.log.skip("truncated_line")
                    continue
                raise self.fail(number, f"not JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(data, dict):
                raise self.fail(number, f"a Claude Code log line is a JSON object, got {type(data).__name__}")
            self._line(number, {str(k): v for k, v in data.items()})  # pyright: ignore[reportUnknownVariableType]
        for kind, first in sorted(self.log.unknown_first.items()):
            count = self.log.skipped[f"type:{kind}"]
            self.log.warnings.append(f"{self.where}:{first}: skipped {count} line(s) of unknown type {kind!r}")
        return self.log

    def _line(self, number: int, data: dict[str, Any]) -> None:
        log = self.log
        kind = data.get("type")
        for key in ("sessionId", "session_id"):
            if not log.session and isinstance(data.get(key), str):
                log.session = data[key]
        if not log.cwd and isinstance(data.get("cwd"), str):
            log.cwd = data["cwd"]
        if self.ended:
            log.skip("after_result")
            return
        if kind in IGNORED_TYPES:
            log.skip(f"type:{kind}")
        elif kind == "system":
            self._system(number, data)
        elif kind == "result":
            log.items.append(_Item("end", number))
            self.ended = True
        elif kind in ("user", "assistant"):
            if data.get("isSidechain") is True or data.get("parent_tool_use_id"):
                log.skip("sidechain")  # a subagent's own context, not this session's
                return
            message = data.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            if not isinstance(content, str | list):
                raise self.fail(number, f"{kind} line without message.content (a string or a list of blocks)")
            if kind == "assistant":
                self._assistant(number, message, content)  # type: ignore[arg-type]
            else:
                self._user(number, data, content)
        else:
            name = str(kind) if kind is not None else "<missing>"
            log.skip(f"type:{name}")
            log.unknown_first.setdefault(name, number)

    def _system(self, number: int, data: dict[str, Any]) -> None:
        subtype = data.get("subtype")
        if subtype == "init":
            self.log.items.append(_Item("init", number))
        elif subtype == "compact_boundary":
            self.log.items.append(_Item("compact", number))
        else:
            self.log.skip(f"system:{subtype}")

    def _blocks(self, number: int, content: list[object]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise self.fail(number, "each content block must be an object with a 'type'")
            out.append({str(k): v for k, v in block.items()})  # pyright: ignore[reportUnknownVariableType]
        return out

    def _assistant(self, number: int, message: dict[str, Any], content: str | list[object]) -> None:
        mid = message.get("id")
        mid = mid if isinstance(mid, str) else f"line{number}"
        if mid not in self.message_ids:  # one API response can span several lines, one block each
            self.message_ids.add(mid)
            self.log.items.append(_Item("call", number, ident=mid))
        if isinstance(content, str):
            if content.strip():
                self.log.items.append(_Item("text", number, text=content))
            return
        for block in self._blocks(number, content):
            btype = block["type"]
            if btype == "text":
                if isinstance(block.get("text"), str) and block["text"].strip():
                    self.log.items.append(_Item("text", number, text=block["text"]))
            elif btype == "tool_use":
                tid, name, args = block.get("id"), block.get("name"), block.get("input", {})
                if not isinstance(tid, str) or not tid or not isinstance(name, str) or not name.strip():
                    raise self.fail(number, "tool_use block needs a string 'id' and 'name'")
                args = args if isinstance(args, dict) else {"input": args}
                if name == "Skill" and isinstance(args.get("skill", args.get("command")), str):
                    self.last_skill = str(args.get("skill", args.get("command")))
                self.log.items.append(_Item("tool_use", number, ident=tid, name=name, args=args))
            else:
                self.log.skip(f"block:{btype}")  # thinking is not carried to the next model call

    def _user(self, number: int, data: dict[str, Any], content: str | list[object]) -> None:
        log = self.log
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else self._blocks(number, content)
        texts: list[str] = []
        for block in blocks:
            if block["type"] == "tool_result":
                tid = block.get("tool_use_id")
                if not isinstance(tid, str) or not tid:
                    raise self.fail(number, "tool_result block needs a string 'tool_use_id'")
                text = _block_text(block.get("content", ""))
                log.items.append(
                    _Item("tool_result", number, text=text, ident=tid, is_error=bool(block.get("is_error")))
                )
            elif block["type"] == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            else:
                texts.append(f"[{block['type']}]")
        if not texts:
            return
        text = "\n".join(texts)
        for path, body in _CLAUDE_MD.findall(text):
            if body.strip():
                log.items.append(_Item("claude_md", number, text=body.strip(), ident=path))
        if data.get("isCompactSummary") is True:
            log.items.append(_Item("text", number, text=text, name="summary"))
        elif text.lstrip().startswith(SKILL_PREFIX):
            first = text.lstrip().splitlines()[0][len(SKILL_PREFIX) :].strip()
            name = Path(first).name or self.last_skill or "skill"  # the skill's directory names it
            log.items.append(_Item("skill", number, text=text, name=name))
        elif data.get("isMeta") is True or data.get("isSynthetic") is True:
            log.skip("meta")
        elif _COMMAND.match(text):
            log.skip("command")  # a slash command's echo or output
        elif text.strip().startswith("[Request interrupted"):
            log.skip("interrupt")
        else:
            prompt = _REMINDER.sub("", text).strip()
            if prompt:
                log.items.append(_Item("prompt", number, text=prompt))
            else:
                log.skip("reminder_only")


# ---------------------------------------------------------------------------------------------- writing the trace


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug[:limit].rstrip("-._") or "x"


def _session_id(text: str) -> str:
    sid = re.sub(r"[^A-Za-z0-9._:-]+", "-", text).lstrip("-._:")[:128]
    return sid if SESSION_ID_RE.match(sid) else "session"


def _signature(name: str, args: Mapping[str, object]) -> str:
    return name + "\x00" + json.dumps(args, sort_keys=True, separators=(",", ":"))


def _todos(value: object) -> list[dict[str, object]]:
    if not isinstance(value, list):
        return []
    return [{str(k): v for k, v in t.items()} for t in value if isinstance(t, dict)]  # pyright: ignore


def _plan(todos: object, goal: str) -> tuple[str, dict[str, str | list[str]]]:
    """TodoWrite's list as the plan page: a checklist, and the plan's floor fields (goal, current step)."""
    items = _todos(todos)
    lines = ["Todo list (TodoWrite)"]
    done: list[str] = []
    left: list[str] = []
    active: list[str] = []
    for todo in items:
        what = " ".join(str(todo.get("content", "")).split()) or "(unnamed step)"
        status = todo.get("status")
        lines.append(
            f"- [{'x' if status == 'completed' else ' '}] {what}" + (" (in progress)" * (status == "in_progress"))
        )
        (done if status == "completed" else left).append(what)
        if status == "in_progress":
            active.append(what)
    if not items:
        lines.append("(no steps)")
    current = (active or left or ["all steps done"])[0]
    return "\n".join(lines), {"goal": goal, "current_step": current, "steps_done": done, "steps_left": left}


class _Builder:
    """Items to trace records: pages, tools, an assembly per model call, boundaries."""

    def __init__(self, where: str, log: _Log, session: str, turns: TurnUnit) -> None:
        self.where = where
        self.items = log.items
        self.cwd = log.cwd
        self.turns = turns
        self.skipped: dict[str, int] = {}
        self.warnings: list[str] = []
        self.records: list[Record] = [{"op": "session_start", "session": session, "project": self._project()}]
        self.turn = 1
        self.seq = 0
        self.fresh: dict[str, None] = {}  # pages that entered the conversation since the last assembly
        self.results: dict[str, tuple[str, str]] = {}  # signature -> (result page, result text) of the latest call
        self.pending: dict[str, _Item] = {}  # tool_use id -> its call, until the result arrives
        self.task = ""
        self.counts = dict.fromkeys(
            (
                "turns",
                "model_calls",
                "tool_calls",
                "unanswered_tool_calls",
                "repeats_demanded",
                "plan_updates",
                "skills",
                "claude_md_loads",
                "prompts",
                "compactions",
                "assemblies",
            ),
            0,
        )

    def _project(self) -> str:
        return _session_id(self.cwd.strip("/").replace("/", "-")) if self.cwd.strip("/") else "default"

    def _next_id(self, prefix: str, suffix: str) -> str:
        self.seq += 1
        return f"{prefix}/{self.seq:04d}-{suffix}"

    def _page(self, page_id: str, page_type: str, content: str, **extra: object) -> None:
        text = _clean(content)
        page: Record = {"page_id": page_id, "type": page_type, "content": text if text.strip() else "(empty)", **extra}
        self.records.append({"op": "page", "turn": self.turn, "page": page})
        self.fresh[page_id] = None

    def build(self) -> list[Record]:
        groups = self._groups()
        for index, group in enumerate(groups):
            self.turn = index + 1
            for position, item in enumerate(group):
                if item.kind == "call":
                    self._assemble(group[position:])
                self._item(item)
        self._unanswered()
        self.counts["turns"] = len(groups)
        self.records.append({"op": "session_end", "turn": self.turn})
        return self.records

    def _groups(self) -> list[list[_Item]]:
        """The log cut into turns: at each prompt (and stream-json's init, its -p prompt), or each model call."""
        starts = ("prompt", "init") if self.turns == "prompt" else ("call",)
        substantive = ("prompt", "call") if self.turns == "prompt" else ("call",)  # init alone is no turn yet
        groups: list[list[_Item]] = [[]]
        for item in self.items:
            if item.kind in starts and any(i.kind in substantive for i in groups[-1]):
                groups.append([])
            groups[-1].append(item)
        return groups

    def _assemble(self, rest: Sequence[_Item]) -> None:
        """A model call's context: what is new since the last call, and the earlier result of each unchanged
        repeat this call issues (``rest`` starts at the call; its results arrive before the next call)."""
        end = next((i for i, item in enumerate(rest) if i and item.kind == "call"), len(rest))
        window = rest[:end]
        answers = {i.ident: i.text for i in window if i.kind == "tool_result"}
        wanted = dict(self.fresh)
        for item in window:
            if item.kind != "tool_use" or item.name not in IDEMPOTENT_TOOLS:
                continue
            earlier = self.results.get(_signature(item.name, item.args))
            if earlier is not None and answers.get(item.ident) == earlier[1] and earlier[0] not in wanted:
                wanted[earlier[0]] = None
                self.counts["repeats_demanded"] += 1
        for page_id in wanted:
            self.records.append({"op": "demand", "turn": self.turn, "page_id": page_id, "fidelity": "full"})
        self.records.append({"op": "assemble", "turn": self.turn})
        self.counts["assemblies"] += 1
        self.fresh = {}

    def _item(self, item: _Item) -> None:
        kind = item.kind
        if kind == "call":
            self.counts["model_calls"] += 1
        elif kind == "prompt":
            self.counts["prompts"] += 1
            if not self.task:
                self.task = item.text
                self._page("task", "constraint", item.text)
            else:
                self._page(self._next_id("conv", "user"), "conversation", item.text)
        elif kind == "text":
            self._page(self._next_id("conv", item.name or "assistant"), "conversation", item.text)
        elif kind == "skill":
            self.counts["skills"] += 1
            self._page(f"skill/{_slug(item.name)}", "constraint", item.text)
        elif kind == "claude_md":
            self.counts["claude_md_loads"] += 1
            self._page(f"boot/{_slug(item.ident.strip('/'), 100)}", "bootstrap", item.text)
        elif kind == "compact":
            self.counts["compactions"] += 1
            self.records.append({"op": "compaction", "turn": self.turn})
            self.fresh = {}  # what came before is now the summary, the next page in
        elif kind == "tool_use":
            self.pending[item.ident] = item
            if item.name == "TodoWrite":
                goal = " ".join(self.task.split())[:160] or "finish the session's todo list"
                content, fields = _plan(item.args.get("todos"), goal)
                self._page("plan/todo", "plan", content, fields=fields)
                self.counts["plan_updates"] += 1
        elif kind == "tool_result":
            self._result(item)

    def _result(self, item: _Item) -> None:
        call = self.pending.pop(item.ident, None)
        if call is None:
            self.skipped["orphan_result"] = self.skipped.get("orphan_result", 0) + 1  # its call is not in the log
            return
        page_id = self._next_id("ev", _slug(call.name, 40))
        self._page(page_id, "evidence", item.text or "(empty result)")
        self.records.append(_tool_record(self.turn, call, page_id))
        self.counts["tool_calls"] += 1
        self.results[_signature(call.name, call.args)] = (page_id, item.text)
        path = call.args.get("file_path")
        if call.name == "Read" and isinstance(path, str) and path.endswith("CLAUDE.md") and not item.is_error:
            body = _LINE_NUMBER.sub("", _REMINDER.sub("", item.text)).strip()
            if body:
                self._item(_Item("claude_md", item.line, text=body, ident=path))

    def _unanswered(self) -> None:
        for call in self.pending.values():
            self.records.append(_tool_record(self.turn, call))
            self.counts["tool_calls"] += 1
            self.counts["unanswered_tool_calls"] += 1
            self.warnings.append(f"{self.where}:{call.line}: {call.name} call has no tool_result in the log")
        self.pending = {}


def _tool_record(turn: int, call: _Item, result_page: str | None = None) -> Record:
    """A trace tool event; a write-like call (any tool not in IDEMPOTENT_TOOLS) says ``"idempotent": false``, so
    the replay, like the hook adapter, never answers its repeat from memory and lets it invalidate what it changed."""
    record: Record = {"op": "tool", "turn": turn, "name": call.name, "args": _clean_value(dict(call.args))}
    if result_page is not None:
        record["result_page"] = result_page
    if call.name not in IDEMPOTENT_TOOLS:
        record["idempotent"] = False
    return record


# ---------------------------------------------------------------------------------------------- public API


def convert_lines(
    lines: Sequence[str],
    where: str,
    stem: str | None = None,
    turns: TurnUnit = "prompt",
    ends_with_newline: bool = True,
) -> Converted:
    """Convert one log given as lines; ``where`` names it in messages, ``stem`` names the output file."""
    log = _Reader(where).read(lines, ends_with_newline)
    if not any(i.kind in ("prompt", "call", "tool_use", "init") for i in log.items):
        seen = ", ".join(f"{k}={v}" for k, v in sorted(log.skipped.items())) or "no lines"
        raise ConvertError(f"{where}: no Claude Code messages found ({seen}); is this a transcript or stream-json log?")
    stem = stem if stem is not None else Path(where).stem
    session = _session_id(log.session or stem)
    builder = _Builder(where, log, session, turns)
    records = builder.build()
    warnings = [*log.warnings, *builder.warnings]
    if any(i.kind == "init" for i in log.items) and log.items[-1].kind != "end":  # stream-json ends with a result
        warnings.append(f"{where}: no final 'result' line (the log may be cut short); session_end added")
    skipped = dict(log.skipped)
    for reason, count in builder.skipped.items():
        skipped[reason] = skipped.get(reason, 0) + count
    name = _slug(stem, 100) + ".jsonl"
    text = dump_events(records)
    try:
        trace = parse_lines(text.splitlines(), name)
    except TraceError as exc:  # a converter defect, never the user's input: say so
        raise ConvertError(f"{where}: the converted trace does not validate ({exc}); please report this") from None
    return Converted(where, name, session, tuple(records), trace, builder.counts, skipped, tuple(warnings))


def convert_file(path: str | Path, turns: TurnUnit = "prompt") -> Converted:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConvertError(f"{p}: cannot read ({exc.strerror})") from None
    lines: list[str] = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConvertError(
                f"{p}:{number}: not UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1})"
            ) from None
    if lines and lines[-1] == "":
        lines.pop()
    return convert_lines(lines, str(p), p.stem, turns, ends_with_newline=raw.endswith(b"\n"))


def convert(paths: Iterable[str | Path], turns: TurnUnit = "prompt") -> list[Converted]:
    """One trace per log, in the order given; output names are made unique. Raises ConvertError on a bad log."""
    return _unique([convert_file(p, turns) for p in paths])


def _unique(items: list[Converted]) -> list[Converted]:
    seen: set[str] = set()
    out: list[Converted] = []
    for c in items:
        name, n = c.name, 1
        while name in seen:
            n += 1
            name = f"{c.name.removesuffix('.jsonl')}-{n}.jsonl"
        seen.add(name)
        out.append(c if name == c.name else replace(c, name=name))
    return out


# ---------------------------------------------------------------------------------------------- CLI


def register(subparsers: Any) -> None:
    """Adds ``from-claude-code`` under the ``trace`` verb (``replay/cli.py`` mounts it)."""
    p = subparsers.add_parser(
        "from-claude-code",
        help="convert Claude Code transcripts and stream-json logs into replay traces",
        description="One DESIGN section 8 trace per session log (~/.claude/projects/*/*.jsonl or "
        "'claude -p --output-format stream-json' output). Replay them with 'clawvm-mcp replay'.",
    )
    p.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="log files, or directories of *.jsonl logs")
    p.add_argument("--out", type=Path, required=True, help="directory for the traces (created if missing)")
    p.add_argument(
        "--turns",
        choices=TURN_UNITS,
        default="prompt",
        help="prompt: a turn per user prompt (default); step: a turn per model call. Either way every model "
        "call is one assembly; turns set how recency decays",
    )
    p.set_defaults(func=cmd_from_claude_code)


def _logs(args: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for a in args:
        out.extend(sorted(a.glob("*.jsonl")) if a.is_dir() else [a])
    return out


def _summary(path: Path, c: Converted) -> str:
    n = c.counts
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(c.skipped.items()))
    return (
        f"{path}: {n['turns']} turns, {n['tool_calls']} tool calls ({n['repeats_demanded']} repeats demanded), "
        f"{n['plan_updates']} plan updates, {n['skills']} skills, {n['claude_md_loads']} CLAUDE.md loads, "
        f"{n['compactions']} compactions" + (f"; skipped: {skipped}" if skipped else "")
    )


def cmd_from_claude_code(args: argparse.Namespace) -> int:
    logs = _logs(args.logs)
    if not logs:
        print(f"Error: no *.jsonl logs in {', '.join(map(str, args.logs))}", file=sys.stderr)
        return 2
    if args.out.exists() and not args.out.is_dir():
        print(f"Error: --out {args.out} exists and is not a directory", file=sys.stderr)
        return 2
    done: list[Converted] = []
    failed = 0
    for log in logs:
        try:
            done.append(convert_file(log, args.turns))
        except ConvertError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            failed += 1
    done = _unique(done)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for c in done:
            (args.out / c.name).write_text(c.text(), encoding="utf-8")
    except OSError as exc:
        print(f"Error: cannot write to {args.out} ({exc.strerror})", file=sys.stderr)
        return 2
    for c in done:  # after every file is written: a closed stdout must not cost a trace
        for warning in c.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(_summary(args.out / c.name, c))
    return 2 if failed else 0
