"""Write a run's committed pool in formats that fine-tuning tools read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from selfinstruct.errors import RunDirError
from selfinstruct.store import CONFIG, atomic_write, load_pool

ExportFormat = Literal["alpaca"]


def export_run(run: Path, output: Path, fmt: ExportFormat = "alpaca") -> int:
    """Write the committed pool of `run` to `output`; return how many records were written.

    Only committed rounds are read, so exporting while a run is going yields a valid file.
    """
    if not (run / CONFIG).exists():
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass --out RUN_DIR")
    records = [
        {"instruction": task.instruction, "input": inst.input, "output": inst.output}
        for task in load_pool(run)
        for inst in task.instances
    ]
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, json.dumps(records, ensure_ascii=False, indent=2).encode() + b"\n")
    return len(records)
