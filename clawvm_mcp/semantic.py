"""Optional sentence vectors for recall experiments (``pip install 'clawvm-mcp[semantic]'``: wordllama 0.4).

Loaded fully offline from the weights and tokenizer config that wordllama's wheel ships (plain ``load()`` would
try a hub download). The server does not use them: measured on LoCoMo, fusing these vectors with BM25 by
reciprocal rank fusion ranks worse than BM25 alone (docs/performance.md, "Recall"), so ``bench recall`` reports
them as rows beside the shipped ranking instead. Without the extra nothing imports this module's dependency.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RRF_K = 60


def available() -> bool:
    """Whether the ``semantic`` extra is installed (no import, no load)."""
    return importlib.util.find_spec("wordllama") is not None


class Embedder:
    """wordllama's bundled 256-d model, loaded from the installed package's own folder with downloads disabled."""

    def __init__(self) -> None:
        try:
            import wordllama  # type: ignore[import-not-found, unused-ignore]
        except ImportError as exc:
            raise RuntimeError("semantic vectors need the extra: pip install 'clawvm-mcp[semantic]'") from exc
        folder = Path(wordllama.__file__).resolve().parent
        self._model: Any = wordllama.WordLlama.load(cache_dir=folder, disable_download=True)

    def embed(self, texts: Sequence[str]) -> Any:
        """Unit-length vectors, one row per text (a numpy array): a dot product is the cosine."""
        return self._model.embed(list(texts), norm=True)


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> list[str]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the lists it is in (rank from 1);
    ties keep the order of first appearance."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])
