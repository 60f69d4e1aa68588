"""Read what a report describes from a run directory: committed data, every response."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.records import Task
from selfinstruct.seeds import default_seeds_path, load_seeds
from selfinstruct.store import (
    CONFIG,
    REJECTED,
    RESPONSES,
    load_admitted_rejections,
    load_pool,
    read_lines,
    read_state,
)

# (label, done, total): how a long step of a report shows its progress.
Progress = Callable[[str, int, int], None]


@dataclass
class RunData:
    """What a report reads from a run directory: committed data only, plus every response."""

    path: Path
    header: dict[str, Any]
    pool: list[Task]
    seeds: list[str]
    admitted_rejected: dict[int, str]  # seq -> instruction, for novelty replay
    rejections: list[dict[str, Any]]
    responses: list[tuple[int, str, int, int]]  # round, stage, prompt and completion tokens
    rounds: int
    seed_tasks: list[Task] = field(default_factory=list)

    @property
    def model(self) -> str:
        """Name the teacher model."""
        return str(self.header["config"]["teacher"]["model"])

    @property
    def language(self) -> str:
        """Name the run's language (runs made before --language existed are English)."""
        return str(self.header["config"].get("language", "en"))


def load_run(run: Path, seeds: Path | None = None) -> RunData:
    """Read a run directory for a report; `seeds` overrides the seed file the run names."""
    config_path = run / CONFIG
    try:
        header = json.loads(config_path.read_bytes())
        config = header["config"]
        config["teacher"]["model"], config["filters"]["rouge_threshold"]  # noqa: B018
    except FileNotFoundError:
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass RUN_DIR") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{config_path}: unreadable; not a run directory of this tool") from None
    state = read_state(run)
    if state is None:
        raise RunDirError(f"{run}: no readable state.json; run bootstrap on it to rebuild it")
    language = str(config.get("language", "en"))
    seed_path = seeds or (
        Path(config["seeds"]) if config.get("seeds") else default_seeds_path(language)
    )
    seed_set = load_seeds(seed_path)
    expected = header.get("identity", {}).get("seeds.sha256")
    if expected is not None and seed_set.digest != expected:
        raise ConfigError(
            f"{seed_path}: not the seed file this run used (its sha256 differs); "
            "pass --seeds with the run's seed file"
        )
    rejections = []
    for number, line, _ in read_lines(run / REJECTED, state.rejected_bytes):
        try:
            entry = json.loads(line)
            entry["round"], entry["stage"], entry["reason"]  # noqa: B018
        except (ValueError, KeyError, TypeError):
            raise RunDirError(f"{run / REJECTED}:{number}: invalid line") from None
        rejections.append(entry)
    responses = []
    for _, line, _ in read_lines(run / RESPONSES):
        try:
            entry = json.loads(line)
            usage = entry["usage"]
            responses.append(
                (int(entry["round"]), str(entry["stage"]), int(usage[0]), int(usage[1]))
            )
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # a damaged entry is re-requested by bootstrap; nothing to count here
    return RunData(
        path=run,
        header=header,
        pool=load_pool(run),
        seeds=[t.instruction for t in seed_set.tasks],
        admitted_rejected=load_admitted_rejections(run, state.rejected_bytes),
        rejections=rejections,
        responses=responses,
        rounds=state.rounds_committed,
        seed_tasks=list(seed_set.tasks),
    )
