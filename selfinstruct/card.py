"""Describe an export in a data card: where its records came from and how they were chosen.

One card, two renderings: JSON (``OUTPUT.card.json`` beside a file export) and a Hugging
Face dataset card (``README.md``: YAML front matter with the Hub's metadata keys, then a
readable body) inside an hf directory or a Hub repo. A card holds settings, digests,
counts, tokens and dates, never teacher text; it names the teacher's model, API and
backend but no endpoint, key or path beyond a file name, and every string in it passes
through `secrets.redact` before it is written, as messages do.

`select_by_score` is the `export --min-score` filter: tasks the judge scored below the
minimum, or could not score, are dropped and counted on the card.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfinstruct import __version__
from selfinstruct.errors import ConfigError, RunDirError, SelfInstructError
from selfinstruct.records import Task
from selfinstruct.secrets import redact

if TYPE_CHECKING:
    from selfinstruct.store import StageUsage

CARD_FORMAT = 1
CARD_SUFFIX = ".card.json"
README = "README.md"
UNKNOWN = "unknown"  # also the Hub's own licence value for "not stated"
# The Hub's size_categories buckets (huggingface.co/docs/hub/datasets-cards), by records.
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)
TERMS_NOTE = (
    "Text a model generated may also be bound by the teacher's terms of use: check them "
    "before publishing."
)
LICENSE_NOTE = "The licence of the seed tasks, unless given with --license. " + TERMS_NOTE


@dataclass(frozen=True)
class Selection:
    """The tasks an export keeps, and how many `--min-score` dropped and why."""

    tasks: list[Task]
    min_score: int | None = None
    below: int = 0  # scored under min_score
    unscored: int = 0  # judged without a score, or never judged


def card_path(output: Path) -> Path:
    """Return where the JSON card of an export goes: OUTPUT.card.json beside it."""
    return output.with_name(output.name + CARD_SUFFIX)


def select_by_score(pool: Sequence[Task], min_score: int | None) -> Selection:
    """Keep the tasks whose judge score is at least `min_score` (all of them without one).

    Raise ConfigError when a minimum is asked of a pool that no judge has scored: every
    task would be dropped, which is never what was meant.
    """
    if min_score is None:
        return Selection(list(pool))
    if not 1 <= min_score <= 5:
        raise ConfigError(f"--min-score: {min_score} is outside the judge's scale of 1 to 5")
    if not any(task.judge is not None and task.judge.score is not None for task in pool):
        raise ConfigError(
            "--min-score: the run has no judge scores (it ran without the judge); "
            "export without --min-score"
        )
    kept: list[Task] = []
    below = unscored = 0
    for task in pool:
        score = task.judge.score if task.judge is not None else None
        if score is None:
            unscored += 1
        elif score < min_score:
            below += 1
        else:
            kept.append(task)
    return Selection(kept, min_score, below, unscored)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def _last_commit(run: Path) -> str | None:
    from selfinstruct.store import STATE

    try:
        updated = json.loads((run / STATE).read_bytes()).get("updated")
    except (OSError, ValueError, AttributeError):
        return None
    return str(updated) if updated else None


def _run_started(run: Path) -> str | None:
    from selfinstruct.store import CONFIG

    # config.json is written once, when the run starts, and never again.
    try:
        mtime = (run / CONFIG).stat().st_mtime
    except OSError:
        return None
    return _iso(datetime.fromtimestamp(mtime, timezone.utc))


def _seeds(config: dict[str, Any], identity: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Describe the run's seed file; return the description and its SeedSet (None if gone)."""
    from selfinstruct.seeds import default_seeds_path, load_seeds

    stored = config.get("seeds")
    language = str(config.get("language", "en"))
    path = default_seeds_path(language) if stored is None else Path(str(stored))
    digest = identity.get("seeds.sha256")
    about: dict[str, Any] = {
        "file": path.name,
        "bundled": stored is None,
        "sha256": digest,
        "tasks": None,
        "licenses": None,
    }
    try:
        seed_set = load_seeds(path)
    except SelfInstructError:
        about["note"] = "the seed file is no longer at the path the run used"
        return about, None
    if seed_set.digest != digest:
        about["note"] = "the seed file has changed since the run; its licence is not known"
        return about, None
    about["tasks"] = len(seed_set.tasks)
    counts = seed_set.licenses()
    about["licenses"] = {UNKNOWN if k is None else k: n for k, n in sorted(counts.items(), key=str)}
    return about, seed_set


def _license(override: str | None, seed_licenses: Counter[str | None] | None) -> dict[str, Any]:
    if override is not None:
        return {"id": override, "source": "--license", "note": LICENSE_NOTE}
    if not seed_licenses or None in seed_licenses:
        spdx = UNKNOWN  # some seed has no stated licence
    else:
        ids = sorted(str(k) for k in seed_licenses)
        # Each seed licence covers part of the data: all of them apply to the whole.
        spdx = " AND ".join(f"({i})" if " " in i and len(ids) > 1 else i for i in ids)
    return {"id": spdx, "source": "seeds", "note": LICENSE_NOTE}


def _judge(
    config: dict[str, Any], pool: Sequence[Task], selection: Selection
) -> dict[str, Any] | None:
    settings = config.get("judge")  # the judge stage's settings, in runs that had one
    if isinstance(settings, dict):
        # Where the judge runs stays private, as the teacher's endpoint does.
        settings = {k: v for k, v in settings.items() if "url" not in k and "path" not in k}
    judged = [task.judge for task in pool if task.judge is not None]
    if settings is None and not judged and selection.min_score is None:
        return None
    scores = Counter("none" if j.score is None else str(j.score) for j in judged)
    return {
        "settings": settings if isinstance(settings, dict) else None,
        "models": sorted({j.model for j in judged}),
        "judged_tasks": len(judged),
        "scores": dict(sorted(scores.items())),
        "min_score": selection.min_score,
        "dropped_below_min_score": selection.below,
        "dropped_unscored": selection.unscored,
    }


def _usage(run: Path, usage: Mapping[str, StageUsage]) -> dict[str, Any]:
    from selfinstruct.costs import run_cost

    # The run's one cost model (its own prices, batches at half), on the state read once.
    table = run_cost(run, usage=usage)
    total = table.total_usd
    return {
        "note": "every answer the run logged, exported or not",
        "stages": {
            name: {
                "requests": s.requests,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
                "batched_requests": s.batched_requests,
                "usd": None if s.usd is None else round(s.usd, 6),
            }
            for name, s in table.stages.items()
        },
        "total_tokens": table.tokens,
        "price_usd_per_million_tokens": None
        if table.price is None
        else {"prompt": table.price[0], "completion": table.price[1]},
        "cost_usd": None if total is None else round(total, 6),
    }


# The teacher's sampling settings on a card; alpaca mode makes instruction requests only.
_SAMPLING = ("temperature", "top_p", "presence_penalty", "max_tokens")
_SAMPLING_SI = ("classify_max_tokens", "instances_max_tokens", "instances_temperature")


def _teacher(header: dict[str, Any]) -> dict[str, Any]:
    teacher = header["config"]["teacher"]
    used = _SAMPLING + (_SAMPLING_SI if header["config"]["mode"] == "self-instruct" else ())
    backend = teacher.get("backend")
    if backend == "openai":
        # Where a self-hosted server runs is the user's business, not the dataset's.
        endpoint = "OpenAI-compatible server" if teacher.get("base_urls") else "api.openai.com"
    else:
        endpoint = f"in-process ({backend})"
    return {
        "model": teacher.get("model"),
        "reported_model": header.get("teacher_reported"),  # what the server said it runs
        "api": teacher.get("api"),
        "backend": backend,
        "endpoint": endpoint,
        "batch_api": teacher.get("batch_api"),
        "sampling": {key: teacher.get(key) for key in used},
    }


def build_card(
    run: Path,
    pool: Sequence[Task],
    selection: Selection,
    *,
    fmt: str,
    records: int,
    name: str,
    license: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Return the data card of an export of `run`: `selection` of `pool`, `records` written.

    `name` is the export's file, directory or Hub repo name; `license` (SPDX) replaces
    the seeds' licence on the card.
    """
    from selfinstruct.store import CONFIG, read_header

    header = read_header(run)
    try:
        card = _build(run, header, pool, selection, fmt, records, name, license, now)
    except (KeyError, TypeError, AttributeError):
        # A config.json of another version, or edited: an export still needs no card.
        raise RunDirError(
            f"{run / CONFIG}: incomplete or not of this version; no data card can be written "
            "(pass --no-card to export without one)"
        ) from None
    scrubbed: dict[str, Any] = _scrub(card)
    return scrubbed


def _build(
    run: Path,
    header: dict[str, Any],
    pool: Sequence[Task],
    selection: Selection,
    fmt: str,
    records: int,
    name: str,
    license: str | None,
    now: datetime | None,
) -> dict[str, Any]:
    from selfinstruct.store import read_state

    config: dict[str, Any] = header["config"]
    identity: dict[str, Any] = header["identity"]
    seeds, seed_set = _seeds(config, identity)
    state = read_state(run)
    rejections = dict(sorted(state.rejections.items())) if state is not None else {}
    prompts = config.get("prompts")
    card: dict[str, Any] = {
        "card_format": CARD_FORMAT,
        "name": name,
        "format": fmt,
        "generated_by": {
            "tool": "selfinstruct",
            "version": __version__,
            "run_started_by_version": header.get("selfinstruct"),
        },
        "license": _license(license, None if seed_set is None else seed_set.licenses()),
        "teacher": _teacher(header),
        "generation": {
            "mode": config.get("mode"),
            "language": config.get("language"),
            "random_seed": config.get("seed"),
            "num_examples": config.get("num_examples"),
            "num_machine_examples": config.get("num_machine_examples"),
            "new_per_prompt": config.get("new_per_prompt"),
            "max_instances": config.get("max_instances"),
            "target": config.get("target"),
        },
        "seeds": seeds,
        "prompts": {
            "source": "bundled" if prompts is None else Path(str(prompts)).name,
            "sha256": identity.get("prompts.sha256"),
        },
        "filters": config.get("filters"),
        "counts": {
            "seed_tasks": seeds["tasks"],
            "generated_tasks": len(pool),
            "generated_instances": _instances(pool),
            "exported_tasks": len(selection.tasks),
            "exported_instances": _instances(selection.tasks),
            "exported_records": records,
            "rejected": sum(rejections.values()),
            "rejections": rejections,
        },
        "judge": _judge(config, pool, selection),
        "usage": _usage(run, state.usage if state is not None else {}),
        "dates": {
            "run_started": _run_started(run),
            "last_commit": _last_commit(run),
            "exported": _iso(now or datetime.now(timezone.utc)),
        },
    }
    return card


def _instances(tasks: Iterable[Task]) -> int:
    return sum(len(task.instances) for task in tasks)


def _scrub(value: Any) -> Any:
    """Redact every string of a card, keys excepted (ours), as messages are redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def card_json(card: dict[str, Any]) -> bytes:
    """Serialise a card as the JSON written beside a file export."""
    return json.dumps(card, ensure_ascii=False, indent=2).encode() + b"\n"


# -- README.md: the Hugging Face dataset card ------------------------------------------------


def size_category(records: int) -> str:
    """Return the Hub's size_categories bucket of a dataset of `records` rows."""
    for bound, label in _SIZES:
        if records < bound:
            return label
    return "n>1B"


def hub_license(spdx: str) -> dict[str, str]:
    """Return the Hub's licence metadata for an SPDX id: a lowercase id, or other + a name."""
    if spdx == UNKNOWN:
        return {"license": UNKNOWN}
    if " " in spdx or spdx.startswith("LicenseRef-"):
        # An expression or a private licence is not one of the Hub's ids.
        return {"license": "other", "license_name": spdx}
    return {"license": spdx.lower()}


def hub_metadata(card: dict[str, Any]) -> dict[str, Any]:
    """Return the front matter of the dataset card: the Hub's metadata keys."""
    mode = card["generation"]["mode"]
    return {
        **hub_license(card["license"]["id"]),
        "language": [card["generation"]["language"]],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(card["counts"]["exported_records"])],
        "tags": ["synthetic", "instruction-tuning", mode, "selfinstruct"],
        "pretty_name": card["name"],
    }


# What JSON leaves raw but YAML does not print as itself (YAML 1.2, sec. 5.1 and 5.4): C1
# controls and DEL, the line breaks NEL, LS and PS (folded inside a quoted scalar), and
# U+FFFE/U+FFFF. JSON only ever emits them inside strings, where \uXXXX means the same.
_NOT_YAML = re.compile("[\x7f-\x9f\u2028\u2029\ufffe\uffff]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _yaml(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return _NOT_YAML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def front_matter(metadata: Mapping[str, Any]) -> str:
    """Render metadata as a YAML front matter block.

    Each value is written as JSON, which is YAML's flow style: quoting is exact whatever
    the text, without a YAML library.
    """
    lines = [
        f"{key if _PLAIN_KEY.fullmatch(key) else _yaml(key)}: {_yaml(value)}"
        for key, value in metadata.items()
    ]
    return "---\n" + "\n".join(lines) + "\n---\n"


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")  # one table cell, one line


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def readme_body(card: dict[str, Any]) -> str:
    """Render the readable part of the dataset card (Markdown)."""
    t, g, s, c = card["teacher"], card["generation"], card["seeds"], card["counts"]
    u, d, lic = card["usage"], card["dates"], card["license"]
    served = f"; the server reported `{t['reported_model']}`" if t["reported_model"] else ""
    seed_count = f"{s['tasks']} seed tasks" if s["tasks"] is not None else "seed tasks"
    out = [
        f"# {_cell(card['name'])}",
        "",
        f"Instruction-tuning data grown the {g['mode']} way by selfinstruct "
        f"{card['generated_by']['version']}: {c['exported_records']} records from "
        f"{c['exported_tasks']} tasks, generated by the teacher `{t['model']}` "
        f"({t['api']} API, {t['backend']} backend{served}) from {seed_count}. "
        f"Language: {g['language']}.",
        "",
        "Each record is an instruction, an optional input and an output (columns "
        "`instruction`, `input`, `output`).",
        "",
        "## Licence",
        "",
        f"`{lic['id']}` ({'given with --license' if lic['source'] == '--license' else 'the seeds'}"
        f"). {TERMS_NOTE}",
        "",
        "## Sources",
        "",
        *_table(
            ("item", "value"),
            [
                ("seed file", f"{s['file']}{' (bundled)' if s['bundled'] else ''}"),
                ("seed sha256", s["sha256"]),
                ("seed licences", json.dumps(s["licenses"]) if s["licenses"] else UNKNOWN),
                ("prompts", card["prompts"]["source"]),
                ("prompts sha256", card["prompts"]["sha256"]),
                ("teacher endpoint", t["endpoint"]),
                ("batch API", t["batch_api"]),
                *(("sampling " + k, v) for k, v in t["sampling"].items()),
                ("random seed", g["random_seed"]),
            ],
        ),
        "## Filters",
        "",
        *_table(
            ("setting", "value"),
            [
                (k, ", ".join(v) if isinstance(v, list) else "off" if v is None else v)
                for k, v in card["filters"].items()
            ],
        ),
        "## Counts",
        "",
        *_table(
            ("", "count"),
            [(k.replace("_", " "), v) for k, v in c.items() if k != "rejections"],
        ),
    ]
    if c["rejections"]:
        out += ["Rejections by stage and reason:", ""]
        out += _table(("stage/reason", "count"), c["rejections"].items())
    if card["judge"] is not None:
        j = card["judge"]
        out += ["## Judge", ""]
        out += _table(
            ("", "value"),
            [
                ("models", ", ".join(j["models"])),
                ("judged tasks", j["judged_tasks"]),
                ("scores", json.dumps(j["scores"])),
                ("--min-score", j["min_score"]),
                ("dropped below it", j["dropped_below_min_score"]),
                ("dropped without a score", j["dropped_unscored"]),
            ],
        )
    out += ["## Tokens and cost", "", "Every answer the run logged, exported or not.", ""]
    out += _table(
        ("stage", "requests", "prompt tokens", "completion tokens", "USD"),
        [
            (k, v["requests"], v["prompt_tokens"], v["completion_tokens"], v["usd"])
            for k, v in u["stages"].items()
        ],
    )
    cost = "unknown (no price for the model)" if u["cost_usd"] is None else f"{u['cost_usd']:.4f}"
    out += [f"Total: {u['total_tokens']} tokens, {cost} USD.", ""]
    out += ["## Dates (UTC)", ""]
    out += _table(("", "when"), [(k.replace("_", " "), v) for k, v in d.items()])
    return "\n".join(out)


def readme(card: dict[str, Any], existing: Mapping[str, Any] | None = None) -> str:
    """Return README.md: the card's Hub metadata over `existing` front matter, then the body.

    `existing` is the metadata of the README a dataset push wrote: its dataset_info and
    configs tell the Hub's viewer how to read the data, so they are kept.
    """
    # A licence named before (license_name, license_link) is not this card's to keep.
    kept = {k: v for k, v in (existing or {}).items() if not k.startswith("license")}
    metadata = {**kept, **hub_metadata(card)}
    return front_matter(metadata) + "\n" + readme_body(card)
