"""Bad traces end in one ``file:line:`` error, in bounded time and memory (issue 15).

Before: invalid UTF-8, deep nesting and huge integers ended in tracebacks; a 100-byte line with
``"turn": 999999999999999999`` ran past 180 s and reached 1.27 GB; 100 MB of valid lines took 1 GB before failing
on the last line; wrong-type ``fields`` and a 100 MB page were accepted. Each case here is checked in process
(time and peak traced memory) and the worst ones through the real console script as well.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from clawvm_mcp.replay import TraceError, load_trace, parse_lines
from clawvm_mcp.replay.trace import MAX_EVENTS, MAX_LINE_BYTES, MAX_TRACE_BYTES, MAX_TURN, MAX_TURNS

START = b'{"op":"session_start","session":"s1","budget":300}\n'
MB = 1 << 20


def page(content: str, **extra: object) -> bytes:
    spec = {"page_id": "plan/main", "type": "plan", "content": content, **extra}
    return json.dumps({"op": "page", "turn": 1, "page": spec}).encode() + b"\n"


def fails(path: Path, prefix: str, seconds: float = 10.0, peak_mb: float = 64.0) -> str:
    """load_trace raises a TraceError starting with ``prefix``, within ``seconds`` and ``peak_mb`` of traced memory."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(TraceError) as err:
            load_trace(path)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(prefix), message
    assert "\n" not in message and len(message) < 400, message
    assert elapsed < seconds, f"{elapsed:.1f}s for {path.name}"
    assert peak < peak_mb, f"{peak:.0f} MB traced for {path.name}"
    return message


def write(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "t.jsonl"
    path.write_bytes(body)
    return path


CASES: dict[str, tuple[bytes, str]] = {
    "invalid utf-8": (START + page("x").replace(b'"x"', b'"\xff\xfe"'), "t.jsonl:2: not valid UTF-8 (byte 0xff"),
    "utf-8 cut mid-character": (START + b'{"op":"assemble","turn":1}\xe2\x82\n', "t.jsonl:2: not valid UTF-8"),
    "lone surrogate": (START + page("\\ud800 x").replace(b"\\\\ud800", b"\\ud800"), "t.jsonl:2: text holds a lone"),
    "deep args": (
        START + b'{"op":"tool","turn":1,"name":"ls","args":' + b'{"a":' * 40 + b"1" + b"}" * 41 + b"\n",
        "t.jsonl:2: JSON nested deeper than 32 levels",
    ),
    "nesting past the recursion limit": (START + b"[" * 500_000 + b"\n", "t.jsonl:2: JSON nested deeper than 32"),
    "integer of 5000 digits": (START + b'{"op":"assemble","turn":' + b"9" * 5000 + b"}\n", "t.jsonl:2: not a usable"),
    "integer of 4000 digits": (
        START + b'{"op":"assemble","turn":' + b"9" * 4000 + b"}\n",
        f"t.jsonl:2: 'turn' must be an integer from 0 to {MAX_TURN}, got an integer of 4000 digits",
    ),
    "turn 999999999999999999": (
        START + b'{"op":"assemble","turn":999999999999999999}\n',
        f"t.jsonl:2: 'turn' must be an integer from 0 to {MAX_TURN}, got 999999999999999999",
    ),
    "budget 10**18": (b'{"op":"session_start","session":"s1","budget":1000000000000000000}\n', "t.jsonl:1: 'budget'"),
    "tokens 10**15": (
        START + b'{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","tokens":{"full":1000000000000000}}}\n',
        "t.jsonl:2: page 'a': tokens['full'] must be an integer from 1 to",
    ),
    "fields not an object": (START + page("x", fields=[1]), "t.jsonl:2: page 'plan/main': 'fields' must be an object"),
    "scalar field of the wrong type": (
        START + page("x", fields={"goal": 3}),
        "t.jsonl:2: page 'plan/main': field 'goal' must be a string, got 3",
    ),
    "list field of the wrong type": (
        START + page("x", fields={"steps_done": "all"}),
        "t.jsonl:2: page 'plan/main': field 'steps_done' must be a list of strings, got 'all'",
    ),
    "list field holding numbers": (START + page("x", fields={"steps_left": [1]}), "t.jsonl:2: page 'plan/main': field"),
    "unknown field": (START + page("x", fields={"colour": "red"}), "t.jsonl:2: page 'plan/main': unknown field"),
    "100 KB page": (START + page("x" * 100_000), "t.jsonl:2: page 'plan/main': content is 100000 bytes; a page holds"),
    "project id with a slash": (b'{"op":"session_start","session":"s1","project":"a/b"}\n', "t.jsonl:1: project id"),
    "tool name of 200 characters": (
        START + b'{"op":"tool","turn":1,"name":"' + b"n" * 200 + b'","args":{}}\n',
        "t.jsonl:2: tool name is 200 characters",
    ),
    "turns adding up": (
        b"".join(
            b'{"op":"session_start","session":"s%d"}\n{"op":"assemble","turn":%d}\n' % (i, MAX_TURN) for i in range(3)
        ),
        f"t.jsonl:6: the sessions' turns add up to more than {MAX_TURNS}",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_trace_is_one_line_error(tmp_path: Path, case: str) -> None:
    body, prefix = CASES[case]
    fails(write(tmp_path, body), prefix)


def test_a_100_mb_page_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    with path.open("wb") as fh:
        fh.write(START + b'{"op":"page","turn":1,"page":{"page_id":"a","type":"plan","content":"')
        chunk = b"x" * MB
        for _ in range(100):
            fh.write(chunk)
        fh.write(b'"}}\n')
    fails(path, f"t.jsonl:2: line is longer than {MAX_LINE_BYTES} bytes", seconds=2, peak_mb=8)


def test_100_mb_of_valid_lines_stop_at_the_event_limit(tmp_path: Path) -> None:
    line = b'{"op":"assemble","turn":1}\n'
    path = tmp_path / "t.jsonl"
    with path.open("wb") as fh:
        fh.write(START)
        block = line * 10_000
        for _ in range(100 * MB // len(block)):
            fh.write(block)
        fh.write(b"not json\n")
    assert path.stat().st_size > 100 * 10**6
    fails(path, f"t.jsonl:{MAX_EVENTS + 1}: more than {MAX_EVENTS} events", seconds=30, peak_mb=160)


def test_a_trace_of_large_pages_stops_at_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [START] + [
        b'{"op":"page","turn":1,"page":{"page_id":"p%d","type":"evidence","content":"%s"}}\n' % (i, b"y" * 60_000)
        for i in range(700)
    ]
    path.write_bytes(b"".join(lines))
    total, crossing = 0, 0
    while total <= MAX_TRACE_BYTES:
        total += len(lines[crossing])
        crossing += 1
    fails(path, f"t.jsonl:{crossing}: the trace passes 32 MiB here; split it", seconds=30, peak_mb=120)


def test_what_a_good_trace_may_hold(tmp_path: Path) -> None:
    """A byte-order mark, CRLF line ends, U+2028 inside a string and a page just under the limit all parse."""
    body = (
        b"\xef\xbb\xbf"
        + START.replace(b"\n", b"\r\n")
        + page("line\u2028separator kept").replace(b"\\u2028", "\u2028".encode())
        + page("z" * 60_000, fields={"goal": "ship", "steps_left": ["a", "b"]})
    )
    trace = load_trace(write(tmp_path, body))
    assert [e.op for e in trace.events] == ["session_start", "page", "page"]
    first = trace.events[1].page
    assert first is not None and first.content == "line\u2028separator kept"


def test_parse_lines_applies_the_same_limits() -> None:
    with pytest.raises(TraceError) as err:
        parse_lines([START.decode(), '{"op":"assemble","turn":999999999999999999}'], "t.jsonl")
    assert str(err.value).startswith("t.jsonl:2: 'turn' must be an integer from 0 to")
    with pytest.raises(TraceError) as err:
        parse_lines([START.decode(), "[" * 100_000], "t.jsonl")
    assert str(err.value) == "t.jsonl:2: JSON nested deeper than 32 levels"


@pytest.mark.parametrize(
    "case", ["invalid utf-8", "nesting past the recursion limit", "integer of 5000 digits", "turn 999999999999999999"]
)
def test_the_console_script_prints_one_error_line(tmp_path: Path, case: str) -> None:
    body, prefix = CASES[case]
    path = write(tmp_path, body)
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "clawvm_mcp", "replay", str(path), "--policy", "clawvm"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert time.perf_counter() - started < 60
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith(f"Error: {prefix}") and run.stderr.count("\n") == 1, run.stderr
