"""Tool-call mediation: a repeated call whose result is still resolvable gets the stored result back instead of
rerunning; a rerun forced by an unresolvable eviction is the duplicate_tool fault."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from typing import Literal

from ..journal import WriteRequest
from ..pages import Fidelity, Fields, Provenance
from ..store.base import ToolCall
from .results import ToolExecuteResult
from .runtime import Runtime
from .session import EngineError, SessionState
from .writeback import write


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (slug or "tool")[:40]


async def execute(rt: Runtime, state: SessionState, tool: str, signature: str, result: str | None) -> ToolExecuteResult:
    earlier = state.calls.get(signature)
    if earlier is not None:
        page = state.pages.get(earlier.evidence_page_id)
        if not earlier.has_result:
            if result is not None:
                await _record_result(rt, state, earlier, tool, signature, result)
            return ToolExecuteResult(
                status="recorded", call_id=earlier.call_id, evidence_page_id=earlier.evidence_page_id
            )
        resident = state.resident.get(earlier.evidence_page_id, Fidelity.NONE) > Fidelity.NONE
        if page is not None and not page.deleted and (rt.policy.pointer_resolution or resident):
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
    status: Literal["recorded", "duplicate_tool"] = "recorded" if earlier is None else "duplicate_tool"
    return ToolExecuteResult(status=status, call_id=call_id, evidence_page_id=evidence_id)


async def _record_result(
    rt: Runtime, state: SessionState, call: ToolCall, tool: str, signature: str, result: str
) -> None:
    fields: Fields = {"tool": tool, "args_digest": digest(signature)[:12]}
    prov = Provenance("tool", f"tool:{call.call_id}", state.turn)
    page = state.pages.get(call.evidence_page_id)
    content = result if result.strip() else "(empty result)"
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
