"""``clawvm-mcp import``: an OpenClaw-style workspace (AGENTS.md, SOUL.md, USER.md, MEMORY.md, ...) as typed pages.

Each file is cut into sections at its ``#`` and ``##`` headings (deeper headings stay inside their section; a
``#`` inside a fenced code block is not a heading). Every section becomes one project-scoped page whose provenance
is ``ext:<file>#L<line>`` (source ``import``), written through the engine so that it is validated and journaled like
any other write. The mapping (documented in docs/ecosystem.md):

========================  ==========================================================================
file                      page type
========================  ==========================================================================
AGENTS.md, SOUL.md,       ``bootstrap`` (hard-pinned; never below its structured floor)
IDENTITY.md
USER.md, TOOLS.md         ``preference`` (key = section heading, value = the section's first words)
MEMORY.md                 ``constraint`` for a section of rules (its heading names rules, constraints,
                          red lines, never/always/must, ...; or at least half of its list items start
                          with never/always/must/do not/don't/avoid), else ``preference``
========================  ==========================================================================

Page ids are ``ws/<file stem>/<heading slug>`` (``intro`` for text before the first heading; a repeated heading
gets ``-2``, ``-3``). Re-importing is idempotent: a page whose content, fields and provenance are unchanged is not
written at all; a changed one is ``set`` with ``base_version``; a MEMORY.md section that changed between
constraint and preference is unpinned, tombstoned and created again under its new type. Pages of an earlier
import whose section is gone are reported as stale and left in place (bootstrap pages cannot be deleted).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import anyio

from .cli_options import add_db, add_principal, db_path
from .engine import ClawVMEngine, EngineConfig, EngineError
from .engine.results import ReasonOut
from .journal import WriteRequest
from .pages import Fields, Page, PageType, Provenance
from .store import SQLiteStore, StoreError

FileKind = Literal["bootstrap", "preference", "memory"]
Action = Literal["created", "updated", "retyped", "unchanged", "rejected"]

WORKSPACE_FILES: dict[str, FileKind] = {
    "AGENTS.md": "bootstrap",
    "SOUL.md": "bootstrap",
    "IDENTITY.md": "bootstrap",
    "USER.md": "preference",
    "TOOLS.md": "preference",
    "MEMORY.md": "memory",
}
PAGE_PREFIX = "ws/"
VALUE_CHARS = 200
_HEADING = re.compile(r"^(#{1,2})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")
_RULE_HEADING = re.compile(
    r"\b(rules?|constraints?|red[ -]lines?|never|always|must|policy|policies|guardrails?|boundaries|limits?|"
    r"requirements?|do not|don'?ts?|forbidden|prohibited)\b",
    re.IGNORECASE,
)
_RULE_ITEM = re.compile(r"^(?:\*\*)?(never|always|must|do not|don'?t|avoid)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Section:
    heading: str | None  # None for the text before the first heading
    line: int  # 1-based line of the heading (or of the first non-blank line of an intro)
    text: str  # the heading line and the body, trailing blank lines removed


@dataclass(frozen=True, slots=True)
class PlannedPage:
    page_id: str
    type: PageType
    content: str
    ref: str  # ext:<file>#L<line>
    fields: Fields | None = None


@dataclass(slots=True)
class ImportedPage:
    page_id: str
    type: str
    action: Action
    version: int
    ref: str
    reasons: list[str] = field(default_factory=lambda: [])


@dataclass(slots=True)
class ImportReport:
    session_id: str
    project_id: str
    directory: str
    files: list[str]
    pages: list[ImportedPage]
    stale: list[str]

    def count(self, action: Action) -> int:
        return sum(1 for p in self.pages if p.action == action)

    @property
    def ok(self) -> bool:
        return self.count("rejected") == 0

    def to_json(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "project_id": self.project_id,
            "directory": self.directory,
            "files": self.files,
            "pages": [asdict(p) for p in self.pages],
            "stale": self.stale,
            "counts": {a: self.count(a) for a in ("created", "updated", "retyped", "unchanged", "rejected")},
        }


# ---------------------------------------------------------------------------------------------- parsing (pure)


def split_sections(text: str) -> list[Section]:
    """Cut Markdown at ``#``/``##`` headings outside code fences; sections with no body are dropped."""
    sections: list[Section] = []
    heading: str | None = None
    heading_level = 0
    start = 0
    body: list[str] = []
    fence: str | None = None

    def close() -> None:
        lines = list(body)
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if not lines:
            return
        line = start if heading is not None else start + body.index(lines[0])
        head = [f"{'#' * heading_level} {heading}"] if heading is not None else []
        sections.append(Section(heading, line, "\n".join([*head, *lines])))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            fence = None if fence == marker else (fence or marker)
        match = None if fence is not None or fence_match else _HEADING.match(line)
        if match:
            close()
            heading, heading_level, start, body = match.group(2).strip(), len(match.group(1)), number, []
        else:
            if heading is None and not body:
                start = number
            body.append(line)
    close()
    return sections


def slugify(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-")


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _strip_markup(line: str) -> str:
    item = _LIST_ITEM.match(line)
    return (item.group(1) if item else line).strip().lstrip("#").strip()


def is_rule_section(section: Section) -> bool:
    """A MEMORY.md section of rules: its heading says so, or most of its list items are imperatives."""
    if section.heading is not None and _RULE_HEADING.search(section.heading):
        return True
    items = [m.group(1).strip() for ln in section.text.splitlines() if (m := _LIST_ITEM.match(ln))]
    rules = [i for i in items if _RULE_ITEM.match(i)]
    return bool(items) and 2 * len(rules) >= len(items)


def _preference_fields(section: Section, file: str) -> Fields:
    lines = section.text.splitlines()[1:] if section.heading is not None else section.text.splitlines()
    value = _clip(" ".join(_strip_markup(ln) for ln in lines if ln.strip()), VALUE_CHARS)
    key = section.heading or Path(file).stem.lower()
    return {"key": _clip(key, 80), "value": value or key, "scope_note": f"imported from {file}"}


def plan_file(name: str, text: str, kind: FileKind) -> list[PlannedPage]:
    """The pages one workspace file becomes, in file order; ``name`` is its path relative to the workspace."""
    stem = slugify(Path(name).stem) or "file"
    planned: list[PlannedPage] = []
    seen: dict[str, int] = {}
    for section in split_sections(text):
        slug = slugify(section.heading) if section.heading is not None else "intro"
        slug = slug or f"section-l{section.line}"
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        page_type: PageType
        if kind == "bootstrap":
            page_type = "bootstrap"
        elif kind == "preference":
            page_type = "preference"
        else:
            page_type = "constraint" if is_rule_section(section) else "preference"
        fields = _preference_fields(section, name) if page_type == "preference" else None
        planned.append(
            PlannedPage(f"{PAGE_PREFIX}{stem}/{slug}", page_type, section.text, f"ext:{name}#L{section.line}", fields)
        )
    return planned


def find_workspace_files(directory: Path) -> list[tuple[str, Path, FileKind]]:
    """Known files directly in ``directory`` (file names matched case-insensitively), in mapping order."""
    present = {p.name.upper(): p for p in directory.iterdir() if p.is_file()} if directory.is_dir() else {}
    return [(path.name, path, kind) for name, kind in WORKSPACE_FILES.items() if (path := present.get(name.upper()))]


def plan_workspace(directory: Path) -> tuple[list[str], list[PlannedPage]]:
    files = find_workspace_files(directory)
    pages: list[PlannedPage] = []
    for name, path, kind in files:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        pages.extend(plan_file(name, text, kind))
    return [name for name, _, _ in files], pages


# ---------------------------------------------------------------------------------------------- writing


def _unchanged(current: Page, planned: PlannedPage) -> bool:
    return (
        current.content == planned.content
        and current.provenance.ref == planned.ref
        and (planned.fields is None or current.explicit_fields == planned.fields)
        and not current.dirty
    )


async def _apply(
    engine: ClawVMEngine, session_id: str, current: Page | None, planned: PlannedPage, turn: int
) -> ImportedPage:
    prov = Provenance("import", planned.ref, turn)
    action: Action = "created"
    if current is not None and current.type != planned.type:
        if current.type == "bootstrap":
            return ImportedPage(
                planned.page_id,
                planned.type,
                "rejected",
                current.version,
                planned.ref,
                [f"INVARIANT_VIOLATION: {planned.page_id} is a bootstrap page; it cannot become a {planned.type} page"],
            )
        base = current.version
        if current.pin != "none":
            unpinned = await engine.pin(session_id, planned.page_id, "none")
            if unpinned.status != "committed":
                return _rejected(planned, unpinned.version, unpinned.reasons)
            base = unpinned.version
        deleted = await engine.write(session_id, WriteRequest("delete", planned.page_id, prov, base_version=base))
        if deleted.status != "committed":
            return _rejected(planned, deleted.version, deleted.reasons)
        current, action = None, "retyped"
    if current is None:
        req = WriteRequest(
            "create", planned.page_id, prov, planned.type, planned.content, planned.fields, scope="project"
        )
    else:
        if _unchanged(current, planned):
            return ImportedPage(planned.page_id, planned.type, "unchanged", current.version, planned.ref)
        action = "updated"
        req = WriteRequest(
            "set", planned.page_id, prov, planned.type, planned.content, planned.fields, base_version=current.version
        )
    result = await engine.write(session_id, req)
    if result.status != "committed":
        return _rejected(planned, result.version, result.reasons)
    return ImportedPage(planned.page_id, planned.type, action, result.version, planned.ref)


def _rejected(planned: PlannedPage, version: int, reasons: Sequence[ReasonOut]) -> ImportedPage:
    texts = [f"{r.code}: {r.detail}" for r in reasons]
    return ImportedPage(planned.page_id, planned.type, "rejected", version, planned.ref, texts)


async def import_workspace(
    engine: ClawVMEngine,
    session_id: str,
    directory: Path,
    project_id: str = "default",
    budget: int | None = None,
) -> ImportReport:
    """Start (or resume) the session and bring its project's ``ws/`` pages in line with the workspace files."""
    files, planned = plan_workspace(directory)
    if not files:
        raise EngineError(f"no workspace files in {directory} (looked for {', '.join(WORKSPACE_FILES)})")
    started = await engine.session_start(session_id, project_id, budget)
    current = {p.page_id: p for p in await engine.pages(session_id)}
    results = [await _apply(engine, session_id, current.get(page.page_id), page, started.turn) for page in planned]
    wanted = {p.page_id for p in planned}
    stale = sorted(
        p.page_id
        for p in await engine.pages(session_id)
        if p.page_id.startswith(PAGE_PREFIX) and p.page_id not in wanted and p.provenance.source == "import"
    )
    return ImportReport(session_id, started.project_id, str(directory), files, results, stale)


# ---------------------------------------------------------------------------------------------- CLI


def render(report: ImportReport) -> str:
    width = max([len(p.page_id) for p in report.pages] + [4])
    lines = [
        f"{p.action:<9}  {p.page_id:<{width}}  {p.type:<10}  v{p.version:<3}  {p.ref}"
        + "".join(f"\n           {r}" for r in p.reasons)
        for p in report.pages
    ]
    lines += [f"stale      {pid}  (its section is gone from the workspace; left in place)" for pid in report.stale]
    counts = ", ".join(f"{report.count(a)} {a}" for a in ("created", "updated", "retyped", "unchanged", "rejected"))
    lines.append(
        f"imported {len(report.pages)} sections of {', '.join(report.files)} into session "
        f"{report.session_id} (project {report.project_id}): {counts}"
    )
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    db: Path = db_path(args)
    if not directory.is_dir():
        print(f"Error: {directory} is not a directory", file=sys.stderr)
        return 2

    async def run() -> ImportReport:
        store = await SQLiteStore.open(db)
        try:
            engine = ClawVMEngine(store, config=EngineConfig(principal=args.principal))
            return await import_workspace(engine, args.session, directory, args.project, args.budget)
        finally:
            await store.close()

    try:
        report = anyio.run(run)
    except (EngineError, StoreError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else render(report))
    if not report.ok:
        print(
            "Error: some sections were rejected (see the reasons above); a larger --budget fits more hard-pinned pages",
            file=sys.stderr,
        )
    return 0 if report.ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add the ``import`` verb to ``clawvm-mcp``'s sub-commands."""
    parser = subparsers.add_parser(
        "import",
        help="import an OpenClaw-style workspace (AGENTS.md, SOUL.md, USER.md, MEMORY.md) as pages",
        description="Turn the workspace files in DIR into project pages with provenance ext:<file>#L<line>: "
        "AGENTS.md, SOUL.md and IDENTITY.md become hard-pinned bootstrap pages, USER.md and TOOLS.md preference "
        "pages, MEMORY.md sections constraint pages (rules) or preference pages. One page per # or ## section. "
        "Re-running it writes only what changed. Exit status: 0 all written or unchanged, 1 some section "
        "rejected, 2 usage or database error.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="the workspace directory")
    parser.add_argument("--session", required=True, help="session id (started, or resumed, by the import)")
    parser.add_argument("--project", default="default", help="project id for a new session (default: default)")
    add_db(parser)
    add_principal(parser)
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        help="token budget for a new session (default 4000); hard-pinned floors must fit in it",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_import)
    return parser
