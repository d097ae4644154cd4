"""Page vectors for semantic recall, and their fusion with BM25 (only imported when ``semantic.enabled()``).

A page's vector is computed in a background pass right after the page is written (``note``): a single worker
thread embeds whatever is pending in batches, so a ``page_write`` never waits for the model and a burst of writes
is embedded at batch throughput. Vectors are content-addressed (a hash of the model and the text) in a side
SQLite file, so a restart, a second process or a page that goes back to an earlier text re-embeds nothing; the
file is a cache (deleting it costs a re-embedding, never a wrong answer). A recall that finds a page not yet
embedded embeds it there and then, so results never depend on how far the background pass got.

Fusion (``fuse``): BM25 top ``DEPTH`` from the store and cosine top ``DEPTH`` over the session's readable live
pages, merged by reciprocal rank fusion with k = 60; ``score`` becomes the fused RRF score.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from . import semantic
from .pages import Fidelity, Page
from .store import search
from .store.base import SearchHit

try:
    import numpy as np
    from numpy.typing import NDArray

    from . import minilm
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError("semantic vectors need the extra: pip install 'clawvm-mcp[semantic]'") from exc

if TYPE_CHECKING:
    from .store.base import Store

log = logging.getLogger(__name__)
DEPTH = 100  # how deep each ranking goes into the fusion
BATCH = 32  # texts per forward pass in the background pass
MATRICES = 64  # stacked per-session matrices kept between recalls (oldest dropped first)
CACHE_ENV = "CLAWVM_VECTOR_CACHE"  # a path for the side cache; "off" keeps vectors in memory only


def page_text(page: Page) -> str:
    """What a page's vector is computed from: its title, then its content (the model reads at most 256 tokens).
    The title goes in even when it is derived from the content's start: on LoCoMo that weighting of the opening
    words (the speaker's name) took MiniLM's R@10 from 0.426 to 0.490, and the fused one from 0.552 to 0.598."""
    return f"{page.title}\n{page.content}" if page.title else page.content


def _key(text: str) -> bytes:
    return hashlib.blake2b(f"{semantic.MODEL}\0{text}".encode(), digest_size=16).digest()


def cache_path(store_path: str | None) -> Path | None:
    """Where vectors persist: ``CLAWVM_VECTOR_CACHE`` if set ("off": nowhere), else beside a SQLite database
    (``<db>-vectors``), else (PostgreSQL) in the user's cache folder; an in-memory store keeps them in memory."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return None if configured.lower() == "off" else Path(configured)
    if store_path is None or store_path == ":memory:":
        return None
    if "://" in store_path:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "clawvm-mcp" / "vectors.sqlite"
    return Path(f"{store_path}-vectors")


class _DiskCache:
    """key -> float32 vector in a small SQLite file of its own (never the store's file: no write lock shared)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, timeout=5.0, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        self._lock = threading.Lock()

    def get(self, keys: Sequence[bytes]) -> dict[bytes, NDArray[np.float32]]:
        out: dict[bytes, NDArray[np.float32]] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                marks = ",".join("?" * len(chunk))
                for key, blob in self._conn.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk):
                    out[bytes(key)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put(self, items: dict[bytes, NDArray[np.float32]]) -> None:
        try:
            with self._lock:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO vectors VALUES (?, ?)", [(k, v.tobytes()) for k, v in items.items()]
                )
        except sqlite3.Error as exc:  # a cache: a failed write costs a re-embedding later, nothing else
            log.warning("could not store %d page vectors: %s", len(items), exc)


_ENCODER: minilm.Encoder | None = None
_ENCODER_LOCK = threading.Lock()


def encoder() -> minilm.Encoder:
    """One model per process, loaded on first use (about 0.3 s and 90 MB)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            _ENCODER = minilm.Encoder()
        return _ENCODER


class PageVectors:
    """The vectors of one store's pages: in memory, on disk, and the background pass that fills both."""

    def __init__(self, path: Path | None) -> None:
        self._memory: dict[bytes, NDArray[np.float32]] = {}
        self._disk = _DiskCache(path) if path is not None else None
        self._pending: dict[bytes, str] = {}
        self._wake = threading.Condition()
        self._worker: threading.Thread | None = None
        self._memo: dict[str, tuple[str, str, bytes]] = {}  # page id -> (title, content, key)
        self._matrices: dict[str, tuple[tuple[bytes, ...], NDArray[np.float32]]] = {}

    def note(self, pages: Sequence[Page]) -> None:
        """Queue these pages' texts for the background pass (those already known are skipped)."""
        with self._wake:
            for page in pages:
                text = page_text(page)
                key = _key(text)
                if key not in self._memory:
                    self._pending[key] = text
            if not self._pending:
                return
            if self._worker is None:
                # a daemon: at exit a half-done batch is dropped, which only costs its re-embedding later
                self._worker = threading.Thread(target=self._drain, name="clawvm-vectors", daemon=True)
                self._worker.start()
            self._wake.notify()

    def missing(self, pages: Sequence[Page]) -> int:
        """How many of these pages have no vector in memory yet (what a recall would embed itself)."""
        return len(self._keys(pages)[1])

    def _drain(self) -> None:
        while True:
            with self._wake:
                while not self._pending:
                    self._wake.wait()
                batch = dict(list(self._pending.items())[:BATCH])
            try:
                self._ensure(batch)
            except Exception:  # never let the worker die: the recall path embeds what is missing itself
                log.exception("background embedding of %d pages failed", len(batch))
            with self._wake:
                for key in batch:
                    self._pending.pop(key, None)

    def _ensure(self, texts: dict[bytes, str]) -> None:
        """Vectors for every key, from memory, then disk, then the model (and written back to both)."""
        missing = [k for k in texts if k not in self._memory]
        if missing and self._disk is not None:
            self._memory.update(self._disk.get(missing))
            missing = [k for k in missing if k not in self._memory]
        if not missing:
            return
        vectors = encoder().embed([texts[k] for k in missing], batch=BATCH)
        fresh = {k: vectors[i] for i, k in enumerate(missing)}
        if self._disk is not None:  # disk first: a vector in memory is one a restart will find
            self._disk.put(fresh)
        self._memory.update(fresh)

    def _keys(self, pages: Sequence[Page]) -> tuple[tuple[bytes, ...], dict[bytes, str]]:
        """Each page's key, and the texts of those not in memory. A page object is replaced on every write, never
        mutated, so a key is remembered against the very title and content strings it was hashed from."""
        keys, texts = [], {}
        for page in pages:
            seen = self._memo.get(page.page_id)
            if seen is not None and seen[0] is page.title and seen[1] is page.content:
                key = seen[2]
            else:
                key = _key(page_text(page))
                self._memo[page.page_id] = (page.title, page.content, key)
            if key not in self._memory:
                texts[key] = page_text(page)
            keys.append(key)
        return tuple(keys), texts

    def rank(self, pages: Sequence[Page], query: str, depth: int, name: str = "") -> list[tuple[int, float]]:
        """(index into ``pages``, cosine) of the ``depth`` pages nearest the query, nearest first; ``name`` keys the
        stacked matrix kept between calls (one per session). Blocking: the caller runs it in a worker thread."""
        keys, texts = self._keys(pages)
        if texts:
            self._ensure(texts)
        cached = self._matrices.get(name)
        if cached is None or cached[0] != keys:
            matrix = np.stack([self._memory[k] for k in keys]) if keys else np.zeros((0, semantic.DIM), np.float32)
            if len(self._matrices) >= MATRICES:
                self._matrices.pop(next(iter(self._matrices)))
            self._matrices[name] = cached = (keys, matrix)
        sims = cached[1] @ encoder().embed([query])[0]
        top = np.argsort(-sims, kind="stable")[:depth]
        return [(int(i), float(sims[i])) for i in top]


_INDEXES: weakref.WeakKeyDictionary[Store, PageVectors] = weakref.WeakKeyDictionary()
_INDEX_LOCK = threading.Lock()


def index_for(store: Store) -> PageVectors:
    """The one ``PageVectors`` of a store object (an engine and its server share the store)."""
    with _INDEX_LOCK:
        index = _INDEXES.get(store)
        if index is None:
            path = getattr(store, "path", None)
            index = _INDEXES[store] = PageVectors(cache_path(path if isinstance(path, str) else None))
        return index


async def fuse(
    store: Store,
    candidates: Sequence[tuple[str, Page]],
    query: str,
    terms: Sequence[str],
    lexical: list[SearchHit],
    name: str = "",
) -> list[SearchHit]:
    """``lexical`` (BM25, best first) and the cosine ranking of ``candidates`` ((namespace, page) the recall may
    return) fused by RRF k=60, best first, every hit's ``score`` its RRF score; ties keep BM25's order first."""
    index = index_for(store)
    pages = [page for _, page in candidates]
    nearest = await anyio.to_thread.run_sync(index.rank, pages, query, DEPTH, name)
    by_vector = [pages[i].page_id for i, _ in nearest]
    scores = semantic.rrf_scores([[h.page_id for h in lexical], by_vector])
    known = {h.page_id: h for h in lexical}
    where = {page.page_id: (namespace, page) for namespace, page in candidates}
    fused = []
    for page_id in sorted(scores, key=lambda pid: -scores[pid]):
        hit = known.get(page_id)
        if hit is None:
            namespace, page = where[page_id]
            matched = search.matched(search.search_text(page), terms)
            pointer = page.text_at(Fidelity.POINTER)
            hit = SearchHit(namespace, page_id, page.type, page.title, pointer, 0.0, matched)
        fused.append(
            SearchHit(hit.namespace, hit.page_id, hit.type, hit.title, hit.pointer, scores[page_id], hit.matched)
        )
    return fused
