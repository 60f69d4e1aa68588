"""Load and validate seed task files (JSONL in the Self-Instruct seed schema)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfinstruct.errors import SeedError, field_path
from selfinstruct.records import Instance, Task

# An SPDX license expression, checked for shape only ("Apache-2.0", "CC-BY-4.0 OR MIT",
# "LicenseRef-mine"): a typo in a known id is the author's to make, garbage is not.
_SPDX = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9.+-]*(?:\s+(?:AND|OR|WITH)\s+\(?[A-Za-z0-9][A-Za-z0-9.+-]*\)?)*"
)
_SPDX_MAX = 200
# A seed file's licence for all its lines: SEEDS.jsonl.license beside it, the id on line 1
# (a per-line "license" field wins for its line).
LICENSE_SUFFIX = ".license"


def check_spdx(value: str) -> str:
    """Return `value` stripped if it has the shape of an SPDX expression; raise ValueError."""
    text = value.strip()
    if len(text) > _SPDX_MAX or not _SPDX.fullmatch(text):
        raise ValueError(f"not an SPDX license id or expression: {text[:60]!r}")
    return text


class _SeedLine(BaseModel):
    """The schema of one seed line; extra keys are tolerated as other seed files carry some."""

    model_config = ConfigDict(extra="ignore", strict=True)

    id: Any
    name: str
    instruction: str = Field(min_length=1, pattern=r"\S")
    instances: list[Instance] = Field(min_length=1)
    is_classification: bool | None  # null: unknown (an alpaca-mode export); never asked
    # Not in the original Self-Instruct schema: the licence of this one task, if it has its own.
    license: str | None = None

    @field_validator("license")
    @classmethod
    def _license_is_spdx(cls, value: str | None) -> str | None:
        return None if value is None else check_spdx(value)

    @field_validator("id", mode="before")
    @classmethod
    def _id_is_str_or_int(cls, value: Any) -> Any:
        # The original seed file uses strings; some forks use integers. Nothing else.
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("must be a string or an integer")
        return value


@dataclass(frozen=True)
class SeedSet:
    """Validated seed tasks and a digest of the file they came from."""

    path: Path
    tasks: tuple[Task, ...]
    digest: str
    # The licence of each task in order (its own, else the file's sidecar); None: not stated.
    task_licenses: tuple[str | None, ...] = ()

    def licenses(self) -> Counter[str | None]:
        """Count the tasks under each licence; None counts those with no licence stated."""
        return Counter(self.task_licenses or (None,) * len(self.tasks))


def license_path(seeds: Path) -> Path:
    """Return where the licence sidecar of a seed file lives: SEEDS.jsonl.license."""
    return seeds.with_name(seeds.name + LICENSE_SUFFIX)


def read_license(seeds: Path) -> str | None:
    """Return the SPDX id on the first line of the seed file's sidecar, None without one."""
    sidecar = license_path(seeds)
    try:
        text = sidecar.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not valid UTF-8"
        raise SeedError(f"{sidecar}: cannot read the licence file: {why}") from None
    first = text.split("\n", 1)[0]
    try:
        return check_spdx(first)
    except ValueError as exc:
        raise SeedError(f"{sidecar}:1: {exc}") from None


# The bundled seed file of each language (RunConfig.language).
SEED_FILES = {"en": "seed_tasks.jsonl", "zh": "seed_tasks_zh.jsonl"}


def default_seeds_path(language: str = "en") -> Path:
    """Return the bundled seed file of a language, from a checkout or an installed wheel."""
    return Path(str(resources.files("selfinstruct") / "data" / "seeds" / SEED_FILES[language]))


def load_seeds(path: Path | None = None, *, language: str = "en") -> SeedSet:
    """Read a seed file, raising SeedError that names file, line and field on any defect.

    Without a path, read the bundled seeds of `language`.
    """
    path = path or default_seeds_path(language)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SeedError(f"{path}: cannot read seed file: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM is harmless; tolerate editors that add one
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise SeedError(f"{path}:{bad_line}: not valid UTF-8 (byte {exc.start})") from None
    file_license = read_license(path)
    tasks: list[Task] = []
    licenses: list[str | None] = []
    first_line_of: dict[str, int] = {}
    # split("\n"), not splitlines(): U+2028 and friends may sit raw inside a JSON string.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SeedError(
                f"{path}:{lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        if not isinstance(obj, dict):
            raise SeedError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        try:
            seed = _SeedLine.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = field_path(err["loc"])
            msg = "missing" if err["type"] == "missing" else err["msg"]
            msg = msg.removeprefix("Value error, ")  # our own checks say what is wrong
            raise SeedError(f"{path}:{lineno}: field '{field}': {msg}") from None
        seed_id = str(seed.id)
        if seed_id in first_line_of:
            raise SeedError(
                f"{path}:{lineno}: field 'id': duplicate id {seed_id!r} "
                f"(first on line {first_line_of[seed_id]})"
            )
        first_line_of[seed_id] = lineno
        tasks.append(
            Task(
                id=seed_id,
                name=seed.name,
                instruction=seed.instruction.strip(),
                instances=seed.instances,
                is_classification=seed.is_classification,
            )
        )
        licenses.append(seed.license or file_license)
    if not tasks:
        raise SeedError(f"{path}: no seed tasks (the file is empty)")
    digest = hashlib.sha256(raw).hexdigest()
    return SeedSet(path=path, tasks=tuple(tasks), digest=digest, task_licenses=tuple(licenses))
