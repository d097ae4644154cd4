"""The six evaluated policies as configurations of the one engine (paper section 5.5), plus ablation switches.

Every policy is an ``EnginePolicy`` (with its ``SelectorPolicy``); nothing here decides anything at run time.
The only harness-level knob is ``multisession_budget_scale`` from the artifact's policy table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, get_args

from ..engine.policy import EnginePolicy
from ..selector import SelectorPolicy

PolicyName = Literal["retrieval", "retrieval_cache", "compaction_hybrid", "lru", "clawvm", "oracle"]
POLICY_NAMES: tuple[PolicyName, ...] = get_args(PolicyName)
Switch = Literal[
    "pointer_resolution",
    "writeback_compaction",
    "writeback_reset",
    "auto_pin",
    "upgrade_scoring",
    "prefetch",
    "typed_recall",
]
# the paper's Table 6 mechanisms, in its order; typed_recall is our seventh switch (silent recall has no column)
ABLATION_SWITCHES: tuple[Switch, ...] = (
    "pointer_resolution",
    "writeback_compaction",
    "auto_pin",
    "writeback_reset",
    "upgrade_scoring",
    "prefetch",
)
SWITCHES: tuple[Switch, ...] = get_args(Switch)
ORACLE_HORIZON = 3


@dataclass(frozen=True, slots=True)
class ReplayPolicy:
    """An engine configuration plus the artifact's budget scale for multi-session traces.

    ``multisession_budget_scale`` is undocumented in the paper; we read it (an inference) as the share of the
    budget a baseline harness has left for pages once a trace spans sessions, and apply it to traces with more
    than one ``session_start``.
    """

    name: str
    engine: EnginePolicy
    multisession_budget_scale: float = 1.0

    def switches(self) -> dict[str, bool]:
        e, s = self.engine, self.engine.selector
        return {
            "pointer_resolution": e.pointer_resolution,
            "writeback_compaction": e.writeback_compaction,
            "writeback_reset": e.writeback_reset,
            "auto_pin": s.auto_pin_hard,
            "upgrade_scoring": s.upgrade_mode != "none",
            "prefetch": s.prefetch_pointer,
            "typed_recall": e.typed_recall,
        }


def _policy(
    name: str,
    *,
    auto_pin: bool,
    prefetch: bool,
    wb_compaction: bool,
    wb_reset: bool,
    mode: Literal["none", "lru", "recency", "clawvm", "oracle"],
    pointer: bool,
    typed: bool,
    scale: float,
) -> ReplayPolicy:
    selector = SelectorPolicy(auto_pin_hard=auto_pin, prefetch_pointer=prefetch, upgrade_mode=mode)
    engine = EnginePolicy(
        name=name,
        selector=selector,
        pointer_resolution=pointer,
        writeback_compaction=wb_compaction,
        writeback_reset=wb_reset,
        typed_recall=typed,
        horizon=ORACLE_HORIZON if mode == "oracle" else 0,
    )
    return ReplayPolicy(name, engine, scale)


# Typed recall (no_match / denied / backend_error) is a ClawVM mechanism: the three practitioner baselines model
# harnesses whose memory search returns a bare empty list when the backend fails, so they can fault silently.
POLICIES: dict[str, ReplayPolicy] = {
    "retrieval": _policy(
        "retrieval",
        auto_pin=False,
        prefetch=False,
        wb_compaction=False,
        wb_reset=False,
        mode="none",
        pointer=False,
        typed=False,
        scale=0.78,
    ),
    "retrieval_cache": _policy(
        "retrieval_cache",
        auto_pin=False,
        prefetch=False,
        wb_compaction=False,
        wb_reset=False,
        mode="none",
        pointer=True,
        typed=False,
        scale=0.78,
    ),
    "compaction_hybrid": _policy(
        "compaction_hybrid",
        auto_pin=False,
        prefetch=True,
        wb_compaction=True,
        wb_reset=False,
        mode="recency",
        pointer=True,
        typed=False,
        scale=0.85,
    ),
    "lru": _policy(
        "lru",
        auto_pin=True,
        prefetch=True,
        wb_compaction=True,
        wb_reset=True,
        mode="lru",
        pointer=True,
        typed=True,
        scale=1.0,
    ),
    "clawvm": _policy(
        "clawvm",
        auto_pin=True,
        prefetch=True,
        wb_compaction=True,
        wb_reset=True,
        mode="clawvm",
        pointer=True,
        typed=True,
        scale=1.0,
    ),
    "oracle": _policy(
        "oracle",
        auto_pin=True,
        prefetch=True,
        wb_compaction=True,
        wb_reset=True,
        mode="oracle",
        pointer=True,
        typed=True,
        scale=1.0,
    ),
}


def get_policy(name: str) -> ReplayPolicy:
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; use one of {', '.join(POLICY_NAMES)}") from None


def with_switch(policy: ReplayPolicy, switch: str, on: bool) -> ReplayPolicy:
    """One mechanism turned on or off, everything else unchanged (the ablation's unit of change)."""
    e, s = policy.engine, policy.engine.selector
    if switch == "pointer_resolution":
        engine = replace(e, pointer_resolution=on)
    elif switch == "writeback_compaction":
        engine = replace(e, writeback_compaction=on)
    elif switch == "writeback_reset":
        engine = replace(e, writeback_reset=on)
    elif switch == "typed_recall":
        engine = replace(e, typed_recall=on)
    elif switch == "auto_pin":
        engine = replace(e, selector=replace(s, auto_pin_hard=on))
    elif switch == "prefetch":
        engine = replace(e, selector=replace(s, prefetch_pointer=on))
    elif switch == "upgrade_scoring":
        # off: phase 2 spends nothing (required set and pointer prefetch only); on: the ClawVM score
        mode: Literal["none", "clawvm"] = "clawvm" if on else "none"
        engine = replace(
            e,
            selector=replace(
                s, upgrade_mode=mode if s.upgrade_mode in ("none", "clawvm") or not on else s.upgrade_mode
            ),
        )
    else:
        raise ValueError(f"unknown switch {switch!r}; use one of {', '.join(SWITCHES)}")
    suffix = f"{'+' if on else '-'}{switch}"
    return ReplayPolicy(
        f"{policy.name}{suffix}", replace(engine, name=f"{e.name}{suffix}"), policy.multisession_budget_scale
    )
