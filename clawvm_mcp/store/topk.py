"""Exact BM25 top-k that does not score every matching row: MaxScore over the store's own postings.

FTS5 has no dynamic pruning: ``bm25()`` runs for every row the MATCH yields, and its idf pass walks each term's
whole doclist, so one session of 95,000 pages whose question terms match 4,500 rows costs tens of milliseconds.
Here each term gets an upper bound of what it can add to any page of the searched namespaces (its idf times the
largest saturation any stored (freq, length) pair reaches at today's average length). Terms are taken rarest-bound
first; once the k-th best partial score of the pages seen so far beats the sum of the bounds of the terms not yet
read, no unseen page can enter the top k, and the common terms are only looked up for the few pages that can still
get there (each lookup tightening the threshold again). The scores are FTS5's, bit for bit: same idf, same average
length, same formula, summed in the query's term order, so the ranking (ties broken by page id, then namespace, by
the caller) is the exhaustive one; ``tests/test_recall.py`` checks it against FTS5 ``bm25()`` on LoCoMo.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from .search import K1, B

MARGIN = 1e-9  # slack on every bound comparison: float sums of bounded parts may round by an ulp or so
EXHAUSTIVE_POSTINGS = 1_500  # at most this many postings in all: read them at once, planning would cost more


@dataclass(frozen=True, slots=True)
class TermPlan:
    """One query term as the store knows it: its idf over the whole index, its bound over the searched namespaces'
    pages, and how many postings it has there."""

    position: int  # index in the query's term order, the order scores are summed in
    term: str
    idf: float
    bound: float
    postings: int


@dataclass(frozen=True, slots=True)
class Scored:
    docid: int
    score: float
    matched: int  # how many of the query's terms the page holds


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read these terms' whole posting lists in the searched namespaces: rows (docid, term, freq, length)."""

    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Probe:
    """Look these terms up for these pages only: rows (docid, term, freq)."""

    terms: tuple[str, ...]
    docids: tuple[int, ...]


Rows = Sequence[Sequence[Any]]
Steps = Generator[Fetch | Probe, Rows, list[Scored]]  # sans I/O: the store answers each request with its rows


def idf(rows: int, with_term: int) -> float:
    """FTS5's BM25 idf: a term on more than half the rows weighs 1e-6, not less than nothing."""
    value = math.log((rows - with_term + 0.5) / (with_term + 0.5))
    return value if value > 0.0 else 1e-6


def saturation(freq: float, length: float, avg: float) -> float:
    """What FTS5's bm25() multiplies a term's idf by, written in its operation order (so the doubles agree)."""
    return (freq * (K1 + 1.0)) / (freq + K1 * (1 - B + B * length / avg))


def bound(idf_value: float, shapes: Sequence[tuple[int, int]], avg: float) -> float:
    """The most a term adds to any page: ``shapes`` are (weighted freq, the shortest length seen at it) pairs, and
    saturation grows with freq and falls with length, so the best pair is an upper bound for every page."""
    return max((idf_value * saturation(f, n, avg) for f, n in shapes), default=0.0)


def plan(
    terms: Sequence[str],
    rows: int,
    df: Mapping[str, int],
    shapes: Mapping[str, Sequence[tuple[int, int]]],
    counts: Mapping[str, int],
    avg: float,
) -> list[TermPlan]:
    """The query's terms that have postings in the searched namespaces, with their idf and bounds."""
    out = []
    for i, term in enumerate(terms):
        if counts.get(term, 0) <= 0:
            continue
        w = idf(rows, df.get(term, 0))
        out.append(TermPlan(i, term, w, bound(w, shapes.get(term, ()), avg), counts[term]))
    return out


def _kth(scores: Mapping[int, float], k: int) -> float:
    """The k-th best known score, lowered by the slack (0 while fewer than k pages are known): a page whose bound
    is below it is below the k-th page's final score, with room for rounding."""
    if len(scores) < k:
        return 0.0
    kth = heapq.nlargest(k, scores.values())[-1]
    return kth - MARGIN * (abs(kth) + 1.0)


class _Norms(dict[int, float]):
    """BM25's length norm per page length, computed once per query (the same double FTS5 computes per row)."""

    def __init__(self, avg: float) -> None:
        super().__init__()
        self.avg = avg

    def __missing__(self, length: int) -> float:
        value = self[length] = K1 * (1 - B + B * length / self.avg)
        return value


def top_k(terms: Sequence[TermPlan], avg: float, k: int) -> Steps:
    """Every page that can rank in the top ``k``, exactly scored, best first; pages tied with the k-th are all
    kept, so the caller's tie-break (page id, namespace) cuts the same list the exhaustive ranking would."""
    if not terms or k < 1:
        return []
    if sum(t.postings for t in terms) <= EXHAUSTIVE_POSTINGS:
        return _score_all(terms, avg, (yield Fetch(tuple(t.term for t in terms))), k)
    norms = _Norms(avg)
    k1_plus = K1 + 1.0
    parts: dict[str, dict[int, float]] = {}  # per term: its contribution to each page it is known on
    score: dict[int, float] = {}  # the sum of a page's known parts: a lower bound of its final score
    lengths: dict[int, int] = {}
    rest = sorted(terms, key=lambda t: (-t.bound, t.postings))  # the terms that can add most come first
    while rest:  # read whole posting lists until no unseen page can reach the top k
        term = rest.pop(0)
        w, got = term.idf, parts.setdefault(term.term, {})
        for docid, _, freq, length in (yield Fetch((term.term,))):
            c = got[docid] = w * ((freq * k1_plus) / (freq + norms[length]))
            score[docid] = score.get(docid, 0.0) + c
            lengths[docid] = length
        if rest and _kth(score, k) > sum(t.bound for t in rest):
            break
    while rest:  # the rest are looked up only for pages that can still reach the k-th score
        remaining, threshold = sum(t.bound for t in rest), _kth(score, k)
        score = {d: s for d, s in score.items() if s + remaining >= threshold}
        term = rest.pop(0)
        w, got = term.idf, parts.setdefault(term.term, {})
        for docid, _, freq in (yield Probe((term.term,), tuple(sorted(score)))):
            c = got[docid] = w * ((freq * k1_plus) / (freq + norms[lengths[docid]]))
            score[docid] += c
    threshold = _kth(score, k)  # every part is known now: only the pages near the k-th need their exact sum
    in_order = [parts.get(t.term, {}) for t in sorted(terms, key=lambda t: t.position)]
    scored = []
    for docid in (d for d, s in score.items() if s >= threshold):  # each term read whole or looked up for it
        total, held = 0.0, 0
        for known in in_order:  # summed in query order, as FTS5 sums (an absent term adds nothing)
            c = known.get(docid)
            if c is not None:
                total += c
                held += 1
        scored.append(Scored(docid, total, held))
    return _cut(scored, k)


def _score_all(terms: Sequence[TermPlan], avg: float, rows: Rows, k: int) -> list[Scored]:
    """Every page of the rows scored, and those that reach the k-th score kept: each term's rows are added in
    query order, so each page's sum runs as FTS5's does (a length's norm is computed once, the same double)."""
    by_term: dict[str, list[Sequence[Any]]] = {}
    for term, run in groupby(rows, key=itemgetter(1)):  # rows come in (namespace, term) runs
        by_term.setdefault(term, []).extend(run)
    score: dict[int, float] = {}
    held: dict[int, int] = {}
    norms = _Norms(avg)
    k1_plus = K1 + 1.0
    for t in sorted(terms, key=lambda t: t.position):
        w = t.idf
        for docid, _, freq, length in by_term.get(t.term, ()):
            norm = norms[length]
            score[docid] = score.get(docid, 0.0) + w * ((freq * k1_plus) / (freq + norm))
            held[docid] = held.get(docid, 0) + 1
    cut = heapq.nlargest(k, score.values())[-1] if len(score) > k else -math.inf
    return _cut([Scored(d, s, held[d]) for d, s in score.items() if s >= cut], k)


def _cut(scored: list[Scored], k: int) -> list[Scored]:
    """Best first, and nothing below the k-th score (ties with it stay, for the caller's tie-break)."""
    if len(scored) > k:
        cut = heapq.nlargest(k, (s.score for s in scored))[-1]
        scored = [s for s in scored if s.score >= cut]
    return sorted(scored, key=lambda s: -s.score)
