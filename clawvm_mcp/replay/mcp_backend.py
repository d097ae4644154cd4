"""``--via mcp``: the same replay through a real MCP client against ``clawvm-mcp serve`` over stdio.

This proves the server enforces what the replay measures: identical fault counts for the clawvm policy.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from pydantic import BaseModel

from ..engine import EngineError
from ..engine.results import (
    AssembleResult,
    LifecycleResult,
    ListResult,
    RecallResult,
    SessionStartResult,
    StatsResult,
    ToolExecuteResult,
    WriteResult,
)
from ..journal import WriteRequest
from .trace import Backend as RecallBackend

M = TypeVar("M", bound=BaseModel)


class McpBackend:
    """Speaks the DESIGN section 6 tools; knows nothing the server does not return."""

    per_page_utility = False  # page_write has no base_utility / recompute_cost: the driver refuses such traces

    def __init__(self, client: Client, stack: AsyncExitStack) -> None:
        self.client = client
        self._stack = stack

    @classmethod
    async def launch(cls, db: Path | None = None) -> McpBackend:
        stack = AsyncExitStack()
        if db is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="clawvm-replay-"))
            db = Path(tmp) / "replay.db"
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "clawvm_mcp", "serve", "--db", str(db)],
            env={"CLAWVM_LOG": "WARNING"},
        )
        try:
            client = await stack.enter_async_context(Client(params))
        except BaseException:
            await stack.aclose()
            raise
        return cls(client, stack)

    async def _call(self, tool_name: str, model: type[M], **args: Any) -> M:
        result = await self.client.call_tool(tool_name, {k: v for k, v in args.items() if v is not None})
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise EngineError(f"{tool_name}: {text}")
        return model.model_validate(result.structured_content)

    async def session_start(self, session: str, project: str, budget: int) -> SessionStartResult:
        return await self._call(
            "session_start", SessionStartResult, session_id=session, project_id=project, budget=budget
        )

    async def write(self, session: str, req: WriteRequest) -> WriteResult:
        if req.tokens is not None:
            raise EngineError("token-only pages cannot be sent over MCP; generate the trace with --content")
        prov = req.provenance
        assert prov is not None
        return await self._call(
            "page_write",
            WriteResult,
            session_id=session,
            page_id=req.page_id,
            op=req.op,
            type=req.type,
            content=req.content,
            fields=req.fields,
            base_version=req.base_version,
            scope=req.scope,
            pin=req.pin,
            commit=req.commit,
            provenance={"source": prov.source, "ref": prov.ref, "turn": prov.turn},
        )

    async def assemble(
        self, session: str, budget: int, demands: Sequence[tuple[str, str]], future: Mapping[str, int] | None
    ) -> AssembleResult:
        return await self._call(
            "context_assemble",
            AssembleResult,
            session_id=session,
            budget=budget,
            demands=[{"page_id": p, "fidelity": f} for p, f in demands],
        )

    async def tool(
        self, session: str, name: str, args: Mapping[str, object], result: str, idempotent: bool
    ) -> ToolExecuteResult:
        return await self._call(
            "tool_execute",
            ToolExecuteResult,
            session_id=session,
            tool=name,
            args=dict(args),
            result=result,
            idempotent=idempotent,
        )

    async def recall(
        self, session: str, query: str, page_type: str | None, backend: RecallBackend
    ) -> RecallResult | None:
        if backend != "ok":
            return None  # a backend failure cannot be injected through the server: not sent, counted apart
        return await self._call("recall", RecallResult, session_id=session, query=query, type=page_type)

    async def lifecycle(self, session: str, event: str) -> LifecycleResult:
        return await self._call("lifecycle", LifecycleResult, session_id=session, event=event)

    async def stats(self, session: str) -> StatsResult:
        return await self._call("session_stats", StatsResult, session_id=session)

    async def version(self, session: str, page_id: str) -> int | None:
        """page_list is the one side-effect-free read of versions (page_read would count hits)."""
        listed = await self._call("page_list", ListResult, session_id=session)
        return next((p.version for p in listed.pages if p.page_id == page_id), None)

    async def floor_fits(self, session: str, demands: Mapping[str, str], budget: int) -> bool | None:
        return None  # the server's own physical_insufficiency flag answers (clawvm auto-pins, so it is the same)

    async def faults_total(self, session: str) -> int | None:
        return None

    async def set_utility(
        self, session: str, page_id: str, base_utility: float | None, recompute: float | None
    ) -> None:
        """Not expressible through page_write: never silently dropped, since the driver refuses such a trace."""
        raise EngineError(f"page {page_id!r}: base_utility / recompute_cost cannot be sent over MCP")

    async def close(self) -> None:
        await self._stack.aclose()
