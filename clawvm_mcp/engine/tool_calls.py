"""Tool-call mediation (DESIGN section 9, "tool results stay true"): an idempotent repeat whose stored result is
still valid gets it back instead of rerunning; a repeat that brings a different result stores it as a new version
(``updated``); a write-like call (one that is not idempotent) invalidates the stored results it may have changed,
so their next repeat is recorded afresh, never answered stale. A rerun forced by an unresolvable eviction is the
duplicate_tool fault."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

from ..journal import WriteRequest
from ..pages import Fidelity, Fields, Provenance
from ..store.base import ToolCall
from .results import ToolExecuteResult
from .runtime import Runtime
from .session import EngineError, SessionState
from .writeback import write

EMPTY_RESULT = "(empty result)"
# argument names whose values name files or folders a call reads or changes
_PATH_KEY = re.compile(r"path|file|dir|folder|cwd|notebook", re.IGNORECASE)


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (slug or "tool")[:40]


def _stored_text(result: str) -> str:
    return result if result.strip() else EMPTY_RESULT


def paths_of(args_json: str) -> frozenset[str]:
    """The file and folder names among a call's arguments (values of keys such as path, file_path, notebook_path),
    normalised without a trailing slash."""

    def walk(value: object, key: str) -> Iterator[str]:
        if isinstance(value, str) and _PATH_KEY.search(key) and value.strip():
            yield value.strip().rstrip("/") or "/"
        elif isinstance(value, dict):
            for k, v in value.items():  # pyright: ignore[reportUnknownVariableType]
                yield from walk(v, str(k))  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(value, list):
            for v in value:  # pyright: ignore[reportUnknownVariableType]
                yield from walk(v, key)

    return frozenset(walk(json.loads(args_json), ""))


def _overlap(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two calls touch the same file when a path of one is, or lies inside, a path of the other."""
    return any(x == y or x.startswith(y + "/") or y.startswith(x + "/") for x in a for y in b)


async def execute(
    rt: Runtime, state: SessionState, tool: str, signature: str, result: str | None, idempotent: bool
) -> ToolExecuteResult:
    earlier = state.calls.get(signature)
    if earlier is not None and idempotent:
        page = state.pages.get(earlier.evidence_page_id)
        if not earlier.has_result:  # recorded before its result came, or invalidated since: a normal call
            if result is not None:
                await _record_result(rt, state, earlier, tool, signature, result)
            return ToolExecuteResult(
                status="recorded", call_id=earlier.call_id, evidence_page_id=earlier.evidence_page_id
            )
        resident = state.resident.get(earlier.evidence_page_id, Fidelity.NONE) > Fidelity.NONE
        if page is not None and not page.deleted and (rt.policy.pointer_resolution or resident):
            if result is not None and _stored_text(result) != page.content:  # the world moved: keep the new truth
                await _record_result(rt, state, earlier, tool, signature, result)
                return ToolExecuteResult(
                    status="updated", call_id=earlier.call_id, evidence_page_id=earlier.evidence_page_id
                )
            state.observer.duplicate_signature += 1
            state.turn_demands.add(page.page_id)
            return ToolExecuteResult(
                status="duplicate_signature",
                call_id=earlier.call_id,
                evidence_page_id=page.page_id,
                stored_result=page.content,
            )
        fault = state.observer.fault(
            "duplicate_tool",
            state.turn,
            earlier.evidence_page_id,
            f"{tool} reran: its result was evicted without a resolvable pointer",
        )
        await rt.store.add_faults(state.session_id, [fault])
    call_id = "c" + digest(state.session_id, signature, str(len(state.call_ids)))[:15]
    evidence_id = earlier.evidence_page_id if earlier else f"ev/{_slug(tool)}/{digest(signature)[:12]}"
    call = ToolCall(
        state.session_id, call_id, signature, tool, signature.split("\x00", 1)[1], evidence_id, state.turn, False
    )
    state.calls[signature] = call
    state.call_ids.add(call_id)
    if result is None:
        await rt.store.add_tool_call(call)
    else:  # the call is persisted with its result, so a refused result leaves no half-recorded call behind
        try:
            await _record_result(rt, state, call, tool, signature, result)
        except EngineError:
            state.call_ids.discard(call_id)
            if earlier is None:
                state.calls.pop(signature, None)
            else:
                state.calls[signature] = earlier
            raise
    if not idempotent:
        await _invalidate(rt, state, call)
    status: Literal["recorded", "duplicate_tool"] = (
        "recorded" if earlier is None or not idempotent else "duplicate_tool"
    )
    return ToolExecuteResult(status=status, call_id=call_id, evidence_page_id=evidence_id)


async def _invalidate(rt: Runtime, state: SessionState, writer: ToolCall) -> None:
    """A write-like call may have changed what stored calls read: those naming a path it names, or, when it names
    none (a shell command), every stored result. Their next repeat is recorded afresh."""
    touched = paths_of(writer.args_json)
    for signature, call in sorted(state.calls.items()):
        if call.call_id == writer.call_id or not call.has_result:
            continue
        if touched and not _overlap(touched, paths_of(call.args_json)):
            continue
        stale = replace(call, has_result=False)
        state.calls[signature] = stale
        await rt.store.add_tool_call(stale)


async def _record_result(
    rt: Runtime, state: SessionState, call: ToolCall, tool: str, signature: str, result: str
) -> None:
    fields: Fields = {"tool": tool, "args_digest": digest(signature)[:12]}
    prov = Provenance("tool", f"tool:{call.call_id}", state.turn)
    page = state.pages.get(call.evidence_page_id)
    content = _stored_text(result)
    if page is None or page.deleted:
        req = WriteRequest("create", call.evidence_page_id, prov, "evidence", content, fields, turn=state.turn)
    else:
        req = WriteRequest(
            "set", call.evidence_page_id, prov, "evidence", content, fields, page.version, turn=state.turn
        )
    outcome = await write(rt, state, req)
    if outcome.status == "rejected":
        raise EngineError("could not store the tool result: " + "; ".join(r.detail for r in outcome.reasons))
    state.evicted.discard(call.evidence_page_id)  # the result is in hand again: demanding it is no refetch
    done = replace(call, has_result=True)
    state.calls[signature] = done
    await rt.store.add_tool_call(done)
