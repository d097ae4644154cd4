"""Engine policies: the paper's baselines are configurations of one engine, never forks of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..pages import MAX_PAGE_BYTES
from ..paths import store_timeout
from ..selector import SelectorPolicy

Grant = Literal["read", "write"]


@dataclass(frozen=True, slots=True)
class EnginePolicy:
    """Each mechanism of the paper's ablation (Table 6) is one switch here."""

    name: str = "clawvm"
    selector: SelectorPolicy = field(default_factory=SelectorPolicy)
    pointer_resolution: bool = True  # an evicted result stays resolvable through its pointer
    writeback_compaction: bool = True
    writeback_reset: bool = True
    typed_recall: bool = True  # recall says no_match / denied / backend_error instead of a bare empty list
    horizon: int = 0  # lookahead for the oracle's future-demand term


CLAWVM = EnginePolicy()


@dataclass(frozen=True, slots=True)
class EngineConfig:
    principal: str = "local"
    # project_id -> grant; None means the principal owns the database and may write every project
    grants: Mapping[str, Grant] | None = None
    policy: EnginePolicy = CLAWVM
    max_page_bytes: int = MAX_PAGE_BYTES
    max_pages_per_session: int = 100_000  # issue 12: every per-call cost is flat to here (docs/performance.md)
    max_budget: int = 2_000_000
    # tools whose repeats may be answered from memory when the caller does not say (DESIGN section 9: the read-only
    # tools the harness declares; Claude Code's here); every other tool is write-like
    idempotent_tools: frozenset[str] = frozenset({"Read", "Grep", "Glob", "WebFetch", "WebSearch", "LS"})
    # seconds an operation may wait for the store's write lock (or the session's) before it answers STORE_BUSY
    store_timeout: float = field(default_factory=store_timeout)

    def can_read_project(self, project_id: str) -> bool:
        return self.grants is None or project_id in self.grants

    def can_write_project(self, project_id: str) -> bool:
        return self.grants is None or self.grants.get(project_id) == "write"
