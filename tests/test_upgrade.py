"""Upgrades never make a run pay again: stable request keys and example draws.

tests/golden/v0.1.0-run is a run directory written by selfinstruct 0.1.0 (commit ec947da)
against the loopback synthetic teacher with tests/golden/v0.1.0-run.toml: three rounds
committed, and the responses of rounds 3 to 6 logged but not committed, as a kill leaves
them. tests/golden/v0.1.0-expected holds the pool and rejections 0.1.0 made when left to
run to --target 40. With a window of one round, rounds 3 to 6 draw machine examples from
the pool, so their prompts, and their keys, depend on the old example sampling too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from conftest import bootstrap_args, run_cli

from selfinstruct.engine import KEY_FIELDS, SAMPLING_KEY, request_digest
from selfinstruct.records import SamplingParams
from selfinstruct.testing.server import OpenAITestServer

GOLDEN = Path(__file__).parent / "golden"
OLD_RUN = GOLDEN / "v0.1.0-run"
OLD_CONFIG = GOLDEN / "v0.1.0-run.toml"
EXPECTED = GOLDEN / "v0.1.0-expected"


def _old_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(OLD_RUN, out)
    return out


def _resume(server: OpenAITestServer, out: Path, target: int = 40) -> tuple[int, str]:
    extra = ("--config", str(OLD_CONFIG), "--target", str(target), "--concurrency", "4")
    done = run_cli(*bootstrap_args(server, out, *extra))
    return done.returncode, done.stderr


def test_run_of_0_1_0_resumes_without_paying_again(
    tmp_path: Path, teacher: OpenAITestServer
) -> None:
    out = _old_run(tmp_path)
    header = (out / "config.json").read_bytes()
    code, stderr = _resume(teacher, out)
    assert code == 0, stderr
    # Every response the old run logged is found under today's key: nothing is asked.
    assert teacher.requests == []
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (EXPECTED / name).read_bytes(), name
    assert (out / "config.json").read_bytes() == header  # still sampling version 1


def test_new_run_records_its_sampling_version(tmp_path: Path, teacher: OpenAITestServer) -> None:
    out = tmp_path / "run"
    done = run_cli(*bootstrap_args(teacher, out, "--target", "5"))
    assert done.returncode == 0, done.stderr
    identity = json.loads((out / "config.json").read_text())["identity"]
    assert identity[SAMPLING_KEY] == 2


def test_unknown_sampling_version_is_refused(tmp_path: Path, teacher: OpenAITestServer) -> None:
    out = _old_run(tmp_path)
    header = json.loads((out / "config.json").read_text())
    header["identity"][SAMPLING_KEY] = 9
    (out / "config.json").write_text(json.dumps(header))
    code, stderr = _resume(teacher, out)
    assert code == 1
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"field 'identity.{SAMPLING_KEY}'" in stderr and "sampling version 9" in stderr
    assert teacher.requests == []


# Digests computed by selfinstruct 0.1.0 (commit ec947da), whose key hashed
# json.dumps([prompt, params.__dict__], sort_keys=True).
GOLDEN_DIGESTS = [
    (
        "Come up with tasks:\n1.",
        SamplingParams(
            temperature=0.7,
            top_p=0.5,
            max_tokens=1024,
            presence_penalty=2.0,
            stop=("\n17.",),
            seed=12345,
        ),
        "bb035ab0f05d9cc0c1f41110",
    ),
    (
        "Classify: x",
        SamplingParams(temperature=0.0, top_p=1.0, max_tokens=3, stop=("\n",)),
        "051dd818512dba3dd49b96c1",
    ),
    (
        "Task: y\n",
        SamplingParams(
            temperature=0.2,
            top_p=1.0,
            max_tokens=300,
            frequency_penalty=0.5,
            stop=("\nTask:", "Task:"),
            seed=7,
        ),
        "19dc1c4df0c6602516329901",
    ),
    (
        "\u4e2d\u6587 \U0001f600",
        SamplingParams(temperature=1, top_p=1, max_tokens=3072),
        "1f18d925055681ae0ed2b579",
    ),
]


def test_keys_are_those_of_0_1_0() -> None:
    for prompt, params, digest in GOLDEN_DIGESTS:
        assert request_digest(prompt, params) == digest


@dataclass(frozen=True)
class _Upgraded(SamplingParams):
    """SamplingParams as a later version might have it, with two more fields."""

    logprobs: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()


def test_a_new_sampling_field_keeps_keys_until_it_is_used() -> None:
    for prompt, params, digest in GOLDEN_DIGESTS:
        upgraded = _Upgraded(**{name: getattr(params, name) for name in KEY_FIELDS})
        assert request_digest(prompt, upgraded) == digest
        used = _Upgraded(**{name: getattr(params, name) for name in KEY_FIELDS}, logprobs=5)
        assert request_digest(prompt, used) != digest
        biased = _Upgraded(**{name: getattr(params, name) for name in KEY_FIELDS}, logit_bias=())
        assert request_digest(prompt, biased) == digest


def test_every_later_sampling_field_has_a_default() -> None:
    """A field without a default is always hashed: adding one would change every key."""
    import dataclasses

    for f in dataclasses.fields(SamplingParams):
        if f.name not in KEY_FIELDS:
            assert (
                f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            ), f.name
    assert set(KEY_FIELDS) <= {f.name for f in dataclasses.fields(SamplingParams)}
