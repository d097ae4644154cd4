"""Deterministic replay of JSONL traces through the real engine, baseline policies, workloads and sweeps."""

from .driver import ReplayError, ReplayResult, replay
from .policies import POLICIES, POLICY_NAMES, ReplayPolicy, get_policy, with_switch
from .trace import Trace, TraceError, load_trace, parse_lines

__all__ = [
    "POLICIES",
    "POLICY_NAMES",
    "ReplayError",
    "ReplayPolicy",
    "ReplayResult",
    "Trace",
    "TraceError",
    "get_policy",
    "load_trace",
    "parse_lines",
    "replay",
    "with_switch",
]
