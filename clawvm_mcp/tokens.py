"""Offline cl100k token counting.

tiktoken downloads its BPE ranks on first use; this server must never touch the network, so the encoding is
built directly from a vendored, hash-checked copy of OpenAI's published ``cl100k_base.tiktoken``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


@lru_cache(maxsize=1)
def cl100k_offline() -> tiktoken.Encoding:
    """Build cl100k from package data; load_tiktoken_bpe verifies the sha256 of the file it reads."""
    path = resources.files("clawvm_mcp") / "data" / "cl100k_base.tiktoken"
    with resources.as_file(path) as local:
        ranks = load_tiktoken_bpe(str(local), expected_hash=CL100K_SHA256)
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL_TOKENS
    )


class TokenCounter:
    """Counts tokens once per distinct text; pages are re-rendered far more often than their text changes."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._encoding = cl100k_offline()
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._cache_size = cache_size

    def count(self, text: str) -> int:
        if not text:
            return 0
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        n = len(self._encoding.encode(text, disallowed_special=()))
        self._cache[key] = n
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return n
