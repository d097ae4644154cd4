"""Result models of the engine's operations. Pydantic (not MCP) so the server can return them as structured
output unchanged and the replay driver can serialise them the same way."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema

Outcome = Literal["hit", "no_match", "denied", "backend_error"]


class ReasonOut(BaseModel):
    code: str
    detail: str


class ProvenanceModel(BaseModel):
    source: Literal["user", "tool", "model", "harness", "import"]
    ref: str = Field(description="page:<page_id> | tool:<call_id> | ext:<anything>")
    turn: int = Field(default=0, ge=0, description="the harness turn the content came from (0 or more)")


class WriteResult(BaseModel):
    status: Literal["committed", "staged", "rejected"]
    page_id: str
    version: int = Field(description="committed version after this write (unchanged when staged or rejected)")
    txn_id: int
    reasons: list[ReasonOut] = Field(default_factory=lambda: [])


class PageView(BaseModel):
    page_id: str
    type: str
    scope: str
    pin: str
    min_fidelity: str
    version: int
    fidelity: str
    text: str
    tokens: int
    title: str
    fields: dict[str, str | list[str]]
    provenance: ProvenanceModel
    dirty: bool
    created_turn: int
    last_access_turn: int


class ReadResult(BaseModel):
    outcome: Outcome
    page: PageView | None = None
    detail: str = ""


class PageSummary(BaseModel):
    page_id: str
    type: str
    scope: str
    pin: str
    min_fidelity: str
    version: int
    dirty: bool
    title: str
    tokens_full: int


class ListResult(BaseModel):
    outcome: Outcome
    pages: list[PageSummary] = Field(default_factory=lambda: [])
    detail: str = ""


class RecallHit(BaseModel):
    page_id: str
    type: str
    title: str
    score: float  # BM25 (higher is better); results come best first
    matched_terms: int
    pointer: str


class RecallResult(BaseModel):
    outcome: Outcome
    results: list[RecallHit] = Field(default_factory=lambda: [])
    detail: str = ""


class AssembledPage(BaseModel):
    page_id: str
    level: str
    tokens: int
    reason: Literal["required", "pinned", "upgraded", "pointer-prefetch", "dropped"]


def _lean_item_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as a validator should walk it once per listed page: without pydantic's generated titles
    ("Page Id", ...) and without a ``type`` beside an ``enum`` of strings. It accepts exactly what ``schema``
    accepts; every keyword left out was one more step per page for a client that re-validates each result."""
    properties = {}
    for name, prop in schema["properties"].items():
        lean = {k: v for k, v in prop.items() if k != "title"}
        if "enum" in lean and lean.get("type") == "string" and all(isinstance(v, str) for v in lean["enum"]):
            del lean["type"]
        properties[name] = lean
    return {**{k: v for k, v in schema.items() if k != "title"}, "properties": properties}


# The item schema written out in place of a "$ref": a client that re-validates structured output (the Python SDK
# does, on every call) resolved the reference once per listed page, ~40% of a 170-page result's validation; the
# lean form takes another ~8% off what is left (a typed check per field per page is the rest of it).
_ASSEMBLED_PAGES_SCHEMA = {"type": "array", "items": _lean_item_schema(AssembledPage.model_json_schema())}


class AssembleResult(BaseModel):
    prompt: str
    pages: Annotated[list[AssembledPage], WithJsonSchema(_ASSEMBLED_PAGES_SCHEMA)] = Field(
        description="the decision trace: pages shown or unmet (trace=shown), or every page (trace=full)"
    )
    dropped: int = Field(default=0, description="pages of the table left out of the prompt and not listed")
    tokens_used: int
    budget: int
    unmet_required: list[str]
    physical_insufficiency: bool
    shortfall_tokens: int
    turn: int


class ToolExecuteResult(BaseModel):
    status: Literal["recorded", "duplicate_signature", "duplicate_tool", "updated"]
    call_id: str
    evidence_page_id: str
    stored_result: str | None = None


class FaultOut(BaseModel):
    kind: str
    turn: int
    subject: str
    detail: str = ""


class LifecycleResult(BaseModel):
    event: str
    turn: int
    committed: int = Field(description="journal rows committed at this boundary")
    rejected: int = Field(description="staged rows rejected at this boundary (with reasons in the journal)")
    reinjected: list[str] = Field(description="hard-pinned bootstrap/constraint pages restored for the next assembly")
    faults: list[FaultOut] = Field(description="faults observed at this boundary (flush_miss when writeback is off)")


class StatsResult(BaseModel):
    session_id: str
    project_id: str
    turn: int
    faults: dict[str, int]
    faults_total: int
    duplicate_signature: int
    hits: int
    thrash: float
    physical_insufficiency: int
    journal: dict[str, int]
    pages: int
    dirty_pages: int


class SessionStartResult(BaseModel):
    session_id: str
    project_id: str
    budget: int
    turn: int
    resumed: bool
    pages: int
    bootstrap: list[WriteResult]
    settled_committed: int = Field(description="staged rows from an earlier run committed now")
    settled_rejected: int = Field(description="staged rows from an earlier run rejected now (see the journal)")


class JournalRow(BaseModel):
    txn_id: int
    page_id: str
    op: str
    status: str
    commit_mode: str
    version: int | None
    turn: int
    reasons: list[ReasonOut]


class JournalResult(BaseModel):
    session_id: str
    entries: list[JournalRow]
