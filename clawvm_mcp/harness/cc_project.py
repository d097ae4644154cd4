"""Which project a hook belongs to, and the project's bootstrap pages (its CLAUDE.md files).

The project id is derived from the project directory's resolved path, so it is the same in every hook process and
every session of that directory, and a second directory never resumes or reads the first's project pages.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine import PageInput
from ..pages import Provenance

MAX_BOOTSTRAP_BYTES = 60 * 1024  # under the 64 KiB page limit, with room for the truncation note
REMOVED = "(this file was removed from the project; none of its former rules apply)"


@dataclass(frozen=True, slots=True)
class BootstrapFile:
    page_id: str
    path: Path


def project_dir(cwd: str, env: dict[str, str] | None = None) -> Path:
    """``CLAUDE_PROJECT_DIR`` when Claude Code sets it (the project root, stable while the session's cwd moves),
    else the hook's ``cwd``."""
    env = dict(os.environ) if env is None else env
    chosen = env.get("CLAUDE_PROJECT_DIR") or cwd
    if not chosen:
        raise ValueError("the hook input has no cwd and CLAUDE_PROJECT_DIR is not set")
    return Path(chosen)


def project_id_for(directory: Path) -> str:
    """``cc-<directory name>-<12 hex of the resolved path>``: readable, stable, and unique per directory."""
    real = os.path.realpath(directory)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(real).name).strip("-._")[:40] or "root"
    return f"cc-{name}-{digest}"


def bootstrap_files(directory: Path, include_user: bool, home: Path | None = None) -> list[BootstrapFile]:
    """The CLAUDE.md files that become hard-pinned bootstrap pages, in a fixed order."""
    files = [
        BootstrapFile("claude-code/claude.md", directory / "CLAUDE.md"),
        BootstrapFile("claude-code/dot-claude/claude.md", directory / ".claude" / "CLAUDE.md"),
    ]
    if include_user:
        files.append(BootstrapFile("claude-code/user/claude.md", (home or Path.home()) / ".claude" / "CLAUDE.md"))
    return files


def read_bootstrap(files: list[BootstrapFile]) -> tuple[list[PageInput], list[str], list[str]]:
    """(pages for the files that exist, page ids of files that are gone, warnings). A file too large for one page
    is cut, and the cut is said in the page itself and in the warnings."""
    pages: list[PageInput] = []
    missing: list[str] = []
    warnings: list[str] = []
    for item in files:
        try:
            raw = item.path.read_bytes()
        except FileNotFoundError:
            missing.append(item.page_id)
            continue
        except OSError as exc:
            warnings.append(f"cannot read {item.path}: {exc.strerror or exc}; its bootstrap page was not refreshed")
            continue
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            missing.append(item.page_id)
            continue
        if len(raw) > MAX_BOOTSTRAP_BYTES:
            text = raw[:MAX_BOOTSTRAP_BYTES].decode("utf-8", errors="ignore")
            text += f"\n[… clawvm kept the first {MAX_BOOTSTRAP_BYTES} of {len(raw)} bytes of {item.path} …]"
            warnings.append(
                f"{item.path} is {len(raw)} bytes; its bootstrap page keeps the first {MAX_BOOTSTRAP_BYTES}"
            )
        pages.append(
            PageInput(
                page_id=item.page_id,
                content=text,
                type="bootstrap",
                provenance=Provenance("import", f"ext:{item.path}", 0),
            )
        )
    return pages, missing, warnings
