"""The hook's own bookkeeping between its processes, kept in a directory beside the database.

This is not memory (the store is the only truth): it records what was last injected into a session's transcript
(so a prompt-time injection can be limited to what changed), whether PreCompact reached its boundary, which
session a project had before ``/clear``, and how many side-effecting tool calls a session has seen. Losing it is
harmless: the next injection is a full one, and a stored scan result is not served from memory.

One lock per project serialises the hook processes of that project (``/clear`` runs SessionEnd of the old session
and SessionStart of the new one about 40 ms apart, so their processes overlap); a lock that cannot be had within
its timeout is skipped with a warning rather than blocking the user's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; hooks of one project then run unserialised
    fcntl = None  # type: ignore[assignment]

LOCK_TIMEOUT_S = 10.0
Json = dict[str, Any]


def state_dir_for(db: Path) -> Path:
    return db.with_name(db.name + ".claude-code")


def _file_name(key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return f"{safe}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}.json"


@dataclass(frozen=True, slots=True)
class HookState:
    root: Path

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / _file_name(key)

    def _load(self, kind: str, key: str) -> Json:
        try:
            data = json.loads(self._path(kind, key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _store(self, kind: str, key: str, data: Json) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ---------------------------------------------------------------- sessions

    def session(self, session_id: str) -> Json:
        return self._load("sessions", session_id)

    def update_session(self, session_id: str, **changes: Any) -> Json:
        data = {**self.session(session_id), **changes}
        self._store("sessions", session_id, data)
        return data

    def injected(self, session_id: str) -> dict[str, int] | None:
        """Page id -> version of what the transcript was last given, or None if nothing is known."""
        shown = self.session(session_id).get("injected")
        if not isinstance(shown, dict):
            return None
        return {str(k): int(v) for k, v in shown.items() if isinstance(v, int)}

    def cleared_recently(self, project_id: str, within_s: float) -> str | None:
        """The session of this project whose SessionEnd(clear) began in the last ``within_s`` seconds, newest first
        (each session file is written only by that session's hooks, so no other hook's write can lose this)."""
        folder = self.root / "sessions"
        now = time.time()
        best: tuple[float, str] | None = None
        try:
            paths = [p for p in folder.iterdir() if p.suffix == ".json" and now - p.stat().st_mtime < within_s]
        except OSError:
            return None
        for path in paths:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or data.get("ending") != "clear" or data.get("project") != project_id:
                continue
            at, session = data.get("ending_at"), data.get("session")
            if isinstance(at, int | float) and isinstance(session, str) and now - at < within_s:
                if best is None or at > best[0]:
                    best = (float(at), session)
        return None if best is None else best[1]

    # ---------------------------------------------------------------- projects

    def project(self, project_id: str) -> Json:
        return self._load("projects", project_id)

    def update_project(self, project_id: str, **changes: Any) -> None:
        self._store("projects", project_id, {**self.project(project_id), **changes})

    @contextlib.contextmanager
    def project_lock(self, project_id: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[bool]:
        """Hold the project's lock; yields False (and holds nothing) when it could not be had within ``timeout``."""
        if fcntl is None:
            yield False
            return
        path = self._path("locks", project_id).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.02)
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
