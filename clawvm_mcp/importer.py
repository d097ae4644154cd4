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
MEMORY.md                 the heading decides: one naming rules (rules, constraints, red lines, never,
                          must, ...) is a ``constraint``, one naming preferences (preferences, likes,
                          style, ...) a ``preference``; only under any other heading do the items
                          decide (``constraint`` when at least half start with never/always/must/do
                          not/don't/avoid)
========================  ==========================================================================

Page ids are ``ws/<file stem>/<NNN>``, the section's ordinal in its file: the prompt orders pages of a type by id,
so ordinals keep a file's sections in file order, and a section inserted or moved updates the pages after it in
place (bootstrap pages can be neither deleted nor unpinned, so ids that followed headings would leave duplicates).
Re-importing is idempotent: a page whose content, fields and provenance are unchanged is not written at all; a
changed one is ``set`` with ``base_version``; a MEMORY.md section that changed between constraint and preference is
unpinned, tombstoned and created again under its new type. Pages of an earlier import whose section is gone are
reported as stale and left in place. Only regular files directly in the workspace are read: a symbolic link, a
device, a FIFO or a directory under a workspace name is refused with its reason, and so is a file over the size
cap (``--max-file-bytes``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import stat
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
from .store import StoreError, open_store

FileKind = Literal["bootstrap", "preference", "memory"]
Action = Literal["created", "updated", "retyped", "unchanged", "rejected"]
MAX_FILE_BYTES = 64 * 1024
MAX_SECTIONS = 999

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
_PREFERENCE_HEADING = re.compile(
    r"\b(preferences?|prefers?|likes?|dislikes?|tastes?|style|favou?rites?|interests?|about|profile)\b",
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


@dataclass(frozen=True, slots=True)
class Refusal:
    """A workspace file the importer would not read, and why."""

    file: str
    reason: str


@dataclass(slots=True)
class ImportReport:
    session_id: str
    project_id: str
    directory: str
    files: list[str]
    pages: list[ImportedPage]
    stale: list[str]
    refused: list[Refusal] = field(default_factory=lambda: [])

    def count(self, action: Action) -> int:
        return sum(1 for p in self.pages if p.action == action)

    @property
    def ok(self) -> bool:
        return self.count("rejected") == 0 and not self.refused

    def to_json(self) -> dict[str, object]:
        return {
            "session_id": self.session_id,
            "project_id": self.project_id,
            "directory": self.directory,
            "files": self.files,
            "pages": [asdict(p) for p in self.pages],
            "stale": self.stale,
            "refused": [asdict(r) for r in self.refused],
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
    """A MEMORY.md section of rules: its heading says so; under a heading that names neither rules nor preferences,
    most of its list items are imperatives (a "Preferences" section whose items say "avoid" is still preferences)."""
    if section.heading is not None and _RULE_HEADING.search(section.heading):
        return True
    if section.heading is not None and _PREFERENCE_HEADING.search(section.heading):
        return False
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
    sections = split_sections(text)
    if len(sections) > MAX_SECTIONS:
        raise EngineError(f"{name} has {len(sections)} sections; the importer takes at most {MAX_SECTIONS} per file")
    for ordinal, section in enumerate(sections, start=1):
        page_type: PageType
        if kind == "bootstrap":
            page_type = "bootstrap"
        elif kind == "preference":
            page_type = "preference"
        else:
            page_type = "constraint" if is_rule_section(section) else "preference"
        fields = _preference_fields(section, name) if page_type == "preference" else None
        planned.append(
            PlannedPage(
                f"{PAGE_PREFIX}{stem}/{ordinal:03d}", page_type, section.text, f"ext:{name}#L{section.line}", fields
            )
        )
    return planned


def find_workspace_files(directory: Path) -> list[tuple[str, Path, FileKind]]:
    """Entries directly in ``directory`` named like a workspace file (case-insensitively), in mapping order; what
    kind of entry each is gets checked when it is read."""
    present = {p.name.upper(): p for p in sorted(directory.iterdir())} if directory.is_dir() else {}
    return [(path.name, path, kind) for name, kind in WORKSPACE_FILES.items() if (path := present.get(name.upper()))]


def read_workspace_file(path: Path, max_bytes: int) -> str | Refusal:
    """The file's text, or why it is refused: only a regular file (not a symbolic link, device, FIFO or directory)
    of at most ``max_bytes`` is read. The checks are made on the opened descriptor (``O_NOFOLLOW``, ``fstat``), so
    the entry cannot be swapped for a link between the check and the read, and a FIFO cannot block the open."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            target = os.readlink(path) if path.is_symlink() else "?"
            return Refusal(
                name, f"{name} is a symbolic link (to {target}); only regular files in the workspace are read"
            )
        return Refusal(name, f"{name} cannot be opened: {exc.strerror}")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        return Refusal(name, f"{name} is not a regular file ({kind}); only regular files are read")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            return Refusal(
                name,
                f"{name} is {info.st_size} bytes, over the {max_bytes}-byte cap per file "
                "(split it, or raise --max-file-bytes)",
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after fstat
        return Refusal(name, f"{name} is over the {max_bytes}-byte cap per file (split it, or raise --max-file-bytes)")
    return data.decode("utf-8-sig", errors="replace")


def plan_workspace(
    directory: Path, max_file_bytes: int = MAX_FILE_BYTES
) -> tuple[list[str], list[PlannedPage], list[Refusal]]:
    """The files read, the pages they become (each file's sections in file order) and the files refused."""
    names: list[str] = []
    pages: list[PlannedPage] = []
    refused: list[Refusal] = []
    for name, path, kind in find_workspace_files(directory):
        text = read_workspace_file(path, max_file_bytes)
        if isinstance(text, Refusal):
            refused.append(text)
            continue
        names.append(name)
        pages.extend(plan_file(name, text, kind))
    return names, pages, refused


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
    max_file_bytes: int = MAX_FILE_BYTES,
) -> ImportReport:
    """Start (or resume) the session and bring its project's ``ws/`` pages in line with the workspace files."""
    files, planned, refused = plan_workspace(directory, max_file_bytes)
    if not files and not refused:
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
    return ImportReport(session_id, started.project_id, str(directory), files, results, stale, refused)


# ---------------------------------------------------------------------------------------------- CLI


def render(report: ImportReport) -> str:
    width = max([len(p.page_id) for p in report.pages] + [4])
    lines = [
        f"{p.action:<9}  {p.page_id:<{width}}  {p.type:<10}  v{p.version:<3}  {p.ref}"
        + "".join(f"\n           {r}" for r in p.reasons)
        for p in report.pages
    ]
    lines += [f"refused    {r.file}  {r.reason}" for r in report.refused]
    lines += [f"stale      {pid}  (its section is gone from the workspace; left in place)" for pid in report.stale]
    counts = ", ".join(f"{report.count(a)} {a}" for a in ("created", "updated", "retyped", "unchanged", "rejected"))
    lines.append(
        f"imported {len(report.pages)} sections of {', '.join(report.files)} into session "
        f"{report.session_id} (project {report.project_id}): {counts}"
    )
    return "\n".join(lines)


def cmd_import(args: argparse.Namespace) -> int:
    directory: Path = args.directory
    db = db_path(args)
    if not directory.is_dir():
        print(f"Error: {directory} is not a directory", file=sys.stderr)
        return 2

    async def run() -> ImportReport:
        store = await open_store(db)
        try:
            engine = ClawVMEngine(store, config=EngineConfig(principal=args.principal))
            return await import_workspace(
                engine, args.session, directory, args.project, args.budget, args.max_file_bytes
            )
        finally:
            await store.close()

    try:
        report = anyio.run(run)
    except (EngineError, StoreError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else render(report))
    if report.refused:
        print(f"Error: {len(report.refused)} workspace file(s) refused (see the reasons above)", file=sys.stderr)
    if report.count("rejected"):
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
        "Re-running it writes only what changed. Symbolic links, devices and files over --max-file-bytes are "
        "refused. Exit status: 0 all written or unchanged, 1 some section rejected or file refused, 2 usage or "
        "database error.",
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
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        default=MAX_FILE_BYTES,
        help=f"refuse a workspace file larger than this (default {MAX_FILE_BYTES})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_import)
    return parser
