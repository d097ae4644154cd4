"""Pages loaded by their head: what the selector needs of a stored page, with the rest decoded on first use.

Opening a session reads every page of its namespaces, but a turn shows a few hundred of them. Decoding each
stored body (content, fields and four representation texts: 2-6 KB of JSON) was most of a 100,000-page
``session_start``. Instead the store's SQL extracts each body's *head* (ids, type, pin, floor, version,
utilities, turns, title, and the token count of every representation) and the page keeps its body text as it
is; ``content``, ``fields``, ``explicit_fields`` and ``representations`` are decoded from it the first time
anything asks. A lazy page is a ``Page`` in every respect: same fields, same equality, same ``replace``.

The head is read from the same row as the body in the same statement, so the two always describe one version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from ..pages import Fidelity, Page, Provenance, Representation

HEAD_FIELDS: tuple[str, ...] = (
    "page_id",
    "type",
    "scope",
    "pin",
    "min_fidelity",
    "version",
    "provenance",
    "recompute_cost",
    "base_utility",
    "created_turn",
    "last_access_turn",
    "title",
    "deleted",
)
TOKEN_LEVELS: tuple[Fidelity, ...] = (Fidelity.POINTER, Fidelity.STRUCTURED, Fidelity.COMPRESSED, Fidelity.FULL)
# the head's keys in the body, as key paths: a representation is stored as [text, tokens], so ("full", "1")
HEAD_KEYS: tuple[tuple[str, ...], ...] = (
    *((name,) for name in HEAD_FIELDS),
    *(("representations", lv.label, "1") for lv in TOKEN_LEVELS),
)
_HEAVY = ("content", "fields", "explicit_fields", "representations")
_SLOT = {name: Page.__dict__[name] for name in _HEAVY}  # Page's own slot descriptors, which the properties wrap
_PAGE_FIELDS = tuple(Page.__dataclass_fields__)


def _heavy(name: str) -> Any:
    slot = _SLOT[name]

    def get(self: LazyPage) -> Any:
        if self._body is not None:
            self._decode()
        return slot.__get__(self, Page)

    def set_(self: LazyPage, value: Any) -> None:
        slot.__set__(self, value)

    return property(get, set_, doc=f"{name}, decoded from the stored body on first use")


class LazyPage(Page):
    __slots__ = ("_body", "_tokens")
    _body: str | bytes | None  # the stored body (UTF-8 JSON), until decoded
    _tokens: tuple[int, ...]  # tokens by level (NONE .. FULL), from the head

    content = _heavy("content")
    fields = _heavy("fields")
    explicit_fields = _heavy("explicit_fields")
    representations = _heavy("representations")

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # dataclasses.replace builds a decoded copy this way
        self._body = None
        super().__init__(*args, **kwargs)

    def _decode(self) -> None:
        data = json.loads(self._body or "{}")
        self._body = None
        reps = data["representations"]
        _SLOT["content"].__set__(self, str(data["content"]))
        _SLOT["fields"].__set__(self, data["fields"])
        _SLOT["explicit_fields"].__set__(self, data.get("explicit_fields") or {})
        _SLOT["representations"].__set__(
            self, {Fidelity.parse(k): Representation(v[0], int(v[1])) for k, v in reps.items()}
        )

    @property
    def decoded(self) -> bool:
        return self._body is None

    def tokens_at(self, level: Fidelity) -> int:
        if self._body is not None:
            return self._tokens[level]
        return Page.tokens_at(self, level)

    def token_counts(self) -> tuple[int, ...]:
        if self._body is not None:
            return self._tokens
        return Page.token_counts(self)

    def __eq__(self, other: object) -> bool:  # the dataclass's __eq__ would refuse a plain Page (another class)
        if not isinstance(other, Page):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _PAGE_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # as Page's: mutable, compared by value


def head_of(body: Mapping[str, Any]) -> list[Any]:
    """The head of a stored body (``page_to_json``'s dict): its values at ``HEAD_KEYS``, None where one is absent,
    as SQLite's ``json_extract`` gives them. The commit derives the head from the very dict it stores, so the two
    cannot disagree."""
    out: list[Any] = []
    for keys in HEAD_KEYS:
        value: Any = body
        for key in keys:
            if isinstance(value, Mapping):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                value = None
        out.append(value)
    return out


_decode_json = json.JSONDecoder().raw_decode


def parse_head(text: str | bytes) -> list[Any]:
    """A stored head (a JSON array) as a list. ``raw_decode`` is ``json.loads`` without its wrappers' type checks
    and whitespace scans, a third of the time per head: heads are compact JSON of the store's own writing."""
    head: list[Any] = _decode_json(text if isinstance(text, str) else text.decode())[0]
    return head


@lru_cache(maxsize=4096)
def _provenance(source: Any, ref: str, turn: int) -> Provenance:
    """One (immutable) Provenance per distinct value: a table's pages share a few, and building a frozen
    dataclass per page was a tenth of loading one."""
    return Provenance(source, ref, turn)


def page_from_head(head: Sequence[Any], body: str | bytes) -> Page:
    """A page from its head (the values at ``HEAD_KEYS``, as a JSON array) and its body. The head is the store's
    own writing, so its values already have their types; only the two utilities may arrive as whole numbers.

    The body may be the stored UTF-8 bytes: a store that can hand them over undecoded should, since turning
    100,000 bodies (580 MB) into ``str`` cost more than reading them, and most are never decoded at all."""
    (pid, ptype, scope, pin, floor, version, prov, recompute, utility, created, accessed, title, deleted) = head[:13]
    pointer, structured, compressed, full = head[13:]
    if isinstance(prov, str):  # a nested object that a JSON function handed back as text
        prov = json.loads(prov)
    page = LazyPage.__new__(LazyPage)
    page._body = body
    page._tokens = (0, pointer or 0, structured or 0, compressed or 0, full or 0)  # by level, as TOKEN_LEVELS
    page.page_id = pid
    page.type = ptype
    page.scope = scope
    page.pin = pin
    page.min_fidelity = Fidelity.parse(floor)
    page.version = version
    page.provenance = _provenance(prov["source"], prov["ref"], prov["turn"])
    page.recompute_cost = float(recompute)
    page.base_utility = float(utility)
    page.created_turn = created
    page.last_access_turn = accessed
    page.title = title or ""
    page.dirty = False
    page.deleted = bool(deleted)
    return page
