"""Search text: the one tokenizer that pages and queries share, the index columns a page is searched by, and the
FTS5 MATCH expression a query becomes.

Why the tokenizing is done here and not by an FTS5 tokenizer: one vocabulary for SQLite, the in-memory store and
the query, so a term's document frequency can be looked up by the very word a query sends. The rules:

- Text is NFKD-folded (accents dropped) and split into *compounds*: runs of letters and digits joined by ``_ . /
  \\ -`` (``snake_case``, ``a/b/c.py``, ``v1.2``, ``well-known``). Each compound yields its *parts*, split at those
  joiners and at camelCase humps (``getHTTPResponse`` -> get, http, response), lower-cased and Porter-stemmed (the
  stemmer FTS5's ``porter`` tokenizer uses), so prose matches across inflections ("painted" finds "painting").
- A compound of several parts also yields its parts joined (``snakecase``, ``abcpy``) and, for a path, each
  segment joined (``cpy`` for ``c.py``): a query that names the identifier or the file ranks the page that has it
  above pages that merely share its words, while a query for one part still finds it.
- Indexed tokens are plain lower-case letters and digits, which FTS5's ``unicode61`` tokenizer keeps as they are:
  SQLite indexes exactly these tokens. A query's terms are each quoted in the MATCH expression, so no user text is
  ever read as FTS5 syntax (``AND``, ``NEAR``, ``*``, ``col:``, quotes).
- A query drops English stop words ("what", "did", "the") unless nothing else is left: BM25 weighs them little,
  but every page holds them, so they cost time and add noise (LoCoMo R@10 0.61 -> 0.64).
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..pages import Page
from .porter import stem

MAX_QUERY_TERMS = 32
MAX_TOKEN_CHARS = 64  # a longer token (a hash, a base64 run) is kept only as its parts
MAX_HUMP_RUN = 256  # longer letter runs are not split at camelCase humps (no identifier is that long)
# field weights for FTS5 bm25(): page_id, title, structured fields, content (a hit in the id or title says more)
WEIGHTS: tuple[float, float, float, float] = (3.0, 2.0, 1.0, 1.0)
COLUMNS = ("page_id", "title", "fields", "content")
K1, B = 1.2, 0.75  # the BM25 constants FTS5 builds in

_COMPOUND = re.compile(r"[^\W_]+(?:[_./\\-]+[^\W_]+)*")
_SEGMENT = re.compile(r"[/\\]+")
_PART = re.compile(r"[^\W_]+")
_HUMP = re.compile(r"[^\W\d_]*?[a-z\d](?=[A-Z])|[A-Z]+(?=[A-Z][a-z])")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off
    on once only or other our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves s t d ll m re ve""".split()
)


@dataclass(frozen=True, slots=True)
class SearchColumns:
    """A page's index text per column, each a space-joined run of tokens."""

    page_id: str
    title: str
    fields: str
    content: str

    def as_tuple(self) -> tuple[str, str, str, str]:
        return (self.page_id, self.title, self.fields, self.content)


def fold(text: str) -> str:
    """Compatibility-decompose and drop combining marks: "Café" and "cafe" are one word."""
    if text.isascii():  # nothing to decompose: most text, and a third of the tokenizing time
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():  # "…" -> "...": marks are never ASCII, so there are none to drop
        return decomposed
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _humps(run: str) -> list[str]:
    """A letters-and-digits run split at camelCase humps: ``parseHTTPHeader2`` -> parse, HTTP, Header2. A run of one
    case has no humps, and a very long one is no identifier: both skip the pattern, which is quadratic on them."""
    if run == run.lower() or run == run.upper() or len(run) > MAX_HUMP_RUN:
        return [run]
    pieces, start = [], 0
    for m in _HUMP.finditer(run):
        pieces.append(run[start : m.end()])
        start = m.end()
    pieces.append(run[start:])
    return [p for p in pieces if p]


def _parts(compound: str) -> list[str]:
    return [p.lower() for run in _PART.findall(compound) for p in _humps(run)]


def _words(text: str) -> Iterator[tuple[str, str]]:
    """(surface word, index token) pairs of a text, in order; the surface word is what stop words are checked on."""
    for m in _COMPOUND.finditer(fold(text)):
        yield from _compound(m.group())


@lru_cache(maxsize=1 << 16)
def _compound(compound: str) -> tuple[tuple[str, str], ...]:
    """One compound's (surface, token) pairs, cached: words repeat, so most compounds cost a dict lookup."""
    parts = _parts(compound)
    out = [(part, stem(part)) for part in parts if len(part) <= MAX_TOKEN_CHARS]
    if len(parts) < 2:
        return tuple(out)
    segments = [_parts(s) for s in _SEGMENT.split(compound)]  # a path's file and folder names
    joins = ["".join(p) for p in segments if len(p) > 1] if len(segments) > 1 else []
    joins.append("".join(parts))
    out.extend((joined, joined) for joined in dict.fromkeys(joins) if len(joined) <= MAX_TOKEN_CHARS)
    return tuple(out)


def tokens(text: str) -> list[str]:
    """The index tokens of a text, in order (see the module docstring for the rules)."""
    return [token for compound in _COMPOUND.findall(fold(text)) for _, token in _compound(compound)]


def query_terms(query: str) -> list[str]:
    """A query's distinct index tokens, stop words dropped unless the query is nothing but stop words."""
    words = list(_words(query))
    kept = [token for word, token in words if word not in STOPWORDS] or [token for _, token in words]
    return list(dict.fromkeys(kept))[:MAX_QUERY_TERMS]


def _field_text(fields: Mapping[str, object]) -> str:
    """Field values only (keys are the same on every page of a type: indexing them would match everything)."""
    values: list[str] = []
    for key in sorted(fields):
        value = fields[key]
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, Sequence):
            values.extend(str(v) for v in value)
        else:
            values.append(str(value))
    return "\n".join(values)


def columns(page_id: str, title: str, fields: Mapping[str, object], content: str) -> SearchColumns:
    """A page's index text per column."""
    return SearchColumns(
        " ".join(tokens(page_id)),
        " ".join(tokens(title)),
        " ".join(tokens(_field_text(fields))),
        " ".join(tokens(content)),
    )


def encode(cols: SearchColumns) -> str:
    """``pages.search_text``: the columns as a JSON array, which the index triggers read with json_extract."""
    return json.dumps(list(cols.as_tuple()), ensure_ascii=False, separators=(",", ":"))


def decode(search_text: str) -> SearchColumns:
    values = json.loads(search_text)
    return SearchColumns(str(values[0]), str(values[1]), str(values[2]), str(values[3]))


def weighted(cols: SearchColumns) -> tuple[int, dict[str, int]]:
    """A page's row length as FTS5 counts it (the namespace token included) and each term's hits summed over the
    columns times WEIGHTS: the two numbers bm25() reads of a row, which recall's own postings store."""
    freq: Counter[str] = Counter()
    length = 1
    for weight, text in zip(WEIGHTS, cols.as_tuple(), strict=True):
        words = text.split()
        length += len(words)
        for word in words:
            freq[word] += int(weight)
    return length, dict(freq)


def encode_postings(cols: SearchColumns) -> str:
    """``[length, {term: weighted freq}]``, what the commit trigger spreads into recall's postings."""
    length, freq = weighted(cols)
    return json.dumps([length, freq], ensure_ascii=False, separators=(",", ":"))


def namespace_token(namespace: str) -> str:
    """The one token a namespace is indexed under (its UTF-8 bytes in hex, which the commit trigger computes as
    ``'ns' || lower(hex(namespace))``), so MATCH itself keeps to the caller's namespaces and BM25 is computed only
    for their pages."""
    return "ns" + namespace.encode().hex()


def quote(term: str) -> str:
    """An FTS5 string: whatever the term holds, MATCH reads it as one phrase, never as syntax."""
    return '"' + term.replace('"', '""') + '"'


def match_expression(namespaces: Sequence[str], terms: Sequence[str]) -> str:
    """``ns : ("n1" OR "n2") AND {page_id title fields content} : ("t1" OR "t2" ...)``: any term in a page's text,
    within the namespaces."""
    scope = " OR ".join(quote(namespace_token(ns)) for ns in namespaces)
    return f"ns : ({scope}) AND {{{' '.join(COLUMNS)}}} : ({' OR '.join(quote(t) for t in terms)})"


def counts(cols: SearchColumns) -> tuple[Counter[str], ...]:
    """Each column's token counts, the form the in-memory store scores from."""
    return tuple(Counter(text.split()) for text in cols.as_tuple())


def bm25(doc: tuple[Counter[str], ...], terms: Sequence[str], idf: Mapping[str, float], avg_len: float) -> float:
    """FTS5's bm25() as SQLite computes it, negated so higher is better: a term's hits are summed over the columns
    times WEIGHTS before k1 saturates them, and the length is the whole row's (the namespace token included)."""
    length = 1 + sum(c.total() for c in doc)
    norm = K1 * (1 - B + B * length / avg_len)
    score = 0.0
    for term in terms:
        freq = sum(w * c[term] for w, c in zip(WEIGHTS, doc, strict=True))
        score += idf[term] * freq * (K1 + 1) / (freq + norm)
    return score


def idf(rows: int, with_term: int) -> float:
    """FTS5's BM25 idf: a term on more than half the rows weighs 1e-6, not less than nothing."""
    value = math.log((rows - with_term + 0.5) / (with_term + 0.5))
    return value if value > 0 else 1e-6


def search_text(page: Page) -> str:
    """What ``pages.search_text`` holds for a page, and what the commit trigger copies into the recall index."""
    return encode(columns(page.page_id, page.title, page.fields, page.content))


def matched(search_text: str, terms: Sequence[str]) -> int:
    """How many of ``terms`` a page's stored search text holds (recall reports it next to the score). Tokens are
    letters and digits only, so the JSON's quotes, commas and brackets split it as well as spaces do."""
    held = set(search_text.translate(_JSON_PUNCTUATION).split())
    return sum(t in held for t in terms)


_JSON_PUNCTUATION = str.maketrans('[],"', "    ")
