"""The JSONL trace format (DESIGN section 8): parsing and validation with line-numbered errors.

A trace is checked completely before anything runs, so a replay never stops halfway through a bad file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from ..engine.session import SESSION_ID_RE
from ..pages import PAGE_ID_RE, PAGE_TYPES, PINS, SCOPES, TYPE_POLICIES, PageType, Pin, Scope

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

_KEYS: dict[str, frozenset[str]] = {
    "session_start": frozenset({"session", "budget", "project"}),
    "page": frozenset({"turn", "page", "dirty"}),
    "demand": frozenset({"turn", "page_id", "fidelity"}),
    "tool": frozenset({"turn", "name", "args", "result_page"}),
    "recall": frozenset({"turn", "query", "backend", "expect", "type"}),
    "assemble": frozenset({"turn"}),
    **{b: frozenset({"turn"}) for b in BOUNDARIES},
}
_PAGE_KEYS = frozenset(
    {"page_id", "type", "content", "tokens", "pin", "scope", "base_utility", "recompute_cost", "fields"}
)


class TraceError(ValueError):
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

    def integer(self, key: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.fail(f"{key!r} must be an integer >= {minimum}, got {value!r}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{key!r} must be a non-empty string, got {value!r}")
        return value

    def page_id(self, key: str, value: object) -> str:
        if not isinstance(value, str) or not PAGE_ID_RE.match(value):
            raise self.fail(f"{key!r} must be a page id matching {PAGE_ID_RE.pattern}, got {value!r}")
        return value


def _number(line: _Line, page: Mapping[str, object], key: str) -> float | None:
    value = page.get(key)
    if value is None:
        return None
    # NaN passes "< 0" and JSON in Python accepts it; it would make every ordering by utility undefined
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise line.fail(f"page {key!r} must be a finite non-negative number, got {value!r}")
    return float(value)


def _page(line: _Line, raw: object) -> PageSpec:
    if not isinstance(raw, dict):
        raise line.fail("'page' must be an object with page_id, type and content or tokens")
    page: dict[str, object] = {str(k): v for k, v in raw.items()}  # pyright: ignore[reportUnknownVariableType]
    unknown = sorted(set(page) - _PAGE_KEYS)
    if unknown:
        raise line.fail(f"unknown page key {unknown[0]!r} (allowed: {', '.join(sorted(_PAGE_KEYS))})")
    page_id = line.page_id("page_id", page.get("page_id"))
    page_type = page.get("type")
    if page_type not in PAGE_TYPES:
        raise line.fail(f"page type must be one of {', '.join(PAGE_TYPES)}, got {page_type!r}")
    content, tokens = page.get("content"), page.get("tokens")
    if (content is None) == (tokens is None):
        raise line.fail(f"page {page_id!r} needs exactly one of 'content' or 'tokens'")
    if content is not None and (not isinstance(content, str) or not content.strip()):
        raise line.fail(f"page {page_id!r}: 'content' must be a non-empty string")
    sizes: dict[str, int] | None = None
    if tokens is not None:
        if not isinstance(tokens, dict) or "full" not in tokens:
            raise line.fail(f"page {page_id!r}: 'tokens' must be an object with at least 'full'")
        sizes = {}
        for level, n in tokens.items():  # pyright: ignore[reportUnknownVariableType]
            if level not in LEVELS:
                raise line.fail(f"page {page_id!r}: unknown level {level!r} in tokens (use {', '.join(LEVELS)})")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise line.fail(f"page {page_id!r}: tokens[{level!r}] must be a positive integer, got {n!r}")
            sizes[str(level)] = n
    pin, scope = page.get("pin"), page.get("scope")
    if pin is not None and pin not in PINS:
        raise line.fail(f"page {page_id!r}: pin must be one of {', '.join(PINS)}, got {pin!r}")
    if scope is not None and scope not in SCOPES:
        raise line.fail(f"page {page_id!r}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    fields = page.get("fields")
    if fields is not None and not isinstance(fields, dict):
        raise line.fail(f"page {page_id!r}: 'fields' must be an object")
    return PageSpec(
        page_id=page_id,
        type=page_type,  # type: ignore[arg-type]
        content=content if isinstance(content, str) else None,
        tokens=sizes,
        pin=pin,  # type: ignore[arg-type]
        scope=scope,  # type: ignore[arg-type]
        base_utility=_number(line, page, "base_utility"),
        recompute_cost=_number(line, page, "recompute_cost"),
        fields=fields,  # type: ignore[arg-type]
    )


def _event(line: _Line, session: str | None, last_turn: int) -> Event:
    data = line.data
    op = data.get("op")
    if op not in OPS:
        raise line.fail(f"unknown op {op!r} (use one of {', '.join(OPS)})")
    unknown = sorted(set(data) - _KEYS[str(op)] - {"op"})
    if unknown:
        raise line.fail(f"unknown key {unknown[0]!r} for op {op!r}")
    if op == "session_start":
        sid = line.text("session")
        if not SESSION_ID_RE.match(sid):
            raise line.fail(f"session id {sid!r} must match {SESSION_ID_RE.pattern}")
        budget = line.integer("budget", minimum=1) if "budget" in data else None
        return Event("session_start", 0, sid, budget=budget, project=line.text("project", "default"))
    if session is None:
        raise line.fail(f"op {op!r} before any session_start")
    turn = line.integer("turn")
    if turn < last_turn:
        raise line.fail(f"turn {turn} goes backwards (previous event was at turn {last_turn})")
    base = Event(op, 0, session, turn=turn)  # type: ignore[arg-type]
    if op == "page":
        dirty = data.get("dirty", False)
        if not isinstance(dirty, bool):
            raise line.fail(f"'dirty' must be true or false, got {dirty!r}")
        return _with(base, page=_page(line, data.get("page")), dirty=dirty)
    if op == "demand":
        fidelity = data.get("fidelity", "full")
        if fidelity not in LEVELS:
            raise line.fail(f"fidelity must be one of {', '.join(LEVELS)}, got {fidelity!r}")
        return _with(base, page_id=line.page_id("page_id", data.get("page_id")), fidelity=str(fidelity))
    if op == "tool":
        args = data.get("args", {})
        if not isinstance(args, dict):
            raise line.fail(f"'args' must be an object, got {args!r}")
        result = data.get("result_page")
        return _with(
            base,
            name=line.text("name"),
            args=args,
            result_page=None if result is None else line.page_id("result_page", result),
        )
    if op == "recall":
        backend = data.get("backend", "ok")
        if backend not in get_args(Backend):
            raise line.fail(f"backend must be ok, denied or error, got {backend!r}")
        expect = data.get("expect", [])
        if not isinstance(expect, list):
            raise line.fail("'expect' must be a list of page ids")
        rtype = data.get("type")
        if rtype is not None and rtype not in PAGE_TYPES:
            raise line.fail(f"recall type must be one of {', '.join(PAGE_TYPES)}, got {rtype!r}")
        return _with(
            base,
            query=line.text("query"),
            backend=backend,  # type: ignore[arg-type]
            expect=tuple(line.page_id("expect", x) for x in expect),
            recall_type=rtype,
        )  # type: ignore[arg-type]
    return base


def _with(event: Event, **changes: object) -> Event:
    from dataclasses import replace

    return replace(event, **changes)  # type: ignore[arg-type]


def parse_lines(lines: Iterable[str], name: str = "<trace>") -> Trace:
    """Parse and validate; raises TraceError naming the first bad line."""
    events: list[Event] = []
    session: str | None = None
    last_turn: dict[str, int] = {}
    result_defs: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        where = f"{name}:{number}"
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(data, dict):
            raise TraceError(f"{where}: each line must be a JSON object with an 'op'")
        line = _Line(where, {str(k): v for k, v in data.items()})  # pyright: ignore[reportUnknownVariableType]
        event = _event(line, session, last_turn.get(session or "", 0))
        event = _with(event, line=number)
        if event.op == "session_start":
            session = event.session
        else:
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
    for event in events:
        if event.page is not None and event.page.fields is not None:
            spec = TYPE_POLICIES[event.page.type].fields
            bad = sorted(set(event.page.fields) - set(spec))
            if bad:
                raise TraceError(f"{name}:{event.line}: unknown field {bad[0]!r} for type {event.page.type}")
    return Trace(name, tuple(events))


def load_trace(path: str | Path) -> Trace:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace ({exc.strerror})") from None
    return parse_lines(text.splitlines(), p.name)


def dump_events(records: Iterable[Mapping[str, object]]) -> str:
    """Canonical JSONL (sorted keys, compact) so generated workloads are byte-stable."""
    return "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records)
