"""The one base class of the errors clawvm-mcp raises on purpose.

Every such error carries a message meant for whoever must act on it (a model, a user, an operator), so callers
that only need to tell "ours, with a readable message" from "a bug" catch ``ClawVMError``.
"""

from __future__ import annotations

__all__ = ["ClawVMError"]


class ClawVMError(Exception):
    """An expected failure with a message that says what happened and what to do next."""
