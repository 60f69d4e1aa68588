"""Write a run's committed pool in formats that fine-tuning tools read.

Every format but ``tasks`` has one record per instance, as the Self-Instruct and Alpaca
releases did. The chat formats put the instruction, then a blank line and the input when
there is one, in the user turn, and the output in the assistant turn:

    alpaca    JSON list of {instruction, input, output}
    jsonl     the same records, one JSON object a line
    sharegpt  JSONL of {"conversations": [{"from": "human", "value"}, {"from": "gpt", ...}]}
    openai    JSONL of {"messages": [{"role": "user", "content"}, {"role": "assistant", ...}]},
              the OpenAI chat fine-tuning format
    parquet   one Parquet file with string columns instruction, input, output (pyarrow)
    hf        a Hugging Face ``datasets`` directory (``Dataset.save_to_disk``)
    tasks     JSONL in the seed schema, so a finished pool can seed another run

pyarrow and datasets are the optional ``[hf]`` extra, imported only when asked for.

Each export also gets a data card (card.py), unless turned off: OUTPUT.card.json beside
a file, and README.md inside an hf directory and in a Hub repo.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from selfinstruct.card import (
    README,
    build_card,
    card_json,
    card_path,
    readme,
    select_by_score,
)
from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.records import Task
from selfinstruct.store import CONFIG, atomic_file, atomic_write, load_checked_pool

ExportFormat = Literal["alpaca", "jsonl", "sharegpt", "openai", "parquet", "hf", "tasks"]
FORMATS: tuple[ExportFormat, ...] = (
    "alpaca",
    "jsonl",
    "sharegpt",
    "openai",
    "parquet",
    "hf",
    "tasks",
)
HF_INSTALL_HINT = 'pip install "selfinstruct[hf]" (in a checkout: pip install -e ".[hf]")'
# The environment variable huggingface_hub itself reads; the token is never written anywhere.
HF_TOKEN_ENV = "HF_TOKEN"
# Files that `Dataset.save_to_disk` writes: a directory holding them may be replaced.
_HF_MARKERS = ("dataset_info.json", "state.json")


def user_turn(instruction: str, task_input: str) -> str:
    """Return the user message of a chat record: the instruction, then the input if any."""
    return f"{instruction}\n\n{task_input}" if task_input else instruction


def alpaca_records(pool: list[Task]) -> list[dict[str, str]]:
    """Return one {instruction, input, output} record per instance, in pool order."""
    return [
        {"instruction": task.instruction, "input": inst.input, "output": inst.output}
        for task in pool
        for inst in task.instances
    ]


def _sharegpt(record: Mapping[str, str], system: str | None) -> dict[str, Any]:
    turns = [{"from": "system", "value": system}] if system else []
    turns.append({"from": "human", "value": user_turn(record["instruction"], record["input"])})
    turns.append({"from": "gpt", "value": record["output"]})
    return {"conversations": turns}


def _openai(record: Mapping[str, str], system: str | None) -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user_turn(record["instruction"], record["input"])})
    messages.append({"role": "assistant", "content": record["output"]})
    return {"messages": messages}


def _task_line(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "name": task.name,
        "instruction": task.instruction,
        "instances": [i.model_dump() for i in task.instances],
        # None where the run never asked (alpaca mode): unknown, not "no".
        "is_classification": task.is_classification,
    }


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


def _require_hf(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)  # needed next anyway; fails early, before any write
    except ImportError:
        raise ConfigError(f"this export needs {module}: {HF_INSTALL_HINT}") from None


def load_run_pool(run: Path) -> list[Task]:
    """Return the committed pool of a run directory, checked as a resume checks it.

    Raise RunDirError when `run` is no run directory or its committed logs are torn or
    edited; nothing is locked or written, so a run may be going meanwhile.
    """
    if not (run / CONFIG).exists():
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass --out RUN_DIR")
    return load_checked_pool(run)


def check_output(run: Path, output: Path, fmt: ExportFormat) -> None:
    """Refuse an output path that is empty, inside the run directory, or a directory.

    Writing into the run directory would replace or add to its logs and break the run.
    """
    if not str(output):  # a Path made from "" reads ".", so the CLI checks that too
        raise ConfigError("--output: empty path; name the file to write")
    if str(output) == "-":
        # Not standard output: an export is replaced atomically, and its card goes beside it.
        raise ConfigError("--output -: exports are written to a file, the card beside it; name one")
    where, home = output.resolve(), run.resolve()
    if where == home or home in where.parents:
        raise ConfigError(
            f"--output {output}: inside the run directory {run}; write the export elsewhere"
        )
    if fmt != "hf" and output.is_dir():
        raise ConfigError(f"--output {output}: is a directory; name a file to write")


def check_license(license: str | None) -> str | None:
    """Return an SPDX id given with --license, stripped; raise ConfigError if malformed."""
    from selfinstruct.seeds import check_spdx

    if license is None:
        return None
    try:
        return check_spdx(license)
    except ValueError as exc:
        raise ConfigError(f"--license: {exc}") from None


def export_run(
    run: Path,
    output: Path,
    fmt: ExportFormat = "alpaca",
    system: str | None = None,
    *,
    min_score: int | None = None,
    card: bool = True,
    license: str | None = None,
) -> int:
    """Write the committed pool of `run` to `output` in `fmt`; return the records written.

    Only committed rounds are read, so exporting while a run is going yields a valid file.
    `system` adds a system turn to the chat formats (sharegpt, openai). `min_score` keeps
    the tasks the judge scored at least that. With `card`, OUTPUT.card.json is written
    beside the export once it is in place (and README.md inside an hf directory), stating
    `license` (SPDX) if given, else the seeds' licence. Files are replaced atomically; an
    hf directory is built beside `output` and renamed into place.
    """
    if system is not None and fmt not in ("sharegpt", "openai"):
        raise ConfigError(f"--system applies to the chat formats sharegpt and openai, not {fmt}")
    license = check_license(license)
    if fmt in ("parquet", "hf"):
        _require_hf("pyarrow")
    check_output(run, output, fmt)
    if card and card_path(output).is_dir():
        raise ConfigError(f"{card_path(output)}: is a directory; the data card goes there")
    if fmt == "hf":
        _require_hf("datasets")
        _check_hf_target(output)
    pool = load_run_pool(run)
    chosen = select_by_score(pool, min_score)
    records = alpaca_records(chosen.tasks)
    written = len(chosen.tasks) if fmt == "tasks" else len(records)
    about = None
    if card:
        about = build_card(
            run, pool, chosen, fmt=fmt, records=written, name=output.name, license=license
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "tasks":
        atomic_write(output, _jsonl([_task_line(task) for task in chosen.tasks]))
    elif fmt == "alpaca":
        atomic_write(output, json.dumps(records, ensure_ascii=False, indent=2).encode() + b"\n")
    elif fmt == "jsonl":
        atomic_write(output, _jsonl(list(records)))
    elif fmt == "sharegpt":
        atomic_write(output, _jsonl([_sharegpt(r, system) for r in records]))
    elif fmt == "openai":
        atomic_write(output, _jsonl([_openai(r, system) for r in records]))
    elif fmt == "parquet":
        _write_parquet(output, records)
    else:
        _write_hf(output, records, None if about is None else readme(about))
    if about is not None:
        # Written after the data: a card never describes an export that is not there.
        atomic_write(card_path(output), card_json(about))
    return written


def _arrow_table(records: list[dict[str, str]]) -> Any:
    import pyarrow as pa

    # An explicit schema keeps the column types string even for an empty pool.
    schema = pa.schema(
        [("instruction", pa.string()), ("input", pa.string()), ("output", pa.string())]
    )
    return pa.Table.from_pylist(records, schema=schema)


def _write_parquet(output: Path, records: list[dict[str, str]]) -> None:
    import pyarrow.parquet as pq

    with atomic_file(output) as fh:
        pq.write_table(_arrow_table(records), fh)


def _check_hf_target(output: Path) -> None:
    """Refuse to replace anything but an earlier `save_to_disk` directory."""
    if output.is_file():
        raise ConfigError(f"{output}: is a file; the hf format writes a directory")
    if output.is_dir() and any(output.iterdir()):
        if not all((output / name).exists() for name in _HF_MARKERS):
            raise ConfigError(
                f"{output}: a non-empty directory that is not a saved dataset; "
                "choose an empty or new directory"
            )


def hf_dataset(records: list[dict[str, str]]) -> Any:
    """Return a `datasets.Dataset` of the records (columns instruction, input, output)."""
    import datasets

    columns = ("instruction", "input", "output")
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    return datasets.Dataset.from_dict(
        {name: [r[name] for r in records] for name in columns}, features=features
    )


def _write_hf(output: Path, records: list[dict[str, str]], card: str | None) -> None:
    # Saved into a fresh sibling directory, then swapped in: a crash leaves the old copy.
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        hf_dataset(records).save_to_disk(str(tmp))
        if card is not None:
            atomic_write(tmp / README, card.encode())  # swapped in with the data
        if output.exists():
            # A unique, new empty directory: rename(2) may replace it, and no planted
            # name or concurrent export is ever touched.
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
            os.replace(output, old)
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def push_to_hub(
    run: Path,
    repo: str,
    private: bool = False,
    *,
    min_score: int | None = None,
    card: bool = True,
    license: str | None = None,
) -> int:
    """Upload the run's records as a dataset to the Hugging Face Hub repo `repo`.

    The token comes from the HF_TOKEN environment variable and is handed to
    huggingface_hub only; nothing writes it to disk or to a log. `min_score`, `card` and
    `license` are export_run's; the card becomes the repo's README.md.
    """
    token = os.environ.get(HF_TOKEN_ENV) or None
    if token is None:
        raise ConfigError(
            f"--push-to-hub needs a Hugging Face token: export {HF_TOKEN_ENV}=hf_... "
            "(a write token from your account settings)"
        )
    license = check_license(license)
    _require_hf("pyarrow")
    _require_hf("datasets")
    pool = load_run_pool(run)
    chosen = select_by_score(pool, min_score)
    records = alpaca_records(chosen.tasks)
    try:
        hf_dataset(records).push_to_hub(repo, token=token, private=private)
        if card:
            about = build_card(
                run, pool, chosen, fmt="hf", records=len(records), name=repo, license=license
            )
            _push_card(repo, token, about)
    except Exception as exc:  # network, auth or repo errors from huggingface_hub
        # huggingface_hub's message names the repo and the HTTP status; scrub the token anyway.
        message = str(exc).replace(token, "***")
        raise ConfigError(f"--push-to-hub {repo}: {type(exc).__name__}: {message}") from None
    return len(records)


def _push_card(repo: str, token: str, card: dict[str, Any]) -> None:
    """Replace the README.md that `Dataset.push_to_hub` wrote with the data card.

    That README's front matter (dataset_info, configs) tells the Hub's viewer how to read
    the data: it is kept, and the card's metadata keys are added over it. This uses
    huggingface_hub's documented DatasetCard API; the network path is not tested here.
    """
    from huggingface_hub import DatasetCard

    try:
        metadata = DatasetCard.load(repo, repo_type="dataset", token=token).data.to_dict()
    except Exception:  # no README yet, or one whose metadata cannot be read: ours alone
        metadata = {}
    DatasetCard(readme(card, metadata)).push_to_hub(
        repo, token=token, repo_type="dataset", commit_message="Add the selfinstruct data card"
    )
