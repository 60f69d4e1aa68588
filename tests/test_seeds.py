"""Tests for load_seeds: the bundled file, the original schema, and file:line:field errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfinstruct.errors import InputError, SeedError
from selfinstruct.records import Instance
from selfinstruct.seeds import default_seeds_path, load_seeds

FIELDS = ["id", "name", "instruction", "instances", "is_classification"]


def _task(n: int = 0, **changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": f"seed_task_{n}",
        "name": f"task_{n}",
        "instruction": f"Give {n + 2} reasons to learn to swim.",
        "instances": [{"input": "", "output": "It is fun and it keeps you safe."}],
        "is_classification": False,
    }
    task.update(changes)
    return task


def _line(task: dict[str, Any]) -> bytes:
    return json.dumps(task).encode()


def _without(field: str) -> dict[str, Any]:
    task = _task()
    del task[field]
    return task


def _write(tmp_path: Path, *lines: bytes) -> Path:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bundled_seeds() -> None:
    seeds = load_seeds()
    assert seeds.path == default_seeds_path()
    assert len(seeds.tasks) == 175
    assert 20 <= sum(bool(t.is_classification) for t in seeds.tasks) <= 30
    assert len({t.id for t in seeds.tasks}) == 175
    assert len({t.instruction for t in seeds.tasks}) == 175
    for task in seeds.tasks:
        assert task.instruction and task.instruction == task.instruction.strip()
        assert task.instances
        assert all(i.output.strip() for i in task.instances)
        assert task.round is None
    assert seeds.digest == load_seeds(default_seeds_path()).digest


def test_original_self_instruct_schema(tmp_path: Path) -> None:
    path = tmp_path / "seed_tasks.jsonl"
    path.write_text(
        '{"id": "seed_task_0", "name": "packing_list", "instruction": "Suggest what to pack '
        'for a weekend hike in the mountains.", "instances": [{"input": "", "output": "Boots, '
        'a rain jacket, water, snacks and a map."}], "is_classification": false}\n'
        '{"id": "seed_task_1", "name": "odd_one_out", "instruction": "Which word does not '
        'belong with the others?", "instances": [{"input": "apple, banana, carrot, grape", '
        '"output": "carrot"}], "is_classification": true}\n',
        encoding="utf-8",
    )
    seeds = load_seeds(path)
    assert [t.id for t in seeds.tasks] == ["seed_task_0", "seed_task_1"]
    assert [t.name for t in seeds.tasks] == ["packing_list", "odd_one_out"]
    assert seeds.tasks[0].instances == [
        Instance(input="", output="Boots, a rain jacket, water, snacks and a map.")
    ]
    assert seeds.tasks[1].instances == [
        Instance(input="apple, banana, carrot, grape", output="carrot")
    ]
    assert [t.is_classification for t in seeds.tasks] == [False, True]
    assert seeds.path == path


def test_tolerated_variations(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    lines = [
        json.dumps(_task(0, id=7, extra_key="kept out")),
        "",
        "   ",
        json.dumps(_task(1, instruction="  Name a river in Africa.  ")),
    ]
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    seeds = load_seeds(path)
    assert [t.id for t in seeds.tasks] == ["7", "seed_task_1"]
    assert seeds.tasks[1].instruction == "Name a river in Africa."


def test_bom_accepted(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _line(_task()) + b"\n")
    assert [t.id for t in load_seeds(path).tasks] == ["seed_task_0"]


def test_digest_follows_the_bytes(tmp_path: Path) -> None:
    a = _write(tmp_path, _line(_task()))
    digest = load_seeds(a).digest
    assert load_seeds(a).digest == digest
    a.write_bytes(_line(_task(0, name="renamed")) + b"\n")
    assert load_seeds(a).digest != digest


ERROR_CASES: list[tuple[str, list[bytes], int, str]] = [
    # (id, file lines, line named in the error, text the message must contain)
    ("invalid_json", [_line(_task(0)), b'{"id": "seed_task_1", '], 2, "invalid JSON"),
    ("non_object_list", [b"[1, 2, 3]"], 1, "expected a JSON object, got list"),
    ("non_object_string", [_line(_task(0)), b'"just a string"'], 2, "got str"),
    *[(f"missing_{f}", [_line(_without(f))], 1, f"field '{f}': missing") for f in FIELDS],
    (
        "mistyped_is_classification",
        [_line(_task(is_classification="yes"))],
        1,
        "field 'is_classification'",
    ),
    ("mistyped_id", [_line(_task(id=1.5))], 1, "field 'id"),
    ("mistyped_name", [_line(_task(name=None))], 1, "field 'name'"),
    ("mistyped_instruction", [_line(_task(instruction=["a"]))], 1, "field 'instruction'"),
    (
        "instances_not_a_list",
        [_line(_task(instances={"input": "", "output": "x"}))],
        1,
        "field 'instances'",
    ),
    (
        "output_a_number",
        [_line(_task(instances=[{"input": "", "output": 5}]))],
        1,
        "field 'instances[0].output'",
    ),
    (
        "second_instance_missing_input",
        [_line(_task(instances=[{"input": "", "output": "x"}, {"output": "y"}]))],
        1,
        "field 'instances[1].input': missing",
    ),
    (
        "instance_not_an_object",
        [_line(_task(instances=["x"]))],
        1,
        "field 'instances[0]'",
    ),
    ("empty_instances", [_line(_task(instances=[]))], 1, "field 'instances'"),
    ("empty_instruction", [_line(_task(instruction=""))], 1, "field 'instruction'"),
    (
        "error_after_blank_line",
        [_line(_task(0)), b"", b"  ", _line(_without("name"))],
        4,
        "field 'name': missing",
    ),
    (
        "duplicate_id",
        [_line(_task(0)), _line(_task(1)), _line(_task(2, id="seed_task_0"))],
        3,
        "field 'id': duplicate id 'seed_task_0' (first on line 1)",
    ),
    (
        "duplicate_id_int_and_str",
        [_line(_task(0, id=3)), _line(_task(1, id="3"))],
        2,
        "first on line 1",
    ),
    (
        "non_utf8_on_line_3",
        [_line(_task(0)), _line(_task(1)), b'{"id": "caf\xe9"}'],
        3,
        "not valid UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("lines", "line", "text"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_file_line_and_field(
    tmp_path: Path, lines: list[bytes], line: int, text: str
) -> None:
    path = _write(tmp_path, *lines)
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:")
    assert text in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "content", [b"", b"\n\n   \n\t\n", b"\xef\xbb\xbf"], ids=["empty", "blank_lines", "bom_only"]
)
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    assert str(info.value).startswith(f"{path}:")
    assert "no seed tasks" in str(info.value)


def test_nonexistent_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"
    with pytest.raises(SeedError) as info:
        load_seeds(path)
    assert str(info.value).startswith(f"{path}:")
    assert "cannot read" in str(info.value)


def test_directory_path(tmp_path: Path) -> None:
    with pytest.raises(SeedError, match="cannot read"):
        load_seeds(tmp_path)


def test_seed_error_is_an_input_error() -> None:
    assert issubclass(SeedError, InputError)


def test_line_separator_inside_a_json_string(tmp_path: Path) -> None:
    task = _task(instruction="Join the two lines:\u2028first\u2029second\x85third.")
    path = tmp_path / "seeds.jsonl"
    path.write_text(json.dumps(task, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_seeds(path).tasks[0].instruction == task["instruction"]


def test_whitespace_only_instruction_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, _line(_task(instruction="   ")))
    with pytest.raises(SeedError, match=r"field 'instruction'"):
        load_seeds(path)


@pytest.mark.parametrize("bad_id", [1.5, True, None, ["x"]], ids=["float", "bool", "null", "list"])
def test_mistyped_id_names_the_id_field(tmp_path: Path, bad_id: object) -> None:
    path = _write(tmp_path, _line(_task(id=bad_id)))
    with pytest.raises(SeedError, match=r":1: field 'id': "):
        load_seeds(path)
