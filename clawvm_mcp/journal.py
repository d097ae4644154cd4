"""WritebackJournal rules: the five validation checks and the deterministic field merge (DESIGN section 4).

Pure functions over pages and plain values. The engine sequences them: ``check`` (schema, provenance, scope,
destructive ops) before the merge, ``check_invariants`` on the merged page after it; nothing here calls back.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from .pages import (
    MAX_PAGE_BYTES,
    PAGE_ID_RE,
    PAGE_TYPES,
    PINS,
    SCOPES,
    SOURCES,
    TYPE_POLICIES,
    Fields,
    Page,
    PageType,
    Pin,
    Provenance,
    Scope,
)

Op = Literal["create", "append", "merge", "set", "delete", "pin"]
ReasonCode = Literal[
    "SCHEMA_INVALID", "PROVENANCE_DANGLING", "SCOPE_DENIED", "DESTRUCTIVE_OP", "INVARIANT_VIOLATION", "STORE_BUSY"
]
CommitMode = Literal["now", "boundary"]
WRITE_OPS: tuple[Op, ...] = ("create", "append", "merge", "set", "delete")
ALL_OPS: tuple[Op, ...] = get_args(Op)


@dataclass(frozen=True, slots=True)
class Reason:
    code: ReasonCode
    detail: str


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """A typed update: what the harness asks for, before any check has run."""

    op: Op
    page_id: str
    provenance: Provenance | None
    type: PageType | None = None
    content: str | None = None
    fields: Fields | None = None
    base_version: int | None = None
    scope: Scope | None = None
    pin: Pin | None = None
    commit: CommitMode = "now"
    turn: int = 0
    # token counts per level that a replay trace prescribes instead of counting the derived texts
    tokens: Mapping[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        prov = self.provenance
        data: dict[str, object] = {
            "op": self.op,
            "page_id": self.page_id,
            "type": self.type,
            "content": self.content,
            "fields": self.fields,
            "base_version": self.base_version,
            "scope": self.scope,
            "pin": self.pin,
            "commit": self.commit,
            "turn": self.turn,
            "provenance": None if prov is None else {"source": prov.source, "ref": prov.ref, "turn": prov.turn},
        }
        if self.tokens is not None:
            data["tokens"] = dict(self.tokens)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WriteRequest:
        prov = data.get("provenance")
        provenance = None
        if isinstance(prov, dict):
            provenance = Provenance(prov["source"], prov["ref"], int(prov["turn"]))
        return cls(
            op=data["op"],
            page_id=str(data["page_id"]),
            provenance=provenance,
            type=data.get("type"),
            content=data.get("content"),
            fields=data.get("fields"),
            base_version=data.get("base_version"),
            scope=data.get("scope"),
            pin=data.get("pin"),
            commit=data.get("commit", "now"),
            turn=int(data.get("turn", 0)),
            tokens=data.get("tokens"),
        )


@dataclass(frozen=True, slots=True)
class ValidationContext:
    """What the checks before the merge may consult: plain values, so the journal calls back into nothing."""

    current: Page | None  # the page as the session sees it (staged updates applied); tombstones included
    committed_version: int
    live_pages: Container[str]  # ids of the session's live pages (provenance page:<id> must name one)
    tool_calls: Container[str]  # call ids of the session's recorded tool calls (provenance tool:<call_id>)
    can_write_project: bool
    budget: int
    max_page_bytes: int = MAX_PAGE_BYTES


def check_fields(page_type: PageType, fields: Mapping[str, object]) -> list[str]:
    problems: list[str] = []
    spec = TYPE_POLICIES[page_type].fields
    for name, value in fields.items():
        kind = spec.get(name)
        if kind is None:
            problems.append(f"unknown field {name!r} for type {page_type} (fields: {', '.join(spec)})")
        elif kind == "str" and not isinstance(value, str):
            problems.append(f"field {name!r} must be a string")
        elif kind == "list" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):  # pyright: ignore[reportUnknownVariableType]
            problems.append(f"field {name!r} must be a list of strings")
    return problems


def _schema(req: WriteRequest, ctx: ValidationContext) -> list[str]:
    out: list[str] = []
    if not PAGE_ID_RE.match(req.page_id):
        out.append(f"page_id {req.page_id!r} must match ^[a-z0-9][a-z0-9._/-]{{0,127}}$")
    if req.op not in ALL_OPS:
        out.append(f"unknown op {req.op!r}; use one of {', '.join(WRITE_OPS)}")
        return out
    live = ctx.current is not None and not ctx.current.deleted
    if req.type is not None and req.type not in PAGE_TYPES:
        out.append(f"unknown type {req.type!r}; use one of {', '.join(PAGE_TYPES)}")
        return out
    if req.scope is not None and req.scope not in SCOPES:
        out.append(f"unknown scope {req.scope!r}; use session or project")
    if req.pin is not None and req.pin not in PINS:
        out.append(f"unknown pin {req.pin!r}; use hard, soft or none")
    page_type = req.type or (ctx.current.type if ctx.current is not None else None)
    if req.op == "create":
        if page_type is None:
            out.append("create needs a type")
        if not (req.content or "").strip():
            out.append("create needs non-empty content")
    elif not live and req.op != "delete":
        out.append(f"no page {req.page_id!r} to {req.op}; use op 'create'")
    elif ctx.current is not None and req.type is not None and req.type != ctx.current.type:
        out.append(f"page {req.page_id!r} is a {ctx.current.type} page; its type cannot change to {req.type}")
    if req.op == "append" and not (req.content or "").strip() and not req.fields:
        out.append("append needs content or fields")
    if req.op == "merge" and not req.fields:
        out.append("merge needs fields (use append for text)")
    if req.op == "merge" and req.content:
        out.append("merge takes fields only; use append to add text")
    if req.op == "set" and req.content is None and req.fields is None:
        out.append("set needs content or fields")
    if req.op == "set" and req.content is not None and not req.content.strip():
        out.append("set needs non-empty content")
    if req.fields is not None and page_type is not None:
        out.extend(check_fields(page_type, req.fields))
    if req.tokens is not None and any(
        k not in ("pointer", "structured", "compressed", "full") or not isinstance(v, int) or v < 1
        for k, v in req.tokens.items()
    ):
        out.append("tokens maps pointer/structured/compressed/full to positive integers")
    size = len((req.content or "").encode("utf-8", "surrogatepass"))
    if live and ctx.current is not None and req.op == "append":
        size += len(ctx.current.content.encode("utf-8", "surrogatepass"))
    # fields are part of the page too: without this, 64 KiB of content could carry any amount in fields
    carried = [req.fields or {}]
    if live and ctx.current is not None and req.op in ("append", "merge", "set"):
        if req.op == "merge" or (req.op == "set" and req.content is None):
            size += len(ctx.current.content.encode("utf-8", "surrogatepass"))
        if req.op != "set" or req.fields is None:
            carried.append(ctx.current.explicit_fields)
    size += sum(len(json.dumps(f, ensure_ascii=False).encode("utf-8", "surrogatepass")) for f in carried if f)
    if size > ctx.max_page_bytes:
        out.append(f"page would be {size} bytes; the limit is {ctx.max_page_bytes} bytes per page")
    return out


def _provenance(req: WriteRequest, ctx: ValidationContext) -> list[str]:
    prov = req.provenance
    if prov is None:
        return ["provenance is required: {source, ref: page:<id>|tool:<call_id>|ext:<anything>, turn}"]
    if prov.source not in SOURCES:
        return [f"provenance source {prov.source!r} must be one of {', '.join(SOURCES)}"]
    kind, _, target = prov.ref.partition(":")
    if not target:
        return [f"provenance ref {prov.ref!r} must be page:<id>, tool:<call_id> or ext:<anything>"]
    if kind == "page" and target not in ctx.live_pages:
        return [f"provenance ref {prov.ref!r} names no page of this session"]
    if kind == "tool" and target not in ctx.tool_calls:
        return [f"provenance ref {prov.ref!r} names no recorded tool call of this session"]
    if kind not in ("page", "tool", "ext"):
        return [f"provenance ref {prov.ref!r} must start with page:, tool: or ext:"]
    return []


def _scope(req: WriteRequest, ctx: ValidationContext) -> list[str]:
    cur = ctx.current
    page_type = req.type or (cur.type if cur is not None else None)
    scope = req.scope or (cur.scope if cur is not None else None)
    if scope is None and page_type in TYPE_POLICIES:
        scope = TYPE_POLICIES[page_type].default_scope  # type: ignore[index]
    out: list[str] = []
    if cur is not None and not cur.deleted and req.scope is not None and req.scope != cur.scope:
        out.append(f"page {req.page_id!r} is {cur.scope}-scoped; scope cannot change")
    if scope == "project" and not ctx.can_write_project:
        out.append(f"this principal has no write grant for {scope}-scope pages of this project")
    return out


def _destructive(req: WriteRequest, ctx: ValidationContext) -> list[str]:
    live = ctx.current is not None and not ctx.current.deleted
    if req.op == "create" and live:
        return [
            f"page {req.page_id!r} exists (v{ctx.committed_version}); create never overwrites: use append, merge or set with base_version"
        ]
    if req.op in ("set", "delete"):
        if req.base_version is None:
            return [f"{req.op} needs base_version (current version is {ctx.committed_version})"]
        if req.base_version != ctx.committed_version:
            return [f"stale base_version {req.base_version}; current version is {ctx.committed_version}"]
    return []


def check(req: WriteRequest, ctx: ValidationContext) -> list[Reason]:
    """The checks that run before the merge: schema, provenance, scope and destructive ops. Every failing check is
    listed (a rejected write names all its faults). A SCHEMA_INVALID request is not merged at all."""
    reasons = [Reason("SCHEMA_INVALID", d) for d in _schema(req, ctx)]
    reasons += [Reason("PROVENANCE_DANGLING", d) for d in _provenance(req, ctx)]
    reasons += [Reason("SCOPE_DENIED", d) for d in _scope(req, ctx)]
    reasons += [Reason("DESTRUCTIVE_OP", d) for d in _destructive(req, ctx)]
    return reasons


def check_invariants(
    req: WriteRequest, current: Page | None, merged: Page | None, other_floors: int, budget: int
) -> list[Reason]:
    """The pin and min-fidelity rules, on the page the merge made (None for a delete or an unmerged request).
    ``other_floors`` is the floor tokens of the session's other hard-pinned pages (needed only when ``merged`` is
    hard-pinned), ``budget`` the session's."""
    out: list[str] = []
    if req.op == "delete" and current is not None and current.pin == "hard":
        out.append(f"page {req.page_id!r} is hard-pinned; unpin it before deleting")
    if merged is not None:
        if merged.type == "bootstrap" and merged.pin != "hard":
            out.append("bootstrap pages stay hard-pinned")
        missing = [f for f in merged.policy.floor_fields if not merged.fields.get(f)]
        if missing:
            out.append(f"structured form lacks {', '.join(missing)}, which the {merged.type} floor needs")
        if merged.pin == "hard":
            need = other_floors + merged.tokens_at(merged.at_least(merged.min_fidelity))
            if need > budget:
                out.append(f"hard-pinned floor set would need {need} tokens; the session budget is {budget}")
    return [Reason("INVARIANT_VIOLATION", d) for d in out]


def merge_fields(explicit: Fields, effective: Fields, update: Fields, op: Op) -> Fields:
    """append: text appended, lists extended; merge: lists union-append, scalars only if absent; set: replace."""
    if op == "set":
        return dict(update)
    out = dict(explicit)
    for name, value in update.items():
        have = out.get(name, effective.get(name))
        if isinstance(value, list):
            base = list(have) if isinstance(have, list) else []
            out[name] = base + [v for v in value if v not in base] if op == "merge" else base + value
        elif op == "append" and isinstance(have, str) and have:
            out[name] = f"{have} {value}"
        elif op == "append" or not have:
            out[name] = value
    return out
