"""The JSONL trace format (DESIGN section 8): parsing and validation with line-numbered errors.

A trace is checked completely before anything runs, so a replay never stops halfway through a bad file. Every
bad trace gets a ``file:line:`` error in bounded time and memory: the file is read one bounded line at a time,
and sizes, nesting, turns (each costs the driver a ``turn_end``) and events have limits, checked as they come.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..engine.session import PROJECT_ID_RE, SESSION_ID_RE
from ..errors import ClawVMError
from ..pages import MAX_PAGE_BYTES, PAGE_ID_RE, PAGE_TYPES, PINS, SCOPES, TYPE_POLICIES, PageType, Pin, Scope

Op = Literal[
    "session_start", "page", "demand", "tool", "recall", "assemble", "compaction", "reset", "flush", "session_end"
]
OPS: tuple[Op, ...] = get_args(Op)
Boundary = Literal["compaction", "reset", "flush", "session_end"]
BOUNDARIES: tuple[Boundary, ...] = get_args(Boundary)
Backend = Literal["ok", "denied", "error"]
LEVELS = ("pointer", "structured", "compressed", "full")
# sizes filled in when a token-only page omits a level, as fractions of its full size (our decision)
LEVEL_SHARE = {"compressed": 1 / 3, "structured": 1 / 5, "pointer": 1 / 12}
# limits (our decision): far above any real trace (the workloads are ~20 KB, a converted Claude Code session a few
# hundred), low enough that checking the worst file takes seconds and tens of MB, never minutes and gigabytes
MAX_LINE_BYTES = 1 << 20  # a page's content is at most MAX_PAGE_BYTES; JSON escaping can grow it six-fold
MAX_TRACE_BYTES = 32 << 20
MAX_EVENTS = 100_000
MAX_DEPTH = 32  # JSON nesting of one line (tool args included)
MAX_TURN = 100_000
MAX_TURNS = 200_000  # summed over sessions: the driver reports every turn between two events as a turn_end
MAX_BUDGET = 2_000_000  # the engine's default max_budget
MAX_TOKENS = 10_000_000  # one representation of one page
MAX_TOOL_NAME = 128
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # strict UTF-8 decoding leaves escapes as their only source

_KEYS: dict[str, frozenset[str]] = {
    "session_start": frozenset({"session", "budget", "project"}),
    "page": frozenset({"turn", "page", "dirty"}),
    "demand": frozenset({"turn", "page_id", "fidelity"}),
    "tool": frozenset({"turn", "name", "args", "result_page", "idempotent"}),
    "recall": frozenset({"turn", "query", "backend", "expect", "type"}),
    "assemble": frozenset({"turn"}),
    **{b: frozenset({"turn"}) for b in BOUNDARIES},
}
_PAGE_KEYS = frozenset(
    {"page_id", "type", "content", "tokens", "pin", "scope", "base_utility", "recompute_cost", "fields"}
)


class TraceError(ClawVMError, ValueError):
    """A bad trace; the message starts with ``file:line:`` so an editor can jump to it."""


@dataclass(frozen=True, slots=True)
class PageSpec:
    page_id: str
    type: PageType
    content: str | None = None
    tokens: Mapping[str, int] | None = None
    pin: Pin | None = None
    scope: Scope | None = None
    base_utility: float | None = None
    recompute_cost: float | None = None
    fields: Mapping[str, str | list[str]] | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One trace line. Only the attributes of its ``op`` are meaningful; the rest keep their defaults."""

    op: Op
    line: int
    session: str
    turn: int = 0
    budget: int | None = None
    project: str = "default"
    page: PageSpec | None = None
    dirty: bool = False
    page_id: str = ""
    fidelity: str = "full"
    name: str = ""
    args: Mapping[str, object] = field(default_factory=lambda: {})
    result_page: str | None = None
    idempotent: bool = True  # a tool event's: false for a write-like call, never answered from memory
    query: str = ""
    backend: Backend = "ok"
    expect: tuple[str, ...] = ()
    recall_type: PageType | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    events: tuple[Event, ...]

    @property
    def sessions(self) -> int:
        return sum(1 for e in self.events if e.op == "session_start")

    @property
    def has_token_pages(self) -> bool:
        return any(e.page is not None and e.page.tokens is not None for e in self.events)

    @property
    def first_utility(self) -> Event | None:
        """The first page event that sets ``base_utility`` or ``recompute_cost`` (None: the trace sets neither)."""
        return next(
            (
                e
                for e in self.events
                if e.page is not None and (e.page.base_utility is not None or e.page.recompute_cost is not None)
            ),
            None,
        )

    @property
    def result_pages(self) -> frozenset[str]:
        return frozenset(e.result_page for e in self.events if e.op == "tool" and e.result_page)


def full_tokens(spec: PageSpec) -> dict[str, int]:
    """All four sizes of a token-only page, missing levels derived from ``full`` (pointer at most 8)."""
    assert spec.tokens is not None
    full = spec.tokens["full"]
    out = {"full": full}
    for level, share in LEVEL_SHARE.items():
        default = max(1, round(full * share))
        out[level] = spec.tokens.get(level, min(default, 8) if level == "pointer" else default)
    return out


class _Line:
    def __init__(self, where: str, data: Mapping[str, object]) -> None:
        self.where = where
        self.data = data

    def fail(self, message: str) -> TraceError:
        return TraceError(f"{self.where}: {message}")

    def integer(self, key: str, default: int | None = None, minimum: int = 0, maximum: int = MAX_TURN) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
            raise self.fail(f"{key!r} must be an integer from {minimum} to {maximum}, got {_shown(value)}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key!r} must be a non-empty string, got {_shown(value)}")
        return value

    def page_id(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not PAGE_ID_RE.match(value):
            raise self.fail(f"{key!r} must be a page id matching {PAGE_ID_RE.pattern}, got {_shown(value)}")
        return value


def _shown(value: object) -> str:
    """A value for an error message: its repr, cut to 80 characters (a bad value may be a megabyte)."""
    text = (
        repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"an integer of {len(str(value))} digits"
    )
    return text if len(text) <= 80 else text[:77] + "..."


def _check_values(line: _Line, data: object) -> None:
    """Nesting at most MAX_DEPTH, and text the engine can store (no lone surrogates from ``\\ud800`` escapes)."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise line.fail(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)  # pyright: ignore
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)  # pyright: ignore
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise line.fail(
                    f"text holds a lone surrogate (U+{ord(value[exc.start]):04X}), not valid Unicode"
                ) from None


def _fields(line: _Line, page_id: str, page_type: PageType, raw: object) -> dict[str, str | list[str]] | None:
    """Fields known to the page type, each of its kind (a string, or a list of strings), within the page limit."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise line.fail(f"page {page_id!r}: 'fields' must be an object, got {_shown(raw)}")
    spec = TYPE_POLICIES[page_type].fields
    out: dict[str, str | list[str]] = {}
    for key, value in raw.items():  # pyright: ignore[reportUnknownVariableType]
        kind = spec.get(str(key))
        if kind is None:
            raise line.fail(
                f"page {page_id!r}: unknown field {_shown(key)} for type {page_type} (use {', '.join(spec)})"
            )
        if kind == "str" and not isinstance(value, str):
            raise line.fail(f"page {page_id!r}: field {_shown(key)} must be a string, got {_shown(value)}")
        if kind == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):  # pyright: ignore
            raise line.fail(f"page {page_id!r}: field {_shown(key)} must be a list of strings, got {_shown(value)}")
        out[str(key)] = value  # pyright: ignore[reportUnknownArgumentType]
    if len(json.dumps(out, ensure_ascii=False).encode()) > MAX_PAGE_BYTES:
        raise line.fail(f"page {page_id!r}: fields are larger than a page may be ({MAX_PAGE_BYTES} bytes)")
    return out


def _number(line: _Line, page: Mapping[str, object], key: str) -> float | None:
    value = page.get(key)
    if value is None:
        return None
    # NaN passes "< 0" and JSON in Python accepts it; it would make every ordering by utility undefined
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise line.fail(f"page {key!r} must be a finite non-negative number, got {_shown(value)}")
    return float(value)


def _page(line: _Line, raw: object) -> PageSpec:
    if not isinstance(raw, dict):
        raise line.fail("'page' must be an object with page_id, type and content or tokens")
    page: dict[str, object] = {str(k): v for k, v in raw.items()}  # pyright: ignore[reportUnknownVariableType]
    unknown = sorted(set(page) - _PAGE_KEYS)
    if unknown:
        raise line.fail(f"unknown page key {_shown(unknown[0])} (allowed: {', '.join(sorted(_PAGE_KEYS))})")
    page_id = line.page_id("page_id", page.get("page_id"))
    page_type = page.get("type")
    if page_type not in PAGE_TYPES:
        raise line.fail(f"page type must be one of {', '.join(PAGE_TYPES)}, got {_shown(page_type)}")
    content, tokens = page.get("content"), page.get("tokens")
    if (content is None) == (tokens is None):
        raise line.fail(f"page {page_id!r} needs exactly one of 'content' or 'tokens'")
    if content is not None and (not isinstance(content, str) or not content.strip()):
        raise line.fail(f"page {page_id!r}: 'content' must be a non-empty string")
    if isinstance(content, str) and len(content.encode()) > MAX_PAGE_BYTES:
        size = len(content.encode())
        raise line.fail(f"page {page_id!r}: content is {size} bytes; a page holds at most {MAX_PAGE_BYTES}")
    sizes: dict[str, int] | None = None
    if tokens is not None:
        if not isinstance(tokens, dict) or "full" not in tokens:
            raise line.fail(f"page {page_id!r}: 'tokens' must be an object with at least 'full'")
        sizes = {}
        for level, n in tokens.items():  # pyright: ignore[reportUnknownVariableType]
            if level not in LEVELS:
                raise line.fail(f"page {page_id!r}: unknown level {_shown(level)} in tokens (use {', '.join(LEVELS)})")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_TOKENS:
                raise line.fail(
                    f"page {page_id!r}: tokens[{_shown(level)}] must be an integer from 1 to {MAX_TOKENS}, got {_shown(n)}"
                )
            sizes[str(level)] = n
    pin, scope = page.get("pin"), page.get("scope")
    if pin is not None and pin not in PINS:
        raise line.fail(f"page {page_id!r}: pin must be one of {', '.join(PINS)}, got {_shown(pin)}")
    if scope is not None and scope not in SCOPES:
        raise line.fail(f"page {page_id!r}: scope must be one of {', '.join(SCOPES)}, got {_shown(scope)}")
    fields = _fields(line, page_id, page_type, page.get("fields"))  # type: ignore[arg-type]
    return PageSpec(
        page_id=page_id,
        type=page_type,  # type: ignore[arg-type]
        content=content if isinstance(content, str) else None,
        tokens=sizes,
        pin=pin,  # type: ignore[arg-type]
        scope=scope,  # type: ignore[arg-type]
        base_utility=_number(line, page, "base_utility"),
        recompute_cost=_number(line, page, "recompute_cost"),
        fields=fields,
    )


def _event(line: _Line, number: int, session: str | None, last_turn: int) -> Event:
    data = line.data
    raw_op = data.get("op")
    if raw_op not in OPS:
        raise line.fail(f"unknown op {_shown(raw_op)} (use one of {', '.join(OPS)})")
    op: Op = raw_op  # type: ignore[assignment]
    unknown = sorted(set(data) - _KEYS[str(op)] - {"op"})
    if unknown:
        raise line.fail(f"unknown key {_shown(unknown[0])} for op {op!r}")
    if op == "session_start":
        sid = line.text("session")
        if not SESSION_ID_RE.match(sid):
            raise line.fail(f"session id {_shown(sid)} must match {SESSION_ID_RE.pattern}")
        budget = line.integer("budget", minimum=1, maximum=MAX_BUDGET) if "budget" in data else None
        project = line.text("project", "default")
        if not PROJECT_ID_RE.match(project):
            raise line.fail(f"project id {_shown(project)} must match {PROJECT_ID_RE.pattern}")
        return Event("session_start", number, sid, budget=budget, project=project)
    if session is None:
        raise line.fail(f"op {op!r} before any session_start")
    turn = line.integer("turn")
    if turn < last_turn:
        raise line.fail(f"turn {turn} goes backwards (previous event was at turn {last_turn})")
    if op == "page":
        dirty = data.get("dirty", False)
        if not isinstance(dirty, bool):
            raise line.fail(f"'dirty' must be true or false, got {_shown(dirty)}")
        return Event(op, number, session, turn=turn, page=_page(line, data.get("page")), dirty=dirty)
    if op == "demand":
        fidelity = data.get("fidelity", "full")
        if fidelity not in LEVELS:
            raise line.fail(f"fidelity must be one of {', '.join(LEVELS)}, got {_shown(fidelity)}")
        page_id = line.page_id("page_id", data.get("page_id"))
        return Event(op, number, session, turn=turn, page_id=page_id, fidelity=str(fidelity))
    if op == "tool":
        args = data.get("args", {})
        if not isinstance(args, dict):
            raise line.fail(f"'args' must be an object, got {_shown(args)}")
        name = line.text("name")
        if len(name) > MAX_TOOL_NAME:
            raise line.fail(f"tool name is {len(name)} characters; at most {MAX_TOOL_NAME}")
        result = data.get("result_page")
        result_page = None if result is None else line.page_id("result_page", result)
        idempotent = data.get("idempotent", True)
        if not isinstance(idempotent, bool):
            raise line.fail(f"'idempotent' must be true or false, got {_shown(idempotent)}")
        return Event(
            op,
            number,
            session,
            turn=turn,
            name=name,
            args=args,  # pyright: ignore[reportUnknownArgumentType]
            result_page=result_page,
            idempotent=idempotent,
        )
    if op == "recall":
        backend = data.get("backend", "ok")
        if backend not in get_args(Backend):
            raise line.fail(f"backend must be ok, denied or error, got {_shown(backend)}")
        expect = data.get("expect", [])
        if not isinstance(expect, list):
            raise line.fail("'expect' must be a list of page ids")
        rtype = data.get("type")
        if rtype is not None and rtype not in PAGE_TYPES:
            raise line.fail(f"recall type must be one of {', '.join(PAGE_TYPES)}, got {_shown(rtype)}")
        return Event(
            op,
            number,
            session,
            turn=turn,
            query=line.text("query"),
            backend=backend,  # type: ignore[arg-type]
            expect=tuple(line.page_id("expect", x) for x in expect),  # pyright: ignore[reportUnknownVariableType]
            recall_type=rtype,  # type: ignore[arg-type]
        )
    return Event(op, number, session, turn=turn)


def parse_lines(lines: Iterable[str], name: str = "<trace>") -> Trace:
    """Parse and validate; raises TraceError naming the first bad line."""
    return _parse(((n, _bounded(name, n, text)) for n, text in enumerate(lines, start=1)), name)


def _bounded(name: str, number: int, text: str) -> str:
    if len(text) > MAX_LINE_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise TraceError(f"{name}:{number}: line is longer than {MAX_LINE_BYTES} bytes")
    return text


def _decoded(name: str, number: int, raw: bytes) -> str:
    if len(raw) > MAX_LINE_BYTES:
        raise TraceError(
            f"{name}:{number}: line is longer than {MAX_LINE_BYTES} bytes (a page holds at most {MAX_PAGE_BYTES})"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TraceError(
            f"{name}:{number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})"
        ) from None
    return text.removeprefix("\ufeff") if number == 1 else text


def _lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """The file's lines, split on newline only (JSON strings may hold U+2028), each read with a bounded
    ``readline`` so that one huge line never lands in memory."""
    with path.open("rb") as fh:
        number = total = 0
        while raw := fh.readline(MAX_LINE_BYTES + 2):
            number += 1
            total += len(raw)
            if total > MAX_TRACE_BYTES:
                raise TraceError(f"{name}:{number}: the trace passes {MAX_TRACE_BYTES >> 20} MiB here; split it")
            yield number, _decoded(name, number, raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw)


def _json(where: str, text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise TraceError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # an integer of more digits than int() converts (sys.get_int_max_str_digits)
        raise TraceError(f"{where}: not a usable JSON number ({str(exc).split(':')[0]})") from None


def _parse(lines: Iterable[tuple[int, str]], name: str) -> Trace:
    events: list[Event] = []
    session: str | None = None
    last_turn: dict[str, int] = {}
    turns = 0
    result_defs: dict[str, int] = {}
    for number, text in lines:
        where = f"{name}:{number}"
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        data = _json(where, text)
        if not isinstance(data, dict):
            raise TraceError(f"{where}: each line must be a JSON object with an 'op'")
        line = _Line(where, {str(k): v for k, v in data.items()})  # pyright: ignore[reportUnknownVariableType]
        if text.count("{") + text.count("[") > MAX_DEPTH or _SURROGATE_ESCAPE.search(text):
            _check_values(line, data)  # only a line with that many brackets can nest that deep
        if len(events) >= MAX_EVENTS:
            raise line.fail(f"more than {MAX_EVENTS} events; split the trace")
        event = _event(line, number, session, last_turn.get(session or "", 0))
        if event.op == "session_start":
            session = event.session
        else:
            turns += event.turn - last_turn.get(event.session, 0)
            if turns > MAX_TURNS:
                raise line.fail(f"the sessions' turns add up to more than {MAX_TURNS}; split the trace")
            last_turn[event.session] = event.turn
        if event.page is not None:
            result_defs.setdefault(event.page.page_id, number)
        if event.op == "tool" and event.result_page is not None:
            if event.result_page not in result_defs:
                raise TraceError(f"{where}: result_page {event.result_page!r} is not defined by an earlier page event")
        events.append(event)
    if not events:
        raise TraceError(f"{name}: empty trace (it needs at least a session_start)")
    results = {e.result_page for e in events if e.op == "tool" and e.result_page}
    for event in events:
        if event.page is not None and event.page.page_id in results:
            where = f"{name}:{event.line}"
            if event.page.type != "evidence":
                raise TraceError(f"{where}: tool result page {event.page.page_id!r} must have type evidence")
            if event.dirty:
                raise TraceError(f"{where}: tool result page {event.page.page_id!r} cannot be dirty")
    return Trace(name, tuple(events))


def load_trace(path: str | Path) -> Trace:
    p = Path(path)
    try:
        return _parse(_lines(p, p.name), p.name)
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace ({exc.strerror})") from None


def dump_events(records: Iterable[Mapping[str, object]]) -> str:
    """Canonical JSONL (sorted keys, compact) so generated workloads are byte-stable."""
    return "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records)
