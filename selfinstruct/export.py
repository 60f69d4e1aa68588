"""Write a run's committed pool in formats that fine-tuning tools read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from selfinstruct.errors import RunDirError
from selfinstruct.store import CONFIG, atomic_write, load_pool

ExportFormat = Literal["alpaca", "tasks"]
FORMATS: tuple[ExportFormat, ...] = ("alpaca", "tasks")


def export_run(run: Path, output: Path, fmt: ExportFormat = "alpaca") -> int:
    """Write the committed pool of `run` to `output`; return how many records were written.

    alpaca: a JSON list with one {instruction, input, output} per instance, as the
    Self-Instruct and Alpaca releases did. tasks: JSONL in the seed schema, so a finished
    pool can seed another run (is_classification is false where the mode never asked).
    Only committed rounds are read, so exporting while a run is going yields a valid file.
    """
    if not (run / CONFIG).exists():
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass --out RUN_DIR")
    pool = load_pool(run)
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "tasks":
        lines = [
            json.dumps(
                {
                    "id": task.id,
                    "name": task.name,
                    "instruction": task.instruction,
                    "instances": [i.model_dump() for i in task.instances],
                    "is_classification": bool(task.is_classification),
                },
                ensure_ascii=False,
            )
            for task in pool
        ]
        atomic_write(output, "".join(line + "\n" for line in lines).encode())
        return len(lines)
    records: list[dict[str, Any]] = [
        {"instruction": task.instruction, "input": inst.input, "output": inst.output}
        for task in pool
        for inst in task.instances
    ]
    atomic_write(output, json.dumps(records, ensure_ascii=False, indent=2).encode() + b"\n")
    return len(records)
