"""Where a replay's operations go: the engine in this process, or a real MCP server (see ``mcp_backend``).

The driver speaks only this protocol, so both paths run the same event loop and count the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ..engine import ClawVMEngine, EngineConfig
from ..engine.results import (
    AssembleResult,
    LifecycleResult,
    RecallResult,
    SessionStartResult,
    StatsResult,
    ToolExecuteResult,
    WriteResult,
)
from ..journal import WriteRequest
from ..store.memory import MemoryStore
from .policies import ReplayPolicy
from .trace import Backend as RecallBackend


class Backend(Protocol):
    # whether set_utility takes effect; a replay of a trace that sets utilities refuses a backend that cannot
    per_page_utility: bool

    async def session_start(self, session: str, project: str, budget: int) -> SessionStartResult: ...
    async def write(self, session: str, req: WriteRequest) -> WriteResult: ...
    async def assemble(
        self, session: str, budget: int, demands: Sequence[tuple[str, str]], future: Mapping[str, int] | None
    ) -> AssembleResult: ...
    async def tool(
        self, session: str, name: str, args: Mapping[str, object], result: str, idempotent: bool
    ) -> ToolExecuteResult: ...
    async def recall(
        self, session: str, query: str, page_type: str | None, backend: RecallBackend
    ) -> RecallResult | None: ...
    async def lifecycle(self, session: str, event: str) -> LifecycleResult: ...
    async def stats(self, session: str) -> StatsResult: ...
    async def version(self, session: str, page_id: str) -> int | None:
        """The committed version of a page the session can see (0: created staged), None if it has none."""
        ...

    async def floor_fits(self, session: str, demands: Mapping[str, str], budget: int) -> bool | None: ...
    async def faults_total(self, session: str) -> int | None: ...
    async def set_utility(
        self, session: str, page_id: str, base_utility: float | None, recompute: float | None
    ) -> None: ...
    async def close(self) -> None: ...


class EngineBackend:
    """The real engine over an in-memory store; also answers the policy-independent floor check."""

    per_page_utility = True

    def __init__(self, policy: ReplayPolicy) -> None:
        self.engine = ClawVMEngine(MemoryStore(), config=EngineConfig(policy=policy.engine))

    async def session_start(self, session: str, project: str, budget: int) -> SessionStartResult:
        return await self.engine.session_start(session, project, budget)

    async def write(self, session: str, req: WriteRequest) -> WriteResult:
        return await self.engine.write(session, req)

    async def assemble(
        self, session: str, budget: int, demands: Sequence[tuple[str, str]], future: Mapping[str, int] | None
    ) -> AssembleResult:
        return await self.engine.assemble(session, budget, demands, future)

    async def tool(
        self, session: str, name: str, args: Mapping[str, object], result: str, idempotent: bool
    ) -> ToolExecuteResult:
        return await self.engine.tool_execute(session, name, args, result, idempotent=idempotent)

    async def recall(
        self, session: str, query: str, page_type: str | None, backend: RecallBackend
    ) -> RecallResult | None:
        return await self.engine.recall(session, query, page_type, 10, backend)

    async def lifecycle(self, session: str, event: str) -> LifecycleResult:
        return await self.engine.lifecycle(session, event)

    async def stats(self, session: str) -> StatsResult:
        return await self.engine.stats(session)

    async def version(self, session: str, page_id: str) -> int | None:
        return await self.engine.version_of(session, page_id)

    async def floor_fits(self, session: str, demands: Mapping[str, str], budget: int) -> bool | None:
        return await self.engine.floor_fits(session, demands, budget)

    async def faults_total(self, session: str) -> int | None:
        return await self.engine.faults_total(session)

    async def set_utility(
        self, session: str, page_id: str, base_utility: float | None, recompute: float | None
    ) -> None:
        """Trace-given utility and recompute cost; the write API has no such fields, so they apply in memory."""
        await self.engine.set_utility(session, page_id, base_utility, recompute)

    async def close(self) -> None:
        await self.engine.store.close()
