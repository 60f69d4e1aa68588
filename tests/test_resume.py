"""Crash safety: SIGKILL a real bootstrap at many seeded moments, power cuts, locks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    Tripwire,
    bootstrap_args,
    cli_env,
    machine_example_prompts,
    run_cli,
    window_config,
)

from selfinstruct.testing.keys import digest_of
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

KILLS = 20  # per mode: the issue asks for 20 or more moments
CONCURRENCY = 4


def _args(server: OpenAITestServer, out: Path, mode: str, target: int) -> list[str]:
    # A one-round window: most rounds draw machine examples, so determinism across kills
    # is tested with prompts that depend on the pool.
    config = window_config(out.parent)
    extra = ("--mode", mode, "--target", str(target), "--concurrency", str(CONCURRENCY))
    extra += ("--config", str(config))
    return [sys.executable, "-m", "selfinstruct", *bootstrap_args(server, out, *extra)]


def _logged_keys(out: Path) -> list[str]:
    path = out / "responses.jsonl"
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")[:-1]  # a torn last line is not a logged response
    return [json.loads(line)["key"] for line in lines if line.strip()]


def _keys_before(out: Path, rounds: int) -> set[str]:
    """Return the logged keys of rounds before `rounds` (keys start with r<round>/)."""
    return {key for key in _logged_keys(out) if int(key.split("/", 1)[0][1:]) < rounds}


def _logged_digests(out: Path) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in _logged_keys(out)}


def _committed(out: Path) -> tuple[bytes, bytes]:
    """Return the committed prefixes of pool.jsonl and rejected.jsonl, per state.json."""
    path = out / "state.json"
    if not path.exists():
        return b"", b""
    state = json.loads(path.read_bytes())  # atomic: never torn, whenever the kill came
    pool = (out / "pool.jsonl").read_bytes()
    rejected = (out / "rejected.jsonl").read_bytes()
    assert len(pool) >= state["pool_bytes"] and len(rejected) >= state["rejected_bytes"]
    return pool[: state["pool_bytes"]], rejected[: state["rejected_bytes"]]


@dataclass(frozen=True)
class _Reference:
    out: Path
    requests: int
    startup: float  # seconds from spawn to the first request
    duration: float  # seconds from spawn to exit


def _reference(tmp_path: Path, mode: str, target: int) -> _Reference:
    out = tmp_path / f"reference-{mode}"
    with OpenAITestServer(SyntheticTeacher()) as server:
        start = time.monotonic()
        done = subprocess.run(
            _args(server, out, mode, target), env=cli_env(), capture_output=True, timeout=120
        )
        duration = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        first = server.requests[0].time - start
        return _Reference(out, len(server.requests), first, duration)


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, _Reference]:
    """Run each mode once without interruption: what every crashed run must end up as."""
    tmp = tmp_path_factory.mktemp("references")
    return {mode: _reference(tmp, mode, TARGETS[mode]) for mode in TARGETS}


TARGETS = {"self-instruct": 120, "alpaca": 300}


def _crash_until_done(
    server: OpenAITestServer,
    wire: Tripwire,
    ref: _Reference,
    out: Path,
    mode: str,
    rng: random.Random,
    kills_wanted: int,
) -> int:
    """Kill one run at seeded moments until it finishes; check it; return the kills made."""
    ref_pool = (ref.out / "pool.jsonl").read_bytes()
    ref_rejected = (ref.out / "rejected.jsonl").read_bytes()
    kills = 0
    committed_before = 0
    first_request = len(server.requests)
    for attempt in range(kills_wanted + 10):
        logged = _logged_digests(out)
        seen_before = len(server.requests)
        # Half the kills land k requests into the attempt (anywhere in the pipeline:
        # parsing, novelty, logging, committing); the rest at a time after start-up,
        # which also covers the recovery of the logs.
        by_request = rng.random() < 0.5
        wire.arm(rng.randint(1, max(2, ref.requests // 12)) if by_request else 0)
        # A time kill aims before the attempt would end: start-up plus what is left.
        left = 1 - len(_committed(out)[0]) / len(ref_pool)
        expected = ref.startup + (ref.duration - ref.startup) * left
        delay = rng.uniform(0.0, 0.03) if by_request else rng.uniform(0.05, 0.9) * expected
        proc = subprocess.Popen(
            _args(server, out, mode, TARGETS[mode]),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if kills < kills_wanted:
            if by_request:
                while not wire.fired.wait(0.01) and proc.poll() is None:
                    pass
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, stderr = proc.communicate(timeout=120)
        # No request whose response had been logged is ever sent again.
        repeated = [r for r in server.requests[seen_before:] if digest_of(r) in logged]
        assert repeated == [], f"attempt {attempt}: re-asked {len(repeated)} logged requests"
        # What is committed is final: the same bytes as the uninterrupted run, never less.
        pool, rejected = _committed(out)
        assert ref_pool.startswith(pool) and ref_rejected.startswith(rejected), attempt
        assert len(pool) >= committed_before, f"attempt {attempt}: committed tasks lost"
        committed_before = len(pool)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, stderr
    else:
        raise AssertionError("the run never finished")

    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (ref.out / name).read_bytes(), name
    # rejected.jsonl has no entry twice (beyond what the uninterrupted run has), and no
    # response is logged twice: nothing was paid for twice after it had been logged.
    lines = Counter((out / "rejected.jsonl").read_bytes().splitlines())
    assert lines == Counter(ref_rejected.splitlines())
    keys = _logged_keys(out)
    assert len(keys) == len(set(keys))
    state = json.loads((out / "state.json").read_text())
    assert state["accepted"] == len((out / "pool.jsonl").read_text().splitlines())
    requests = server.requests[first_request:]
    assert machine_example_prompts(requests, out) > 0
    # What the committed rounds asked is what the uninterrupted run asked, key for key.
    committed = state["rounds_committed"]
    assert _keys_before(out, committed) == _keys_before(ref.out, committed)
    # Only requests in flight at a kill are paid twice: at most `concurrency` per kill.
    # (Not "total <= reference + concurrency * kills": how many requests a run sends for
    # rounds past its target depends on timing, so the two runs' totals differ either way
    # by a few requests, and under CPU load that difference alone broke that bound.)
    sent = Counter(digest_of(r) for r in requests)
    resent = sum(n - 1 for n in sent.values())
    assert resent <= CONCURRENCY * kills, f"{resent} requests sent twice in {kills} kills"
    return kills


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "seed"), [("self-instruct", 1234), ("alpaca", 99)])
def test_killed_runs_resume_to_the_same_pool(
    tmp_path: Path, references: dict[str, _Reference], mode: str, seed: int
) -> None:
    rng = random.Random(seed)
    wire = Tripwire(SyntheticTeacher())  # instant: the kill moments come from the seed
    kills = 0
    with OpenAITestServer(wire) as server:
        # Should a run finish (checked) before all kills land, a fresh one takes the rest.
        for run in range(5):
            out = tmp_path / f"crashed-{run}"
            kills += _crash_until_done(
                server, wire, references[mode], out, mode, rng, KILLS - kills
            )
            if kills >= KILLS:
                break
    assert kills >= KILLS


def _cut_round(reference: bytes, committed: int, round_number: int, rng: random.Random) -> bytes:
    """Return the start of `round_number`'s lines after `committed`, cut at a random byte."""
    tail = b""
    for line in reference[committed:].splitlines(keepends=True):
        if json.loads(line)["round"] != round_number:
            break
        tail += line
    return tail[: rng.randint(0, len(tail))]


@pytest.mark.parametrize(
    ("state_record", "seed"), [("kept", 1), ("missing", 2), ("garbage", 3), ("zeroed", 4)]
)
def test_power_cut_mid_round_loses_nothing(
    tmp_path: Path, references: dict[str, _Reference], state_record: str, seed: int
) -> None:
    """A power cut leaves every log with a torn last line; resume ends at the same pool."""
    mode = "self-instruct"
    reference = references[mode].out
    rng = random.Random(seed)
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        first = subprocess.run(
            _args(server, out, mode, 40), env=cli_env(), capture_output=True, timeout=120
        )
        assert first.returncode == 0, first.stderr
        state = json.loads((out / "state.json").read_bytes())
        rounds = state["rounds_committed"]
        # The next round was being appended when the power went: each log ends mid-line.
        for name, key in (("pool.jsonl", "pool_bytes"), ("rejected.jsonl", "rejected_bytes")):
            ref = (reference / name).read_bytes()
            with open(out / name, "ab") as fh:
                fh.write(_cut_round(ref, state[key], rounds, rng))
        responses = (out / "responses.jsonl").read_bytes()
        last = responses[:-1].rfind(b"\n") + 1
        os.truncate(out / "responses.jsonl", rng.randint(last + 1, len(responses) - 1))
        if state_record == "missing":
            (out / "state.json").unlink()
        elif state_record == "garbage":
            (out / "state.json").write_bytes(b'{"rounds_committed": "many", "pool_by')
        elif state_record == "zeroed":  # what some filesystems leave of an unsynced file
            (out / "state.json").write_bytes(b"\0" * 300)
        logged = _logged_digests(out)
        seen = len(server.requests)
        done = subprocess.run(
            _args(server, out, mode, 120), env=cli_env(), capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert [r for r in server.requests[seen:] if digest_of(r) in logged] == []
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.fixture
def slow_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, OpenAITestServer]]:
    """Start a bootstrap against a slow teacher and wait until it holds the lock."""
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher(latency=0.5)) as server:
        proc = subprocess.Popen(
            _args(server, out, "alpaca", 1000),
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert server.requests, "the bootstrap never started"
            yield proc, out, server
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def test_live_lock_is_respected_and_dead_lock_recovered(
    slow_run: tuple[subprocess.Popen[bytes], Path, OpenAITestServer],
) -> None:
    proc, out, server = slow_run
    second = subprocess.run(
        _args(server, out, "alpaca", 1000),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 1
    assert second.stderr == (
        f"error: {out}: in use by pid {proc.pid}; wait for it or stop it first\n"
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (out / "lock").read_text() == f"pid {proc.pid}\n"  # left behind by the dead one
    third = subprocess.run(
        _args(server, out, "alpaca", 3), env=cli_env(), capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stderr


def _interruptible(args: list[str]) -> list[str]:
    """Return a command running `python -m selfinstruct ARGS` with SIGINT as in a terminal.

    A shell starts background jobs (`nohup pytest &`) with SIGINT ignored, children inherit
    that, and the bootstrap rightly leaves an ignored SIGINT ignored.
    """
    code = (
        "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "runpy.run_module('selfinstruct', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code, *args]


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_drains_and_resumes_without_paying_twice(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM: requests in flight land in the log, so a resume pays for none again.

    Before the drain, the requests in flight at Ctrl-C were lost and paid for again on
    resume (as many as --concurrency), and SIGTERM killed the run without a word.
    """
    config = window_config(tmp_path)
    extra = ("--config", str(config), "--target", "120", "--concurrency", "16")
    with OpenAITestServer(SyntheticTeacher(latency=0.2)) as server:
        ref = tmp_path / "reference"
        done = run_cli(*bootstrap_args(server, ref, *extra))
        assert done.returncode == 0, done.stderr
        reference = len(server.requests)
    teacher = SyntheticTeacher(latency=0.2)
    out = tmp_path / "run"
    with OpenAITestServer(teacher) as server:
        args = _interruptible(bootstrap_args(server, out, *extra))
        with subprocess.Popen(
            args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as proc:
            try:
                # Mid-run, with requests in flight (each takes 0.2 s).
                _wait_until(lambda: len(server.requests) >= reference // 3, 60, "requests")
                proc.send_signal(signum)
                _, stderr = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        # Every request sent before the stop was answered and logged: none was lost.
        sent = {digest_of(r) for r in server.requests}
        assert sent <= _logged_digests(out), f"{len(sent - _logged_digests(out))} lost"
        assert f"{signum.name}: sending nothing more" in stderr
        assert stderr.endswith(
            "error: interrupted; the run is saved: re-run the same command to resume\n"
        )
        first = len(server.requests)
        resumed = run_cli(*bootstrap_args(server, out, *extra))
        assert resumed.returncode == 0, resumed.stderr
        requests = server.requests
    digests = Counter(digest_of(r) for r in requests)
    assert max(digests.values()) == 1, "a request was paid for twice"
    # So the two sessions together asked what one uninterrupted run asks: the same requests
    # for every committed round, plus however many past the target timing led them to send.
    committed = json.loads((out / "state.json").read_text())["rounds_committed"]
    assert _keys_before(out, committed) == _keys_before(ref, committed)
    assert first < len(requests)  # the resume had work left
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert machine_example_prompts(requests, out) > 0


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    """While requests drain (here they would take 30 s), a second Ctrl-C stops at once."""
    out = tmp_path / "run"
    extra = ("--target", "50", "--concurrency", "4")
    log = tmp_path / "stderr.txt"
    with OpenAITestServer(SyntheticTeacher(latency=30)) as server:
        args = _interruptible(bootstrap_args(server, out, *extra))
        with (
            open(log, "w") as err,
            subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err) as proc,
        ):
            try:
                _wait_until(lambda: len(server.requests) >= 4, 60, "requests in flight")
                proc.send_signal(signal.SIGINT)
                _wait_until(lambda: "sending nothing more" in log.read_text(), 10, "the drain")
                stopped = time.monotonic()
                proc.send_signal(signal.SIGINT)
                proc.communicate(timeout=20)
                assert time.monotonic() - stopped < 20  # well before the answers come
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate(timeout=30)
    assert proc.returncode == 130, log.read_text()
    # Nothing was answered before the second signal, so nothing is saved and no resume hint
    # is printed (hints stay true).
    assert log.read_text().endswith("error: interrupted\n")
    assert json.loads((out / "state.json").read_text())["rounds_committed"] == 0
