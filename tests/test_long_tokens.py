"""A tool result may be one long token (a minified file, a base64 blob). Deriving its fields and its search text
was quadratic in the token's length (60 KB took about a minute per write, so a write hung past every client's
time-out). These are liveness guards with a bound far above the linear cost, not performance figures."""

from __future__ import annotations

import time

import pytest

from clawvm_mcp.represent import derive_fields
from clawvm_mcp.store.search import columns

BOUND_S = 10.0  # the quadratic code took ~60 s on 60 KB; the fixed code takes well under a second
LONG = ["x" * 60_000, "aB" * 30_000, "a1_" * 20_000, ("word." * 12_000) + "py"]


@pytest.mark.parametrize("text", LONG, ids=["letters", "humps", "snake", "dotted"])
def test_fields_of_one_long_token_are_derived_in_bounded_time(text: str) -> None:
    started = time.monotonic()
    fields = derive_fields("evidence", "ev/x", text)
    assert time.monotonic() - started < BOUND_S
    assert isinstance(fields.get("paths", []), list)


@pytest.mark.parametrize("text", LONG, ids=["letters", "humps", "snake", "dotted"])
def test_search_text_of_one_long_token_is_built_in_bounded_time(text: str) -> None:
    started = time.monotonic()
    columns("ev/x", "", {}, text)
    assert time.monotonic() - started < BOUND_S


def test_paths_are_still_found_beside_long_tokens() -> None:
    fields = derive_fields("evidence", "ev/x", "see src/app/main.py and " + "z" * 5_000 + " then README.md")
    assert {"src/app/main.py", "README.md"} <= set(fields["paths"])


def test_the_tokenizer_is_built_at_the_first_count_not_before() -> None:
    """A server's first call, or a hook event that writes no text, must not wait for cl100k to be built."""
    from clawvm_mcp.tokens import TokenCounter, cl100k_offline

    cl100k_offline.cache_clear()
    counter = TokenCounter()
    assert cl100k_offline.cache_info().currsize == 0
    assert counter.count("hello world") == 2
    assert cl100k_offline.cache_info().currsize == 1
