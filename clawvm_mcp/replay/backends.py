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
from ..pages import Fidelity
from ..selector import SelectorPolicy, select
from ..store.memory import MemoryStore
from .policies import ReplayPolicy
from .trace import Backend as RecallBackend

# the floor check every policy is judged by: hard pins and demands at their floors, nothing else
_FLOOR_ONLY = SelectorPolicy(auto_pin_hard=True, prefetch_pointer=False, upgrade_mode="none")


class Backend(Protocol):
    async def session_start(self, session: str, project: str, budget: int) -> SessionStartResult: ...
    async def write(self, session: str, req: WriteRequest) -> WriteResult: ...
    async def assemble(
        self, session: str, budget: int, demands: Sequence[tuple[str, str]], future: Mapping[str, int] | None
    ) -> AssembleResult: ...
    async def tool(self, session: str, name: str, args: Mapping[str, object], result: str) -> ToolExecuteResult: ...
    async def recall(
        self, session: str, query: str, page_type: str | None, backend: RecallBackend
    ) -> RecallResult | None: ...
    async def lifecycle(self, session: str, event: str) -> LifecycleResult: ...
    async def stats(self, session: str) -> StatsResult: ...
    def floor_fits(self, session: str, demands: Mapping[str, str], budget: int) -> bool | None: ...
    def faults_total(self, session: str) -> int | None: ...
    def set_utility(self, session: str, page_id: str, base_utility: float | None, recompute: float | None) -> None: ...
    async def close(self) -> None: ...


class EngineBackend:
    """The real engine over an in-memory store; also answers the policy-independent floor check."""

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

    async def tool(self, session: str, name: str, args: Mapping[str, object], result: str) -> ToolExecuteResult:
        return await self.engine.tool_execute(session, name, args, result)

    async def recall(
        self, session: str, query: str, page_type: str | None, backend: RecallBackend
    ) -> RecallResult | None:
        return await self.engine.recall(session, query, page_type, 10, backend)

    async def lifecycle(self, session: str, event: str) -> LifecycleResult:
        return await self.engine.lifecycle(session, event)

    async def stats(self, session: str) -> StatsResult:
        return await self.engine.stats(session)

    def floor_fits(self, session: str, demands: Mapping[str, str], budget: int) -> bool | None:
        state = self.engine.state_of(session)
        wanted = {pid: Fidelity.parse(f) for pid, f in demands.items()}
        return not select(state.pages, wanted, budget, _FLOOR_ONLY, {}).unmet_required

    def faults_total(self, session: str) -> int | None:
        return self.engine.state_of(session).observer.total

    def set_utility(self, session: str, page_id: str, base_utility: float | None, recompute: float | None) -> None:
        """Trace-given utility and recompute cost; the write API has no such fields, so they apply in memory."""
        table = self.engine.state_of(session).pages
        page = table.get(page_id)
        if page is not None:
            if base_utility is not None:
                page.base_utility = base_utility
            if recompute is not None:
                page.recompute_cost = recompute
            table[page_id] = page  # re-index: the selector's sort keys read these

    async def close(self) -> None:
        await self.engine.store.close()
