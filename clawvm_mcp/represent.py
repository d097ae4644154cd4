"""Deterministic derivation of the four representations at ingest (never under budget pressure, no model call)."""

from __future__ import annotations

import hashlib
import re

from .pages import STORED_LEVELS, TYPE_POLICIES, Fidelity, Fields, PageType, Representation
from .tokens import TokenCounter

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ xX]\]\s*)?")
_DONE = re.compile(r"^\s*(?:[-*+]|\d+[.)])?\s*\[[xX]\]")
_TODO = re.compile(r"^\s*(?:[-*+]|\d+[.)])?\s*\[ \]")
# each run is bounded (NAME_MAX is 255): unbounded runs made this quadratic on a long token (60 KB: ~60 s)
_PATH = re.compile(r"(?:[\w.-]{1,255}/)+[\w.-]{1,255}|[\w-]{1,255}\.[A-Za-z0-9]{1,5}\b")
_KEY_VALUE = re.compile(r"^\s*([^:=\n]{1,64}?)\s*[:=]\s*(.+)$")
GIST_CHARS = 160


def _lines(content: str) -> list[str]:
    return [ln.strip() for ln in content.splitlines() if ln.strip()]


def _strip_marker(line: str) -> str:
    return _LIST_ITEM.sub("", line).lstrip("#").strip()


def _clip(text: str, limit: int = GIST_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def derive_title(content: str, page_id: str) -> str:
    lines = _lines(content)
    return _clip(_strip_marker(lines[0]), 80) if lines else page_id


def derive_fields(page_type: PageType, page_id: str, content: str) -> Fields:
    """Structured fields read off the content; callers may supply their own instead."""
    lines = _lines(content)
    first = _strip_marker(lines[0]) if lines else ""
    rest = lines[1:]
    if page_type == "bootstrap":
        items = [_strip_marker(ln) for ln in rest if _LIST_ITEM.match(ln)] or [_strip_marker(ln) for ln in rest]
        return {"title": first, "rules": [r for r in items if r] or ([first] if first else [])}
    if page_type == "constraint":
        return {"rule": _clip(" ".join(_strip_marker(ln) for ln in lines), 400), "applies_to": "*"}
    if page_type == "plan":
        done = [_strip_marker(ln) for ln in lines if _DONE.match(ln)]
        left = [_strip_marker(ln) for ln in lines if _TODO.match(ln)]
        if not done and not left:
            left = [_strip_marker(ln) for ln in rest]
        return {"goal": first, "current_step": left[0] if left else "", "steps_done": done, "steps_left": left}
    if page_type == "preference":
        match = _KEY_VALUE.match(lines[0]) if lines else None
        if match:
            return {"key": match.group(1).strip(), "value": _clip(match.group(2)), "scope_note": ""}
        return {"key": page_id, "value": _clip(first), "scope_note": ""}
    if page_type == "evidence":
        paths = sorted(set(_PATH.findall(content)))[:16]
        return {"tool": "", "args_digest": "", "summary": _clip(first), "paths": paths}
    return {"span_id": page_id, "role": "", "started_at": "", "ended_at": "", "gist": _clip(" ".join(lines))}


def render_structured(page_type: PageType, fields: Fields) -> str:
    out: list[str] = []
    for name in TYPE_POLICIES[page_type].fields:
        value = fields.get(name)
        if value in (None, "", []):
            continue
        out.append(f"{name}: {'; '.join(value) if isinstance(value, list) else value}")
    return "\n".join(out)


def compress(content: str, head: int = 3, tail: int = 2) -> str:
    """Extractive: collapse whitespace and repeated lines, keep head and tail lines (target <= 1/3 of full)."""
    kept: list[str] = []
    for ln in _lines(content):
        norm = " ".join(ln.split())
        if not kept or kept[-1] != norm:
            kept.append(norm)
    if len(kept) > head + tail + 1:
        kept = [*kept[:head], f"[… {len(kept) - head - tail} lines omitted …]", *kept[-tail:]]
    text = "\n".join(kept)
    budget = max(48, len(content) // 3)
    if len(text) > budget:
        half = budget // 2
        text = text[:half].rstrip() + " … " + text[-half:].lstrip()
    return text


def pointer(page_id: str, page_type: PageType, version: int, title: str, full_tokens: int, fields: Fields) -> str:
    label = title
    if page_type == "plan":  # plan's floor is "goal + current step": its pointer carries both
        label = f"goal: {fields.get('goal', '')}; current step: {fields.get('current_step', '')}"
    return f"[page {page_id} {page_type} v{version}: {label} — {full_tokens} tokens at full; page_read to load]"


def content_digest(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def build_representations(
    counter: TokenCounter,
    *,
    page_id: str,
    page_type: PageType,
    version: int,
    title: str,
    content: str,
    fields: Fields,
    compressed: str | None = None,
) -> dict[Fidelity, Representation]:
    full = content
    comp = compressed if compressed is not None else compress(content)
    structured = render_structured(page_type, fields) or _clip(title)
    full_tokens = counter.count(full)
    texts = {
        Fidelity.FULL: full,
        Fidelity.COMPRESSED: comp,
        Fidelity.STRUCTURED: structured,
        Fidelity.POINTER: pointer(page_id, page_type, version, title, full_tokens, fields),
    }
    reps = {
        lv: Representation(texts[lv], full_tokens if lv is Fidelity.FULL else counter.count(texts[lv]))
        for lv in STORED_LEVELS
    }
    return reps
