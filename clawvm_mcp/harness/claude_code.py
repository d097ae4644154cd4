"""``clawvm-mcp hook claude-code EVENT``: Claude Code's hooks enforce the memory contract, not the model.

One short process per hook event. It reads the hook's JSON on stdin, keys the session on the hook's own
``session_id`` and the project on ``CLAUDE_PROJECT_DIR`` (else the hook's ``cwd``), drives the engine directly on the
same database the MCP server uses, and prints only what Claude Code accepts on stdout: one hook-output JSON object,
or nothing. Diagnostics go to stderr. It always exits 0: a memory hook never blocks the user's work; a failure it
cannot recover from is said out loud instead (in the injected context and to the user where Claude Code allows).

Per event (docs/claude-code.md has the reasons):
- SessionStart: start or resume the session with the project's CLAUDE.md as hard-pinned bootstrap pages; inject the
  assembled prompt. After ``compact`` this is the re-injection (the first assembly after the boundary, where the
  engine observes ``post_compaction_bootstrap``); after ``clear`` the previous session is ended with everything
  staged committed, and its session constraints are carried into the new session.
- UserPromptSubmit: record the prompt as a conversation page; inject only the bootstrap / constraint / plan /
  preference pages that changed since the last injection.
- PreToolUse: answer an idempotent repeat from memory (deny, with the stored result as the reason) when the result
  is certain to be current; otherwise pass through.
- PostToolUse: record the call and its result through ``tool_execute`` (TodoWrite becomes the plan page).
- PreCompact: flush and the compaction boundary. Stop: ``turn_end`` (no commit). SessionEnd: ``session_end``.

This module never imports ``mcp``: a hook starts without loading the SDK.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..cli_options import add_db, add_principal, db_path
from ..engine import ClawVMEngine, EngineConfig, EngineError
from ..engine.results import AssembleResult, PageSummary
from ..journal import WriteRequest
from ..pages import Pin, Provenance
from ..store import StoreError, open_store
from ..tokens import TokenCounter
from .cc_config import HookConfig, is_memory_tool, load_config
from .cc_context import Block, changed_blocks, fit, header, manifest, split_blocks
from .cc_io import EVENTS, Event, HookInput, Json, PayloadError, context_output, deny_output, encode, parse_input
from .cc_project import REMOVED, bootstrap_files, project_dir, project_id_for, read_bootstrap
from .cc_state import HookState, state_dir_for
from .cc_tools import CUT_MARK, FS_SCANS, answer_reason, read_is_current, render_result, todo_plan

log = logging.getLogger(__name__)
PLAN_PAGE = "plan/claude-code-todos"
MAX_PROMPT_BYTES = 60 * 1024
MAX_SCANS = 500
CLEAR_WINDOW_S = 60.0  # SessionStart(clear) follows its SessionEnd(clear) by about 40 ms
CONTEXT_EVENTS: tuple[Event, ...] = ("SessionStart", "UserPromptSubmit")
SITUATIONS = {
    "startup": "session start",
    "resume": "resumed session",
    "clear": "after /clear: a new session with the project's bootstrap and constraints",
    "compact": "after compaction: bootstrap, constraints and plan re-injected",
}


@dataclass(frozen=True, slots=True)
class HookOptions:
    db: Path
    principal: str = "local"
    config: Path | None = None


@dataclass(slots=True)
class HookOutcome:
    output: Json | None
    messages: list[str] = field(default_factory=lambda: [])


def _scan_key(tool: str, args: Mapping[str, Any]) -> str:
    text = tool + "\x00" + json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _pin(value: str) -> Pin:
    return "hard" if value == "hard" else "soft" if value == "soft" else "none"


class ClaudeCodeHook:
    """One hook event for one session of one project, against an open engine."""

    def __init__(
        self,
        engine: ClawVMEngine,
        state: HookState,
        config: HookConfig,
        payload: HookInput,
        directory: Path,
        notes: list[str],
    ) -> None:
        self.engine = engine
        self.state = state
        self.config = config
        self.payload = payload
        self.directory = directory
        self.project_id = project_id_for(directory)
        self.sid = payload.session_id
        self.notes = notes  # warnings: stderr, and the next injected context
        self.debug: list[str] = []  # stderr only
        self.turn = 0

    async def run(self) -> Json | None:
        handler = {
            "SessionStart": self.session_start,
            "UserPromptSubmit": self.user_prompt,
            "PreToolUse": self.pre_tool,
            "PostToolUse": self.post_tool,
            "PreCompact": self.pre_compact,
            "Stop": self.stop,
            "SessionEnd": self.session_end,
        }[self.payload.event]
        return await handler()

    # ------------------------------------------------------------------ sessions and bootstrap

    async def _start(self, refresh_bootstrap: bool) -> None:
        """Start or resume the session (an ended one too: a late hook must never find it dead)."""
        files = bootstrap_files(self.directory, self.config.user_claude_md) if refresh_bootstrap else []
        pages, missing, warnings = read_bootstrap(files)
        self.notes.extend(warnings)
        if refresh_bootstrap:  # SessionStart: the explicit start, which also settles what a crash left staged
            started = await self.engine.session_start(self.sid, self.project_id, self.config.budget, pages)
        else:  # every other event joins the live session: only a boundary commits what is staged
            started = await self.engine.open_session(self.sid, self.project_id, self.config.budget)
        self.turn = started.turn
        self.notes.extend(
            f"bootstrap page {r.page_id} was refused: {'; '.join(x.detail for x in r.reasons)}. Claude Code still "
            "loads the file itself, but clawvm cannot bring it back after compaction: raise 'budget' in "
            ".claude/clawvm.json or shorten CLAUDE.md"
            for r in started.bootstrap
            if r.status == "rejected"
        )
        if started.settled_committed or started.settled_rejected:
            self.debug.append(
                f"settled staged writes: {started.settled_committed} committed, {started.settled_rejected} rejected"
            )
        if missing:
            await self._retire(missing, {f.page_id: f.path for f in files})

    async def _retire(self, missing: Sequence[str], paths: Mapping[str, Path]) -> None:
        """A CLAUDE.md that was removed: its page (bootstrap pages cannot be deleted) says so instead of keeping
        rules that no longer apply."""
        listing = await self.engine.list_pages(self.sid, "bootstrap")
        for summary in listing.pages:
            if summary.page_id not in missing:
                continue
            current = await self.engine.read(self.sid, summary.page_id, "full")
            if current.page is None or current.page.text == REMOVED:
                continue
            prov = Provenance("import", f"ext:{paths[summary.page_id]}", self.turn)
            req = WriteRequest("set", summary.page_id, prov, "bootstrap", REMOVED, base_version=summary.version)
            result = await self.engine.write(self.sid, req)
            self.debug.append(f"{paths[summary.page_id]} is gone: page {summary.page_id} {result.status}")

    # ------------------------------------------------------------------ context

    async def _assemble(self, room: int) -> AssembleResult:
        """Assemble at the configured budget; if the text is over the room, assemble again at a budget scaled to
        fit (twice at most), so the engine's view of what is resident matches what the model is shown."""
        budget = self.config.budget
        result = await self.engine.assemble(self.sid, budget=budget)
        for _ in range(2):
            if len(result.prompt) <= room or result.tokens_used <= 0:
                break
            smaller = int(result.tokens_used * room / len(result.prompt) * 0.9)
            if smaller < 1 or smaller >= budget:
                break
            budget = smaller
            result = await self.engine.assemble(self.sid, budget=budget)
        return result

    def _frame(self, title: str, body: str, result: AssembleResult, omitted: int, cut: bool, empty: str) -> str:
        lines = [title]
        lines.extend(f"clawvm WARNING: {note[:400]}" for note in self.notes)
        if result.physical_insufficiency:
            lines.append(
                f"clawvm WARNING: the pinned pages need {result.shortfall_tokens} tokens more than the budget of "
                f"{result.budget}; not shown: {', '.join(result.unmet_required)[:400]}. Raise 'budget' in "
                ".claude/clawvm.json or shorten CLAUDE.md."
            )
        if omitted or cut:
            lines.append(
                f"({omitted} lower-priority page(s) left out{' and one cut' if cut else ''} to stay under Claude "
                "Code's 10,000-character cap; page_list and page_read show everything.)"
            )
        return "\n".join(lines) + "\n\n" + (body or empty)

    def _compose(
        self, title: str, result: AssembleResult, blocks: Sequence[Block] | None, empty: str
    ) -> tuple[str, list[Block]]:
        """Title, warnings and as many whole blocks as fit under ``max_chars`` (the raw prompt when it has no
        blocks); re-fitted until the whole text fits, since the notes about what was left out have a length too."""
        limit = self.config.max_chars
        room = limit - len(self._frame(title, "", result, 0, False, empty))
        text, shown = "", list[Block]()
        for _ in range(4):
            if blocks is None:
                body = result.prompt[: max(room, 0)]
                text = self._frame(title, body, result, 0, len(body) < len(result.prompt), empty)
                shown = []
            else:
                fitted = fit(blocks, max(room, 0))
                text = self._frame(title, fitted.text, result, fitted.omitted, fitted.cut, empty)
                shown = fitted.shown
            over = len(text) - limit
            if over <= 0:
                return text, shown
            room -= over
        return text[:limit], shown

    def _room(self, title: str) -> int:
        """Characters left for page blocks before assembling (used to size the assembly's budget)."""
        return max(200, self.config.max_chars - len(self._frame(title, "", _EMPTY, 0, False, "")) - 300)

    async def _full_context(self, situation: str) -> tuple[str, list[Block]]:
        title = header(self.sid, self.project_id, situation)
        result = await self._assemble(self._room(title))
        return self._compose(title, result, split_blocks(result.prompt), "(no pages in memory yet)")

    # ------------------------------------------------------------------ events

    async def session_start(self) -> Json | None:
        source = self.payload.source or "startup"
        carried: list[tuple[str, PageSummary, str]] = []
        if source == "clear":
            carried = await self._hand_over()
        else:
            await self._finish_interrupted_end()
        await self._start(refresh_bootstrap=True)
        if carried:
            await self._carry(carried)
        if source == "compact" and not self.state.session(self.sid).get("compaction_recorded"):
            done = await self.engine.lifecycle(self.sid, "compaction")
            self.debug.append(f"PreCompact left no boundary; recorded it now (committed {done.committed})")
        text, shown = await self._full_context(SITUATIONS.get(source, f"session start ({source})"))
        self.state.update_session(self.sid, injected=manifest(shown), compaction_recorded=False)
        self.state.update_project(self.project_id, last_session=self.sid, directory=str(self.directory))
        return context_output("SessionStart", text)

    async def user_prompt(self) -> Json | None:
        await self._start(refresh_bootstrap=True)
        await self._record_prompt()
        shown = self.state.injected(self.sid)
        if self.state.session(self.sid).get("compaction_recorded"):
            # PreCompact marked a boundary, but no SessionStart(compact) re-injected after it: this prompt does
            situation = "after compaction: re-injected at this prompt, as no SessionStart(compact) did"
            text, full = await self._full_context(situation)
            self.state.update_session(self.sid, injected=manifest(full), compaction_recorded=False)
            return context_output("UserPromptSubmit", text)
        if self.config.prompt_context == "full" or shown is None:
            text, full = await self._full_context("this prompt")
            self.state.update_session(self.sid, injected=manifest(full))
            return context_output("UserPromptSubmit", text)
        title = header(self.sid, self.project_id, "changed since it was last shown")
        result = await self._assemble(self._room(title))
        blocks = split_blocks(result.prompt)
        if blocks is None:  # without page blocks nothing can be told apart: show it all
            whole = header(self.sid, self.project_id, "this prompt")
            text, _ = self._compose(whole, result, None, "(no pages in memory yet)")
            return context_output("UserPromptSubmit", text)
        changed = changed_blocks(blocks, shown)
        if not changed and not self.notes and not result.physical_insufficiency:
            return None
        text, injected = self._compose(title, result, changed, "(no page changed)")
        self.state.update_session(self.sid, injected={**shown, **manifest(injected)})
        return context_output("UserPromptSubmit", text)

    async def _record_prompt(self) -> None:
        prompt = self.payload.prompt
        if not prompt.strip():
            return
        data = prompt.encode("utf-8", "surrogatepass")
        if len(data) > MAX_PROMPT_BYTES:
            prompt = data[:MAX_PROMPT_BYTES].decode("utf-8", "ignore") + "\n[… clawvm kept the first 60 KiB …]"
        digest = hashlib.sha256(data).hexdigest()[:10]
        page_id = f"conversation/prompt-{self.turn:05d}-{digest}"
        where = self.payload.transcript_path or "claude-code-transcript"
        prov = Provenance("user", f"ext:{where}#prompt-turn-{self.turn}", self.turn)
        result = await self.engine.write(self.sid, WriteRequest("create", page_id, prov, "conversation", prompt))
        if result.status == "rejected" and not all(r.code == "DESTRUCTIVE_OP" for r in result.reasons):
            self.notes.append("the prompt was not recorded: " + "; ".join(r.detail for r in result.reasons))

    async def pre_tool(self) -> Json | None:
        tool = self.payload.tool_name
        if is_memory_tool(tool) or not self.config.answer_from_memory or not self.config.is_idempotent(tool):
            return None
        await self._start(refresh_bootstrap=False)
        found = await self.engine.tool_execute(self.sid, tool, self.payload.tool_input, None, idempotent=True)
        stored = found.stored_result
        if found.status != "duplicate_signature" or stored is None:
            self.debug.append(f"{tool}: {found.status}, runs")
            return None
        why = self._still_true(tool, stored)
        if why is None:
            self.debug.append(f"{tool}: the stored result may be out of date; runs again")
            return None
        if len(stored) > self.config.max_answer_chars:
            self.debug.append(f"{tool}: stored result is {len(stored)} characters; over max_answer_chars, runs")
            return None
        self.debug.append(f"{tool}: answered from memory ({found.call_id})")
        return deny_output(answer_reason(tool, why, found.call_id, found.evidence_page_id, stored))

    def _still_true(self, tool: str, stored: str) -> str | None:
        """Why the stored result is still what the tool would return, or None when that is not certain."""
        if CUT_MARK in stored:
            return None
        if tool == "Read":
            return "the file is unchanged on disk" if read_is_current(self.payload.tool_input, stored) else None
        if tool in FS_SCANS:
            session = self.state.session(self.sid)
            scans = session.get("scans", {})
            seen = scans.get(_scan_key(tool, self.payload.tool_input)) if isinstance(scans, dict) else None
            if seen is None or seen != session.get("side_effects", 0):
                return None
            return "no edit, write or command has run since it was stored"
        return "a read-only tool whose stored result is still valid"

    async def post_tool(self) -> Json | None:
        tool = self.payload.tool_name
        if is_memory_tool(tool):
            return None
        await self._start(refresh_bootstrap=False)
        if tool == "TodoWrite":
            await self._keep_plan()
            return None
        idempotent = self.config.is_idempotent(tool)
        text = render_result(tool, self.payload.tool_response)
        done = await self.engine.tool_execute(self.sid, tool, self.payload.tool_input, text, idempotent=idempotent)
        self.debug.append(f"{tool}: {done.status} as {done.call_id} (page {done.evidence_page_id})")
        session = self.state.session(self.sid)
        side_effects = int(session.get("side_effects", 0))
        if not idempotent:
            self.state.update_session(self.sid, side_effects=side_effects + 1)
        elif tool in FS_SCANS:
            scans = session.get("scans", {})
            scans = dict(scans) if isinstance(scans, dict) else {}
            scans[_scan_key(tool, self.payload.tool_input)] = side_effects
            self.state.update_session(self.sid, scans=dict(list(scans.items())[-MAX_SCANS:]))
        return None

    async def _keep_plan(self) -> None:
        content = todo_plan(self.payload.tool_input)
        if content is None:
            return
        prov = Provenance("model", f"ext:claude-code/TodoWrite#{self.payload.tool_use_id or 'call'}", self.turn)
        current = await self.engine.read(self.sid, PLAN_PAGE, "full")
        if current.page is not None and current.page.text == content:
            return
        if current.page is None:
            req = WriteRequest("create", PLAN_PAGE, prov, "plan", content)
        else:
            req = WriteRequest("set", PLAN_PAGE, prov, "plan", content, base_version=current.page.version)
        result = await self.engine.write(self.sid, req)
        if result.status == "rejected":
            self.notes.append("the todo list was not kept: " + "; ".join(r.detail for r in result.reasons))

    async def pre_compact(self) -> Json | None:
        await self._start(refresh_bootstrap=False)
        flushed = await self.engine.lifecycle(self.sid, "flush")
        boundary = await self.engine.lifecycle(self.sid, "compaction")
        self.state.update_session(self.sid, compaction_recorded=True)
        rejected = flushed.rejected + boundary.rejected
        self.debug.append(
            f"compaction ({self.payload.trigger or 'unknown'} trigger): committed "
            f"{flushed.committed + boundary.committed}, rejected {rejected}, re-injected {boundary.reinjected}"
        )
        if rejected:
            self.notes.append(f"{rejected} staged write(s) were rejected at compaction; the journal says why")
        return None

    async def stop(self) -> Json | None:
        await self._start(refresh_bootstrap=False)
        await self.engine.lifecycle(self.sid, "turn_end")  # a turn boundary only: staged writes wait
        return None

    async def session_end(self) -> Json | None:
        record = await self.engine.store.get_session(self.sid)
        if record is None or record.ended:  # nothing started, or SessionStart(clear) already handed it over
            self.state.update_session(self.sid, ending=None)
            return None
        done = await self.engine.lifecycle(self.sid, "session_end")
        self.state.update_session(self.sid, ending=None)
        self.debug.append(f"session_end ({self.payload.reason or 'no reason'}): committed {done.committed}")
        return None

    async def _finish_interrupted_end(self) -> None:
        """Claude Code gives a plugin's SessionEnd hooks 1.5 s in all and then cancels them. A previous session of
        the project whose SessionEnd began (``mark_ending``) but never finished is ended here, its staged writes
        committed. A session without that mark may be another window's, still live: it is left alone."""
        old = self.state.project(self.project_id).get("last_session")
        if not isinstance(old, str) or old == self.sid or not self.state.session(old).get("ending"):
            return
        record = await self.engine.store.get_session(old)
        if record is not None and not record.ended and record.project_id == self.project_id:
            done = await self.engine.lifecycle(old, "session_end")
            self.debug.append(f"finished the interrupted SessionEnd of {old} (committed {done.committed})")
        self.state.update_session(old, ending=None)

    # ------------------------------------------------------------------ /clear

    async def _hand_over(self) -> list[tuple[str, PageSummary, str]]:
        """End the session ``/clear`` left (whichever of its SessionEnd and this SessionStart runs first), with
        everything staged committed, and return its session-scoped constraints to carry over."""
        # this /clear's own SessionEnd marks its session (right even with two windows on the project); if this
        # hook won the race against that mark, the project's most recent session is the one being cleared
        old = self.state.cleared_recently(self.project_id, CLEAR_WINDOW_S)
        if old is None or old == self.sid:
            old = self.state.project(self.project_id).get("last_session")
        if not isinstance(old, str) or old == self.sid:
            return []
        record = await self.engine.store.get_session(old)
        if record is None or record.project_id != self.project_id:
            return []
        await self.engine.session_start(old, self.project_id)  # resumes it; settles what a crash left staged
        listing = await self.engine.list_pages(old, "constraint", "session")
        carried: list[tuple[str, PageSummary, str]] = []
        for summary in listing.pages:
            page = (await self.engine.read(old, summary.page_id, "full")).page
            if page is not None:
                carried.append((old, summary, page.text))
        ended = await self.engine.lifecycle(old, "session_end")
        self.state.update_session(old, ending=None)
        self.debug.append(f"/clear: ended {old} (committed {ended.committed}); carrying {len(carried)} constraint(s)")
        return carried

    async def _carry(self, carried: Sequence[tuple[str, PageSummary, str]]) -> None:
        have = {p.page_id for p in (await self.engine.list_pages(self.sid)).pages}
        for old, summary, text in carried:
            if summary.page_id in have:
                continue
            prov = Provenance("harness", f"ext:clawvm/session/{old}/{summary.page_id}@v{summary.version}", self.turn)
            req = WriteRequest(
                "create", summary.page_id, prov, "constraint", text, scope="session", pin=_pin(summary.pin)
            )
            result = await self.engine.write(self.sid, req)
            if result.status == "rejected":
                self.notes.append(
                    f"constraint {summary.page_id} was not carried over: " + "; ".join(r.detail for r in result.reasons)
                )


_EMPTY = AssembleResult(
    prompt="",
    pages=[],
    tokens_used=0,
    budget=0,
    unmet_required=[],
    physical_insufficiency=False,
    shortfall_tokens=0,
    turn=0,
)


# ---------------------------------------------------------------------------------------------- process level


def failure(event: Event, problem: str, messages: list[str]) -> HookOutcome:
    """Memory is off for this event: say so to the model and the user where Claude Code shows text, never block."""
    messages.append(problem)
    if event not in CONTEXT_EVENTS:
        return HookOutcome(None, messages)
    text = (
        f"[clawvm memory is OFF: {problem}]\n"
        "Nothing from clawvm's memory is in this context and nothing is being recorded, so pinned rules, "
        "constraints and the plan kept there are not shown here. Tell the user if this matters for the task."
    )
    return HookOutcome(context_output(event, text, user_message=f"clawvm memory is off: {problem}"), messages)


def mark_ending(state: HookState, payload: HookInput, project_id: str, messages: list[str]) -> None:
    """Before any slow work: note that this session's SessionEnd began (and why), so that a SessionEnd cancelled
    by Claude Code's 1.5 s budget is finished by the next SessionStart, and SessionStart(clear) knows whom to
    hand over from."""
    try:
        state.update_session(
            payload.session_id,
            ending=payload.reason or "other",
            ending_at=time.time(),
            project=project_id,
            session=payload.session_id,
        )
    except OSError as exc:
        messages.append(f"could not note the session's end ({exc}); the next start will not finish it")


def _db_note(db: Path, existed: bool, payload: HookInput) -> str | None:
    if existed or payload.event != "SessionStart":
        return None
    if (payload.source or "startup") == "startup":
        return None
    return (
        f"the memory database {db} did not exist, so this {payload.source} starts with empty memory: anything kept "
        "earlier is not in it (was CLAWVM_DB changed, or the file moved?)"
    )


async def run_hook(event: Event, stdin_text: str, options: HookOptions, env: Mapping[str, str]) -> HookOutcome:
    """One hook event, start to finish; never raises."""
    messages: list[str] = []
    try:
        payload = parse_input(event, stdin_text)
        directory = project_dir(payload.cwd, dict(env))
    except (PayloadError, ValueError) as exc:
        return failure(event, f"the hook input was not usable: {exc}", messages)
    config = load_config(directory, options.config)
    notes = list(config.warnings)
    if event == "SessionEnd":
        mark_ending(HookState(state_dir_for(options.db)), payload, project_id_for(directory), messages)
    existed = options.db.exists()
    try:
        store = await open_store(options.db)
    except (StoreError, OSError) as exc:
        return failure(event, f"cannot open the memory database {options.db}: {exc}", messages)
    if note := _db_note(options.db, existed, payload):
        notes.append(note)
    hook: ClaudeCodeHook | None = None
    try:
        state = HookState(state_dir_for(options.db))
        engine = ClawVMEngine(store, TokenCounter(), EngineConfig(principal=options.principal))
        hook = ClaudeCodeHook(engine, state, config, payload, directory, notes)
        with state.project_lock(hook.project_id) as locked:
            if not locked:
                messages.append("another clawvm hook held this project's lock for 10 s; went ahead without it")
            output = await hook.run()
            await engine.save_all()  # this process's hits, alerts and flags outlive it
        return HookOutcome(output, messages + notes + hook.debug)
    except (EngineError, StoreError, OSError) as exc:
        return failure(event, f"{type(exc).__name__}: {exc}", messages + notes + (hook.debug if hook else []))
    except Exception as exc:  # a bug must not block Claude Code; it is reported, with its traceback on stderr
        messages.append("".join(traceback.format_exception(exc)).rstrip())
        return failure(event, f"internal error {type(exc).__name__}: {exc}", messages)
    finally:
        await store.close()


def cmd_hook(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    stdin_text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    if args.event not in EVENTS:
        print(
            f"clawvm hook: {args.event!r} is not a hook clawvm handles ({', '.join(EVENTS)}); ignored", file=sys.stderr
        )
        return 0
    event: Event = args.event
    options = HookOptions(db=Path(db_path(args)), principal=args.principal, config=args.config)
    outcome = anyio.run(run_hook, event, stdin_text, options, dict(os.environ))
    for message in outcome.messages:
        print(f"clawvm hook {event}: {message}", file=sys.stderr)
    sys.stdout.write(encode(outcome.output))
    sys.stdout.flush()
    log.debug("hook %s took %.1f ms", event, (time.perf_counter() - started) * 1000)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    hook = subparsers.add_parser(
        "hook",
        help="run a harness hook: clawvm-mcp hook claude-code EVENT (JSON on stdin)",
        description="Harness hooks that enforce the memory contract inside a harness.",
    )
    harnesses = hook.add_subparsers(dest="harness", metavar="HARNESS", required=True)
    cc = harnesses.add_parser(
        "claude-code",
        help="a Claude Code hook command",
        description="Read one Claude Code hook payload on stdin and print the hook output Claude Code expects "
        "(valid hook JSON or nothing); diagnostics on stderr; always exits 0.",
    )
    # not argparse choices: an unknown event must not exit 2, which Claude Code takes as "block" for some events
    cc.add_argument(
        "event", metavar="EVENT", help=f"the hook event this command is registered for: {', '.join(EVENTS)}"
    )
    add_db(cc)
    add_principal(cc)
    cc.add_argument(
        "--config", type=Path, default=None, help="hook settings file (default: <project>/.claude/clawvm.json)"
    )
    cc.set_defaults(func=cmd_hook)
    return hook


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m clawvm_mcp.harness.claude_code EVENT``: the same hook without the other verbs' parsers."""
    logging.basicConfig(level=os.environ.get("CLAWVM_LOG", "WARNING"), stream=sys.stderr)
    parser = argparse.ArgumentParser(prog="clawvm-mcp hook")
    register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(["hook", "claude-code", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
