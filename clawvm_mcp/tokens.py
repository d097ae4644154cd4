"""Offline cl100k token counting.

tiktoken downloads its BPE ranks on first use; this server must never touch the network, so the encoding is
built directly from a vendored, hash-checked copy of OpenAI's published ``cl100k_base.tiktoken``.
"""

from __future__ import annotations

import binascii
import hashlib
from collections import OrderedDict
from functools import lru_cache
from importlib import resources

import tiktoken

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
_CL100K_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


@lru_cache(maxsize=1)
def cl100k_offline() -> tiktoken.Encoding:
    """Build cl100k from package data, hash-checked. Parsed here rather than by tiktoken's loader, which would
    copy even a local file into its cache directory (a side effect on every fresh machine)."""
    data = (resources.files("clawvm_mcp") / "data" / "cl100k_base.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError("clawvm_mcp/data/cl100k_base.tiktoken is corrupt (sha256 mismatch); reinstall clawvm-mcp")
    fields = data.split()  # "<base64 token> <rank>" per line; split and decoded in bulk, about 2x the line loop
    ranks = dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2]), strict=True))
    return tiktoken.Encoding(
        name="cl100k_base", pat_str=_CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=_SPECIAL_TOKENS
    )


class TokenCounter:
    """Counts tokens once per distinct text; pages are re-rendered far more often than their text changes. The
    encoding (about 40-150 ms to build) is built at the first count, not before: a server's first call, or a hook
    event that writes no text, does not wait for it."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._encoding: tiktoken.Encoding | None = None
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
        if self._encoding is None:
            self._encoding = cl100k_offline()
        n = len(self._encoding.encode_ordinary(text))  # special-token text counts as ordinary text
        self._cache[key] = n
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return n
