"""A hostile teacher's text, through the real CLI against the loopback server.

Whatever characters or sizes a teacher sends, the run completes, resumes and replays; every
file it writes is valid UTF-8 JSON; the pool holds clean text; what is dropped is written
to rejected.jsonl with a reason of its own and counted by `status`; nothing a server writes
reaches the terminal as a control sequence.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

import pytest
from conftest import bootstrap_args, run_cli
from hypothesis import given
from hypothesis import strategies as st

from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.teacher import SyntheticTeacher
from selfinstruct.text import invalid_char

TARGET = 30
# Each answer picked by `_picked` gets one of these inside its text (see _hostile).
INJECTED = [
    "\ud800",  # a lone surrogate: "\ud800" in the JSON body
    "\udfff",
    "\x00",
    "\x1b[2J\x1b]0;pwned\x07",  # clear the screen, retitle the terminal
    "\x9b31m",  # a C1 control sequence introducer
    "\ufffd",  # a decoder's trace of lost bytes
    "\ufeff",  # the normalised ones: BOM, bidi, separators, zero-width space
    "\u202e",
    "\u2066",
    "\u2028",
    "\u2029",
    "\u200b",
]
# Characters that must never reach the pool.
NEVER_IN_POOL = "\ufeff\u202e\u2066\u2028\u2029\u200b\r"


def _stage(request: RecordedRequest) -> str:
    prompt = request.prompt
    if prompt.endswith("Classification:"):
        return "classify"
    if prompt.endswith("\n") and "Task:" in prompt:
        return "instances"
    return "instructions"


def _picked(request: RecordedRequest) -> int | None:
    """Choose, from the request alone (never from timing), whether and how to spoil it."""
    digest = hashlib.sha256(request.prompt.encode("utf-8", "replace")).digest()
    return digest[1] % len(INJECTED) if digest[0] % 2 == 0 else None


def _hostile(teacher: SyntheticTeacher, *, bom_and_crlf: bool = True) -> object:
    # Which answers are spoiled is a function of the request; which character each gets
    # cycles through INJECTED per stage, so every stage meets every character (the lone
    # surrogate first) in a run of any length. A hash choosing the character too left a
    # stage without a surrogate in about one run in thirty.
    spoiled: dict[str, int] = {}
    lock = threading.Lock()

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        if _picked(request) is None or not reply.text:
            return reply
        with lock:
            count = spoiled.get(_stage(request), 0)
            spoiled[_stage(request)] = count + 1
        pick = count % len(INJECTED)
        text = reply.text
        if bom_and_crlf:
            text = "\ufeff" + text.replace("\n", "\r\n")
        # Inside a field: after the first word of an instance's input, else of the first line
        # (an instruction item); never in a label line the parser drops anyway.
        anchor = text.find("Input:")
        cut = max(text.find(" ", anchor + 7 if anchor >= 0 else 3), 0)
        return Reply(text=text[:cut] + INJECTED[pick] + text[cut:])

    return handler


def _invoke(*args: str) -> tuple[int, str, str]:
    """Run the real CLI in a subprocess, bounded in time (a hang fails, never blocks)."""
    result = run_cli(*args, timeout=240)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def _lines(path: Path) -> list[dict[str, object]]:
    """Read a JSONL file strictly: valid UTF-8, one JSON object a line."""
    text = path.read_bytes().decode("utf-8")  # raises on invalid UTF-8
    return [json.loads(line) for line in text.splitlines()]


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check_run_files(out: Path) -> None:
    """Every file of the run is valid UTF-8 JSON; the pool's text is clean."""
    for name in ("pool.jsonl", "rejected.jsonl", "responses.jsonl"):
        _lines(out / name)
    json.loads((out / "state.json").read_bytes().decode("utf-8"))
    for task in _lines(out / "pool.jsonl"):
        for text in _strings(task):
            assert invalid_char(text) is None, text
            assert not any(c in text for c in NEVER_IN_POOL), text
    for entry in _lines(out / "rejected.jsonl"):
        for text in _strings(entry):
            text.encode("utf-8")  # no lone surrogate in a record


def test_hostile_characters_never_crash_block_a_resume_or_reach_the_pool(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_hostile(SyntheticTeacher())) as server:
        code, _, stderr = _invoke(*bootstrap_args(server, out, "--target", str(TARGET // 2)))
        assert code == 0, stderr
        code, _, stderr = _invoke(*bootstrap_args(server, out, "--target", str(TARGET)))
        assert code == 0, stderr  # the resume
        sent = [reply.text for _, reply in server.answered]
    _check_run_files(out)
    assert any("\ud800" in t for t in sent), "no answer held a lone surrogate"
    # Logged exactly as received: a lone surrogate comes back from the log as itself.
    logged = [str(e["text"]) for e in _lines(out / "responses.jsonl")]
    assert any("\ud800" in t for t in logged)
    assert any("\x1b[2J" in t for t in logged)
    rejected = _lines(out / "rejected.jsonl")
    invalid = {str(e["stage"]) for e in rejected if e["reason"] == "invalid_text"}
    assert {"instructions", "instances"} <= invalid, invalid
    assert len(_lines(out / "pool.jsonl")) >= TARGET

    code, stdout, _ = _invoke("status", "--out", str(out))
    assert code == 0 and "invalid_text" in stdout

    for fmt, name in (("alpaca", "data.json"), ("sharegpt", "data.jsonl"), ("openai", "o.jsonl")):
        code, _, stderr = _invoke(
            "export", "--out", str(out), "-f", fmt, "-o", str(tmp_path / name)
        )
        assert code == 0, stderr
        data = (tmp_path / name).read_bytes().decode("utf-8")
        records = (
            json.loads(data) if fmt == "alpaca" else [json.loads(x) for x in data.splitlines()]
        )
        assert records
        for text in _strings(records):
            assert invalid_char(text) is None and not any(c in text for c in NEVER_IN_POOL)


def test_a_run_replays_its_hostile_log_to_the_same_pool(tmp_path: Path) -> None:
    """Resume from the response log alone: the replayed answers are the ones received."""
    first, second = tmp_path / "first", tmp_path / "second"
    with OpenAITestServer(_hostile(SyntheticTeacher())) as server:
        code, _, stderr = _invoke(*bootstrap_args(server, first, "--target", str(TARGET)))
        assert code == 0, stderr
        second.mkdir()
        for name in ("config.json", "responses.jsonl"):
            shutil.copy(first / name, second / name)
        code, stdout, stderr = _invoke(*bootstrap_args(server, second, "--target", str(TARGET)))
    assert code == 0, stderr
    assert "replayed from the log" in stdout
    assert (second / "pool.jsonl").read_bytes() == (first / "pool.jsonl").read_bytes()
    assert (second / "rejected.jsonl").read_bytes() == (first / "rejected.jsonl").read_bytes()


def test_alpaca_mode_with_hostile_text(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_hostile(SyntheticTeacher())) as server:
        args = bootstrap_args(server, out, "--target", str(TARGET), "--mode", "alpaca")
        code, _, stderr = _invoke(*args)
    assert code == 0, stderr
    _check_run_files(out)
    assert any(e["reason"] == "invalid_text" for e in _lines(out / "rejected.jsonl"))


def _sized(teacher: SyntheticTeacher, size: int) -> object:
    """Make some answers carry a huge instruction (one word) or a huge instance output."""

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        pick = _picked(request)
        stage = _stage(request)
        if pick is None or stage == "classify":
            return reply
        if stage == "instructions":
            huge = "Summarise " + "x" * size + " now.\n"
            return Reply(text=f" {huge}{reply.text.split(chr(10), 1)[-1]}")
        if pick % 3:
            return reply
        return Reply(text=reply.text.replace("Output:", "Output: " + "y" * size + " ", 1))

    return handler


def test_huge_fields_are_rejected_by_size_and_report_survives(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_sized(SyntheticTeacher(), 300_000)) as server:
        code, _, stderr = _invoke(*bootstrap_args(server, out, "--target", str(TARGET)))
    assert code == 0, stderr
    reasons = {(e["stage"], e["reason"]) for e in _lines(out / "rejected.jsonl")}
    assert ("instructions", "instruction_too_long_chars") in reasons
    assert ("instances", "output_too_long_chars") in reasons
    pool = _lines(out / "pool.jsonl")
    assert all(len(s) <= 16_000 for task in pool for s in _strings(task))
    # The record of a huge field is clipped; the whole answer stays in responses.jsonl.
    assert (out / "rejected.jsonl").stat().st_size < 200_000
    code, stdout, _ = _invoke("status", "--out", str(out))
    assert "instruction_too_long_chars" in stdout and "output_too_long_chars" in stdout


def test_report_survives_what_a_pool_can_hold(tmp_path: Path) -> None:
    """Limits raised in the config: a 1 MB instruction and a mathtext-like object."""
    pytest.importorskip("matplotlib")
    config = tmp_path / "run.toml"
    config.write_text("[filters]\nmax_instruction_chars = 2000000\n")
    teacher = SyntheticTeacher()

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        if _stage(request) != "instructions":
            return reply
        odd = [
            "10. Estimate the cost$\\frac$value of every trip in the list.",
            # Over spaCy's 1,000,000, under the 1 MiB body the HTTP client warns about.
            "11. Explain the " + "w" * 1_010_000 + " slowly.",  # four words
        ]
        lines = reply.text.split("\n")
        return Reply(text="\n".join([lines[0], *odd, *lines[1:]]))

    out = tmp_path / "run"
    with OpenAITestServer(handler) as server:
        args = bootstrap_args(server, out, "--target", "12", "--config", str(config))
        code, _, stderr = _invoke(*args)
    assert code == 0, stderr
    assert max(len(t["instruction"]) for t in _lines(out / "pool.jsonl")) > 1_000_000
    assert any("$" in t["instruction"] for t in _lines(out / "pool.jsonl"))
    for parser in ("auto", "heuristic"):
        code, _, stderr = _invoke(
            "report", str(out), "-o", str(tmp_path / parser), "--parser", parser
        )
        assert code == 0, stderr
        assert (tmp_path / parser / "verbs.png").stat().st_size > 0


def _missing_finish_reason(teacher: SyntheticTeacher) -> object:
    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        if _stage(request) != "instructions":
            return reply
        body = {
            "id": "cmpl-x",
            "object": "text_completion",
            "created": 1,
            "model": "test-model",
            # No finish_reason: the answer may have been cut anywhere.
            "choices": [{"index": 0, "text": reply.text, "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        return Reply(raw_body=json.dumps(body).encode())

    return handler


def test_a_missing_finish_reason_is_not_stop(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_missing_finish_reason(SyntheticTeacher())) as server:
        code, _, stderr = _invoke(*bootstrap_args(server, out, "--target", "10"))
    assert code == 0, stderr
    responses = [e for e in _lines(out / "responses.jsonl") if e["stage"] == "instructions"]
    rejected = _lines(out / "rejected.jsonl")
    cut = [e for e in rejected if e["stage"] == "instructions" and e["reason"] == "truncated"]
    # The last item of every answer that reached screening is treated as cut.
    rounds = {e["round"] for e in rejected}
    assert cut and len(cut) >= len(rounds)
    assert all(e["finish_reason"] != "stop" for e in responses)


def _invalid_utf8(teacher: SyntheticTeacher) -> object:
    """Cut a character's bytes apart inside some answers' text: the body is not UTF-8."""

    def handler(request: RecordedRequest) -> Reply:
        reply = teacher(request)
        if _picked(request) is None or _stage(request) == "classify" or not reply.text:
            return reply
        cut = max(reply.text.find(" ", 3), 0)
        body = {
            "id": "cmpl-x",
            "object": "text_completion",
            "created": 1,
            "model": "test-model",
            "choices": [
                {
                    "index": 0,
                    "text": reply.text[:cut] + "@CUT@" + reply.text[cut:],
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        raw = json.dumps(body, ensure_ascii=False).encode().replace(b"@CUT@", b"\xe4\xb8 \xff")
        return Reply(raw_body=raw)

    return handler


def test_an_answer_that_is_not_utf8_loses_only_the_field_it_spoils(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(_invalid_utf8(SyntheticTeacher())) as server:
        code, _, stderr = _invoke(*bootstrap_args(server, out, "--target", str(TARGET)))
    assert code == 0, stderr
    _check_run_files(out)
    invalid = [e for e in _lines(out / "rejected.jsonl") if e["reason"] == "invalid_text"]
    assert {e["stage"] for e in invalid} == {"instructions", "instances"}
    assert all("U+FFFD" in str(e["detail"]) for e in invalid)
    logged = [str(e["text"]) for e in _lines(out / "responses.jsonl")]
    assert any("\ufffd" in t for t in logged)


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b2J\u202eevil\r\nerror: forged line"


def test_server_text_never_reaches_the_terminal_raw(tmp_path: Path) -> None:
    """A server's error message (the final error and the set-aside warnings) is neutralised."""
    failing = OpenAITestServer(lambda _: Reply(status=503, text=ESCAPES)).start()
    try:
        with OpenAITestServer(SyntheticTeacher()) as good:
            args = bootstrap_args(good, tmp_path / "run", "--target", "8", quiet=False)
            args += ["--base-url", failing.base_url, "--max-retries", "3"]
            warned = run_cli(*args, timeout=120)
        stopped = run_cli(
            *bootstrap_args(failing, tmp_path / "stopped", "--max-retries", "0"), timeout=120
        )
    finally:
        failing.stop()
    assert warned.returncode == 0, warned.stderr
    assert "set aside" in warned.stderr and "pwned" in warned.stderr
    assert stopped.returncode == 1 and "pwned" in stopped.stderr
    for stderr in (warned.stderr, stopped.stderr):
        assert "\x1b" not in stderr and "\x07" not in stderr and "\x9b" not in stderr
        assert "\u202e" not in stderr and "\r" not in stderr
        assert "\nerror: forged line" not in stderr
    assert stopped.stderr.count("\n") == 1


# Any text, lone surrogates included, but never a high surrogate right before a low one:
# no decoder produces that pair (JSON's joins it into one character).
_SPECIAL = [
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\x00",
    "\x1b",
    "\x85",
    "\u2028",
    "\u2029",
    "\r",
]
_TEXTS = (
    st.lists(st.one_of(st.text(max_size=4), st.sampled_from(_SPECIAL)), max_size=12)
    .map("".join)
    .filter(lambda t: not re.search("[\ud800-\udbff][\udc00-\udfff]", t))
)


@given(text=_TEXTS)
def test_the_response_log_gives_back_exactly_what_was_received(text: str) -> None:
    import tempfile

    from selfinstruct.records import Completion, Usage
    from selfinstruct.store import RESPONSES, RunDir

    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir(Path(tmp))
        run.open({"format": 1, "identity": {}, "config": {}})
        try:
            run.log_response("k", 0, "instructions", Completion(text, "stop", Usage(1, 2)))
        finally:
            run.close()
        data = (Path(tmp) / RESPONSES).read_bytes()
        assert len(data.decode("utf-8").splitlines()) == 1  # valid UTF-8, one line
        again = RunDir(Path(tmp))
        again.open({"format": 1, "identity": {}, "config": {}})
        again.close()
    assert again.replay["k"] == Completion(text, "stop", Usage(1, 2))
