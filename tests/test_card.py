"""Data cards: beside every export, true to the run, free of secrets; seed licences; --min-score.

Runs are real: the CLI bootstraps against the loopback synthetic teacher, then exports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from selfinstruct.card import (
    card_path,
    front_matter,
    hub_license,
    readme,
    select_by_score,
    size_category,
)
from selfinstruct.errors import ConfigError, SeedError
from selfinstruct.records import Judgement, Task
from selfinstruct.seeds import default_seeds_path, load_seeds
from selfinstruct.store import load_pool
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

datasets = pytest.importorskip("datasets", reason="the [hf] extra is not installed")
pq = pytest.importorskip("pyarrow.parquet", reason="the [hf] extra is not installed")
yaml = pytest.importorskip("yaml", reason="PyYAML comes with the [hf] extra")

# Credentials the run holds in every form the tool accepts: the environment's key, a
# bearer token and basic auth in a URL's userinfo, a credential query parameter.
API_KEY = "sk-cardtest-ENVKEY0123456789abcdef"
URL_USER, URL_PASSWORD = "carduser77", "cardPASSWORD-9137"
QUERY_KEY = "cardQUERYKEY-5521"
SECRETS = (API_KEY, URL_USER, URL_PASSWORD, QUERY_KEY)
FILE_FORMATS = ("alpaca", "jsonl", "sharegpt", "openai", "parquet", "tasks", "hf")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Grow a 20-task run once, with a key and a base URL carrying credentials."""
    out = tmp_path_factory.mktemp("card") / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        host = server.base_url.removeprefix("http://")
        url = f"http://{URL_USER}:{URL_PASSWORD}@{host}?api-key={QUERY_KEY}"
        done = run_cli(
            "bootstrap", "--base-url", url, "--model", "synthetic", "--target", "20",
            "--out", str(out), "--quiet", api_key=API_KEY,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    yield out


@pytest.fixture
def offline_hf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the datasets library offline, its cache inside the test's directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-cache"))


def _export(run: Path, target: Path, fmt: str, *extra: str) -> subprocess.CompletedProcess[str]:
    done = run_cli("export", "--out", str(run), "-f", fmt, "-o", str(target), *extra)
    assert done.returncode == 0, done.stderr
    return done


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def _rows(path: Path, fmt: str) -> int:
    """Count the records of an export as its consumer reads them."""
    if fmt == "alpaca":
        return len(json.loads(path.read_text()))
    if fmt == "parquet":
        return int(pq.read_table(path).num_rows)
    if fmt == "hf":
        return len(datasets.load_from_disk(str(path)))
    return len(path.read_text().splitlines())


def _card(output: Path) -> dict[str, Any]:
    card: dict[str, Any] = json.loads(card_path(output).read_text())
    return card


def _front_matter(readme: Path) -> dict[str, Any]:
    text = readme.read_text()
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    data: dict[str, Any] = yaml.safe_load(head)
    return data


# -- a card beside every export --------------------------------------------------------------


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_card_beside_every_format_matches_the_export(
    finished: Path, tmp_path: Path, fmt: str, offline_hf: None
) -> None:
    target = tmp_path / f"data.{fmt}"
    done = _export(finished, target, fmt)
    assert f"its data card in {card_path(target)}" in done.stdout
    card = _card(target)
    pool = load_pool(finished)
    header = json.loads((finished / "config.json").read_text())
    state = json.loads((finished / "state.json").read_text())
    instances = sum(len(t.instances) for t in pool)

    assert card["format"] == fmt and card["name"] == target.name
    assert card["generated_by"]["tool"] == "selfinstruct" and card["generated_by"]["version"]
    counts = card["counts"]
    assert counts["exported_records"] == _rows(target, fmt)
    assert counts["exported_records"] == (len(pool) if fmt == "tasks" else instances)
    assert counts["generated_tasks"] == counts["exported_tasks"] == len(pool)
    assert counts["generated_instances"] == counts["exported_instances"] == instances
    assert counts["seed_tasks"] == 175
    assert counts["rejections"] == state["rejections"] and counts["rejected"] > 0
    teacher = card["teacher"]
    assert (teacher["model"], teacher["api"], teacher["backend"]) == (
        "synthetic",
        "completions",
        "openai",
    )
    assert teacher["reported_model"] == header["teacher_reported"] == "test-model"
    assert card["generation"]["mode"] == "self-instruct" and card["generation"]["language"] == "en"
    seeds = card["seeds"]
    assert seeds["file"] == "seed_tasks.jsonl" and seeds["bundled"] is True
    assert seeds["sha256"] == header["identity"]["seeds.sha256"]
    assert seeds["licenses"] == {"Apache-2.0": 175}
    assert card["license"]["id"] == "Apache-2.0" and card["license"]["source"] == "seeds"
    assert card["prompts"]["sha256"] == header["identity"]["prompts.sha256"]
    assert card["filters"]["rouge_threshold"] == 0.7 and "image" in card["filters"]["blacklist"]
    assert card["filters"]["max_words"] == 150 and card["filters"]["max_output_chars"] > 0
    usage = card["usage"]
    fields = ("requests", "prompt_tokens", "completion_tokens")
    tokens = {stage: [s[f] for f in fields] for stage, s in usage["stages"].items()}
    assert tokens == {stage: [u[f] for f in fields] for stage, u in state["usage"].items()}
    assert usage["cost_usd"] is None  # no known price for "synthetic", none given
    assert card["judge"] is None
    dates = card["dates"]
    assert dates["run_started"] <= dates["exported"]
    assert dates["last_commit"] == state["updated"]
    if fmt == "hf":  # the directory also carries the Hub's dataset card
        assert (target / "README.md").is_file()


def test_card_prices_the_run_with_its_own_prices(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    header = json.loads((run / "config.json").read_text())
    header["config"]["budget"].update(price_in=1.0, price_out=2.0)  # as --price-in/out set it
    (run / "config.json").write_text(json.dumps(header))
    target = tmp_path / "data.json"
    _export(run, target, "alpaca")
    usage = _card(target)["usage"]
    tokens_in = sum(s["prompt_tokens"] for s in usage["stages"].values())
    tokens_out = sum(s["completion_tokens"] for s in usage["stages"].values())
    assert usage["price_usd_per_million_tokens"] == {"prompt": 1.0, "completion": 2.0}
    assert usage["cost_usd"] == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)


def test_no_secret_reaches_a_card(finished: Path, tmp_path: Path, offline_hf: None) -> None:
    _export(finished, tmp_path / "data.jsonl", "jsonl")
    _export(finished, tmp_path / "ds", "hf")
    written = [
        tmp_path / "data.jsonl.card.json",
        tmp_path / "ds.card.json",
        tmp_path / "ds" / "README.md",
    ]
    for path in written:
        text = path.read_text()
        for secret in SECRETS:
            assert secret not in text, (path, secret)
        assert "127.0.0.1" not in text  # nor where the teacher runs
    assert _card(tmp_path / "data.jsonl")["teacher"]["endpoint"] == "OpenAI-compatible server"


def test_hf_card_has_hub_front_matter_and_the_dataset_still_loads(
    finished: Path, tmp_path: Path, offline_hf: None
) -> None:
    from huggingface_hub import DatasetCard

    target = tmp_path / "ds"
    _export(finished, target, "hf")
    meta = _front_matter(target / "README.md")
    records = _card(target)["counts"]["exported_records"]
    assert meta == {
        "license": "apache-2.0",
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": ["n<1K"],
        "tags": ["synthetic", "instruction-tuning", "self-instruct", "selfinstruct"],
        "pretty_name": "ds",
    }
    # huggingface_hub reads it as the Hub does, metadata errors raised.
    card = DatasetCard((target / "README.md").read_text())
    assert card.data.license == "apache-2.0" and card.data.language == ["en"]
    assert "# ds" in card.text and f"{records} records" in card.text
    assert "Rejections by stage and reason" in card.text
    assert len(datasets.load_from_disk(str(target))) == records
    _export(finished, target, "hf", "--license", "CC-BY-4.0")  # an earlier export is replaced
    assert _front_matter(target / "README.md")["license"] == "cc-by-4.0"


def test_pushed_readme_keeps_the_viewers_metadata(finished: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    _export(finished, target, "alpaca", "--license", "MIT")
    card = _card(target)
    # What `Dataset.push_to_hub` writes in front of a repo's README, and an old licence.
    pushed = {
        "dataset_info": {"features": [{"name": "instruction", "dtype": "string"}]},
        "configs": [{"config_name": "default", "data_files": "data/train-*"}],
        "license": "other",
        "license_name": "an-earlier-licence",
    }
    (tmp_path / "README.md").write_text(readme(card, pushed))
    meta = _front_matter(tmp_path / "README.md")
    assert meta["dataset_info"] == pushed["dataset_info"] and meta["configs"] == pushed["configs"]
    assert meta["license"] == "mit" and "license_name" not in meta
    assert meta["pretty_name"] == "data.json"


def test_front_matter_quotes_any_text_exactly() -> None:
    from huggingface_hub import DatasetCard

    name = 'a "quoted": name # not a comment\u2028next\x85\x7f\u00e9\U0001f600\ttab'
    metadata = {"pretty_name": name, "odd key: x": ["- item", "{brace}"], "n": 3}
    text = front_matter(metadata)
    assert yaml.safe_load(text.removeprefix("---\n").removesuffix("---\n")) == metadata
    assert DatasetCard(text + "\nbody\n").data.pretty_name == name


def test_hub_metadata_helpers() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 52_000, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M",
    ]  # fmt: skip
    assert hub_license("Apache-2.0") == {"license": "apache-2.0"}
    assert hub_license("unknown") == {"license": "unknown"}
    assert hub_license("CC-BY-4.0 AND MIT") == {
        "license": "other",
        "license_name": "CC-BY-4.0 AND MIT",
    }


# -- options -----------------------------------------------------------------------------------


def test_no_card_writes_none(finished: Path, tmp_path: Path, offline_hf: None) -> None:
    done = _export(finished, tmp_path / "data.json", "alpaca", "--no-card")
    assert "data card" not in done.stdout
    _export(finished, tmp_path / "ds", "hf", "--no-card")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-cache") == [
        "data.json",
        "ds",
    ]
    assert not (tmp_path / "ds" / "README.md").exists()


def test_license_option_overrides_the_seeds(finished: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    _export(finished, target, "alpaca", "--license", "CC-BY-NC-4.0")
    assert _card(target)["license"]["id"] == "CC-BY-NC-4.0"
    assert _card(target)["license"]["source"] == "--license"
    bad = run_cli("export", "--out", str(finished), "-o", str(tmp_path / "b.json"),
                  "--license", "not a licence; rm -rf")  # fmt: skip
    assert "--license: not an SPDX license id" in _one_line_error(bad)
    assert not (tmp_path / "b.json").exists()


def test_standard_output_and_a_card_in_the_way_are_refused(finished: Path, tmp_path: Path) -> None:
    done = run_cli("export", "--out", str(finished), "-o", "-", cwd=tmp_path)
    assert "--output -: exports are written to a file" in _one_line_error(done)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "data.json.card.json").mkdir()
    done = run_cli("export", "--out", str(finished), "-o", str(tmp_path / "data.json"))
    assert "data.json.card.json: is a directory" in _one_line_error(done)
    assert not (tmp_path / "data.json").exists()


# -- seed licences ------------------------------------------------------------------------------


def _seed_lines(n: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "id": f"s{i}",
            "name": f"t{i}",
            "instruction": f"List {i + 2} ways to save water at home.",
            "instances": [{"input": "", "output": "Shorter showers."}],
            "is_classification": False,
        }
        for i in range(n)
    ]


def _write_seeds(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_seed_licence_from_sidecar_and_per_line(tmp_path: Path) -> None:
    lines = _seed_lines()
    plain = _write_seeds(tmp_path / "plain.jsonl", lines)
    assert load_seeds(plain).licenses() == {None: 3}  # the original schema states none
    lines[1]["license"] = "MIT"
    mixed = _write_seeds(tmp_path / "mixed.jsonl", lines)
    before = load_seeds(mixed)
    assert before.licenses() == {None: 2, "MIT": 1}
    (tmp_path / "mixed.jsonl.license").write_text("CC-BY-4.0\nAttribution: the authors\n")
    seeds = load_seeds(mixed)
    assert seeds.task_licenses == ("CC-BY-4.0", "MIT", "CC-BY-4.0")  # a line's own wins
    # The sidecar is not the seed file: adding one leaves a run's identity as it was.
    assert seeds.digest == before.digest
    done = run_cli("seeds", "check", str(mixed))
    assert done.returncode == 0, done.stderr
    assert "license                 CC-BY-4.0 (2), MIT (1)\n" in done.stdout
    done = run_cli("seeds", "check", str(plain))
    assert "license                 not stated (3)\n" in done.stdout


def test_bad_seed_licences_name_file_line_and_field(tmp_path: Path) -> None:
    lines = _seed_lines()
    lines[2]["license"] = "MIT; or whatever"
    path = _write_seeds(tmp_path / "seeds.jsonl", lines)
    with pytest.raises(SeedError, match=r"seeds.jsonl:3: field 'license': not an SPDX"):
        load_seeds(path)
    lines[2]["license"] = 3
    _write_seeds(path, lines)
    with pytest.raises(SeedError, match=r"seeds.jsonl:3: field 'license'"):
        load_seeds(path)
    del lines[2]["license"]
    _write_seeds(path, lines)
    (tmp_path / "seeds.jsonl.license").write_text("\n")
    with pytest.raises(SeedError, match=r"seeds.jsonl.license:1: not an SPDX"):
        load_seeds(path)


def test_card_states_the_licences_of_a_run_with_its_own_seeds(tmp_path: Path) -> None:
    bundled = [json.loads(line) for line in default_seeds_path().read_text().splitlines()]
    for line in bundled[:10]:
        line["license"] = "MIT"
    seeds = _write_seeds(tmp_path / "mine.jsonl", bundled)
    (tmp_path / "mine.jsonl.license").write_text("CC-BY-4.0\n")
    out = tmp_path / "run"
    with OpenAITestServer(SyntheticTeacher()) as server:
        done = run_cli(
            "bootstrap", "--base-url", server.base_url, "--model", "synthetic", "--target",
            "8", "--seeds", str(seeds), "--out", str(out), "--quiet",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    target = tmp_path / "export" / "data.json"
    _export(out, target, "alpaca")
    card = _card(target)
    assert card["seeds"]["file"] == "mine.jsonl" and card["seeds"]["bundled"] is False
    assert card["seeds"]["licenses"] == {"CC-BY-4.0": 165, "MIT": 10}
    assert card["license"]["id"] == "CC-BY-4.0 AND MIT"
    # A seed file changed after the run: its licence can no longer be vouched for.
    seeds.write_text(seeds.read_text() + json.dumps(_seed_lines(1)[0]) + "\n")
    _export(out, target, "alpaca")
    card = _card(target)
    assert card["license"]["id"] == "unknown" and card["seeds"]["licenses"] is None
    assert "changed since the run" in card["seeds"]["note"]


# -- --min-score ---------------------------------------------------------------------------------


def _judged(task: Task, score: int | None) -> Task:
    verdict = Judgement(score=score, reason="test verdict", model="judge-model")
    return task.model_copy(update={"judge": verdict})


def test_select_by_score_keeps_at_least_the_minimum(finished: Path) -> None:
    pool = load_pool(finished)[:5]
    scored = [_judged(pool[0], 5), _judged(pool[1], 4), _judged(pool[2], 3)]
    scored += [_judged(pool[3], None), pool[4]]  # no verdict parsed; never judged
    chosen = select_by_score(scored, 4)
    assert [t.id for t in chosen.tasks] == [pool[0].id, pool[1].id]
    assert (chosen.min_score, chosen.below, chosen.unscored) == (4, 1, 2)
    assert select_by_score(scored, None).tasks == scored
    assert len(select_by_score(scored, 1).tasks) == 3
    with pytest.raises(ConfigError, match="outside the judge's scale"):
        select_by_score(scored, 6)
    with pytest.raises(ConfigError, match="the run has no judge scores"):
        select_by_score(pool, 3)
    with pytest.raises(ConfigError, match="the run has no judge scores"):
        select_by_score([_judged(pool[0], None)], 3)


def _judge_pool(run: Path, scores: list[int | None]) -> None:
    """Give the committed pool the judge's verdicts, as a run with the judge commits them.

    The commit record holds the pool's size in bytes, so it is brought up to date too;
    the line count (what a resume checks besides) stays the same.
    """
    pool = load_pool(run)
    judged = [_judged(task, score) for task, score in zip(pool, scores, strict=False)]
    data = b"".join(t.model_dump_json().encode() + b"\n" for t in judged + pool[len(judged) :])
    (run / "pool.jsonl").write_bytes(data)
    state = json.loads((run / "state.json").read_text())
    state["pool_bytes"] = len(data)
    (run / "state.json").write_text(json.dumps(state))


def test_min_score_export_keeps_judged_tasks_and_the_card_counts_the_rest(
    finished: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    n = len(load_pool(run))
    scores: list[int | None] = [5, 2, 4, None, 3] * (n // 5) + [1] * (n % 5)
    _judge_pool(run, scores)
    header = json.loads((run / "config.json").read_text())
    # The judge stage's settings, as a run with the judge stores them (read defensively).
    header["config"]["judge"] = {"model": "judge-model", "base_urls": ["http://judge.lan/v1"]}
    (run / "config.json").write_text(json.dumps(header))
    pool = load_pool(run)
    kept = [t for t in pool if t.judge is not None and (t.judge.score or 0) >= 4]
    target = tmp_path / "data.jsonl"
    _export(run, target, "jsonl", "--min-score", "4")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows == [
        {"instruction": t.instruction, "input": i.input, "output": i.output}
        for t in kept
        for i in t.instances
    ]
    card = _card(target)
    assert card["counts"]["exported_tasks"] == len(kept) and card["counts"]["generated_tasks"] == n
    judge = card["judge"]
    assert judge["min_score"] == 4 and judge["judged_tasks"] == n
    assert judge["dropped_unscored"] == scores.count(None)
    assert judge["dropped_below_min_score"] == sum(s is not None and s < 4 for s in scores)
    assert judge["models"] == ["judge-model"]
    assert judge["settings"] == {"model": "judge-model"}  # where it runs is not published
    assert sum(judge["scores"].values()) == n


def test_min_score_on_a_run_without_the_judge_is_one_line(finished: Path, tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    done = run_cli("export", "--out", str(finished), "-o", str(target), "--min-score", "3")
    assert "--min-score: the run has no judge scores" in _one_line_error(done)
    assert list(tmp_path.iterdir()) == []


def test_a_config_without_what_the_card_needs_is_one_line(finished: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    header = json.loads((run / "config.json").read_text())
    del header["config"]["teacher"]
    (run / "config.json").write_text(json.dumps(header))
    target = tmp_path / "out" / "data.json"
    done = run_cli("export", "--out", str(run), "-o", str(target))
    assert "no data card can be written (pass --no-card" in _one_line_error(done)
    assert not target.exists()
    _export(run, target, "alpaca", "--no-card")
