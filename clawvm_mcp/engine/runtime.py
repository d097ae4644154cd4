"""What every engine operation needs besides the session: the store, the token counter and the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ..store.base import Store
from ..tokens import TokenCounter
from .policy import EngineConfig, EnginePolicy


@dataclass(frozen=True, slots=True)
class Runtime:
    store: Store
    counter: TokenCounter
    config: EngineConfig

    @property
    def policy(self) -> EnginePolicy:
        return self.config.policy
