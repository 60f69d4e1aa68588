"""What a run costs: the one place that prices tokens, for budgets, status, report and dry run.

Prices are USD per million (prompt, completion) tokens: the command's own (--price-in,
--price-out), else those the run was started with (config.json), else the known price of
its model (pricing.py). Tokens answered through the Batch API cost BATCH_PRICE_FACTOR of
that; which ones those were is known per stage from the run's batches.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from selfinstruct.pricing import BATCH_PRICE_FACTOR, price_for

if TYPE_CHECKING:
    from selfinstruct.config import RunConfig

Price = tuple[float, float]
BATCHES = "batches.jsonl"  # the Batch API backend's log in a run directory (batch_api.py)


class Tokens(Protocol):
    """Requests and tokens of one stage (store.StageUsage, report.StageTotals)."""

    @property
    def requests(self) -> int: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...


def usd(prompt_tokens: float, completion_tokens: float, price: Price, factor: float = 1.0) -> float:
    """Return the USD cost of token counts at `price`, times `factor` (Batch API: a half)."""
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6 * factor


def choose_price(model: str, *layers: tuple[float | None, float | None]) -> Price | None:
    """Return each price from the first layer that sets it, else the model's known price."""
    known = price_for(model)
    chosen: list[float | None] = []
    for part in (0, 1):
        value = next((layer[part] for layer in layers if layer[part] is not None), None)
        chosen.append(value if value is not None else (known[part] if known else None))
    p_in, p_out = chosen
    return (p_in, p_out) if p_in is not None and p_out is not None else None


def stored_prices(run: Path) -> tuple[float | None, float | None]:
    """Return the --price-in/--price-out a run was started with (None each when not given)."""
    return _prices_of(_stored_section(run, "budget"))


def config_price(config: RunConfig) -> Price | None:
    """Return a RunConfig's prices: its own, else its stored run's, else the known ones."""
    b = config.budget
    return choose_price(config.teacher.model, (b.price_in, b.price_out), stored_prices(config.out))


def _judge_prices(
    judge: Mapping[str, Any] | None, *layers: tuple[float | None, float | None]
) -> dict[str, Price | None]:
    """Return the judge stage's price when the judge has a model of its own, else nothing.

    A teacher that judges itself bills the judge stage at its own price, like any stage.
    """
    if not judge or not judge.get("enabled") or not judge.get("model"):
        return {}
    return {"judge": choose_price(str(judge["model"]), *layers)}


def _stored_section(run: Path, name: str) -> dict[str, Any]:
    """Return a section of the settings a run was started with ({} when none)."""
    try:
        section = json.loads((run / "config.json").read_bytes())["config"].get(name)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no run yet, or one status will report as damaged anyway
    return section if isinstance(section, dict) else {}


def _prices_of(section: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Return a settings section's price_in and price_out (None each when not numbers)."""
    p_in, p_out = section.get("price_in"), section.get("price_out")
    return (
        float(p_in) if isinstance(p_in, (int, float)) else None,
        float(p_out) if isinstance(p_out, (int, float)) else None,
    )


def stored_stage_prices(run: Path) -> dict[str, Price | None]:
    """Return the stages a run directory prices apart from the teacher (its judge's model)."""
    judge = _stored_section(run, "judge")
    return _judge_prices(judge, _prices_of(judge))


def config_stage_prices(config: RunConfig) -> dict[str, Price | None]:
    """Return the stages a RunConfig prices apart from the teacher: the judge's own model."""
    judge = config.judge
    if not judge.enabled:
        return {}
    stored = _prices_of(_stored_section(config.out, "judge"))
    return _judge_prices(judge.model_dump(), (judge.price_in, judge.price_out), stored)


@dataclass(frozen=True)
class StageCost:
    """What one stage cost: all its answers, and those of them that came through batches."""

    stage: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    batched_requests: int = 0
    batched_prompt_tokens: int = 0
    batched_completion_tokens: int = 0
    usd: float | None = None  # None without a price


@dataclass(frozen=True)
class CostTable:
    """A run's cost per stage, at one price."""

    price: Price | None
    stages: dict[str, StageCost]
    # Stages priced apart from `price` (the judge's own model), by stage.
    stage_prices: dict[str, Price | None] = field(default_factory=dict)

    @property
    def total_usd(self) -> float | None:
        """Return the total cost, None without a price (for the teacher or any stage)."""
        if self.price is None or any(s.usd is None for s in self.stages.values()):
            return None
        return sum(s.usd or 0.0 for s in self.stages.values())

    @property
    def tokens(self) -> int:
        """Return prompt plus completion tokens of every stage."""
        return sum(s.prompt_tokens + s.completion_tokens for s in self.stages.values())

    @property
    def batched_requests(self) -> int:
        """Return how many answers came through the Batch API."""
        return sum(s.batched_requests for s in self.stages.values())


def price_usage(
    usage: Mapping[str, Tokens],
    batched: Mapping[str, Tokens],
    price: Price | None,
    stage_prices: Mapping[str, Price | None] | None = None,
) -> CostTable:
    """Price answers per stage, the batched part of each at BATCH_PRICE_FACTOR.

    A stage in `stage_prices` (the judge's own model) is priced at its own price, the
    others at `price`. `batched` never counts for more than `usage` holds (a batch's
    answers that a run did not log, or that a report leaves out as uncommitted, are not
    charged).
    """
    own = dict(stage_prices or {})
    stages: dict[str, StageCost] = {}
    for stage, u in sorted(usage.items()):
        # The judge backend's own paid answers ("judge-probe") are at the judge's price.
        stage_price = own.get(stage.partition("-")[0], price)
        b = batched.get(stage)
        b_req = min(b.requests, u.requests) if b else 0
        b_in = min(b.prompt_tokens, u.prompt_tokens) if b else 0
        b_out = min(b.completion_tokens, u.completion_tokens) if b else 0
        dollars = None
        if stage_price is not None:
            full = usd(u.prompt_tokens - b_in, u.completion_tokens - b_out, stage_price)
            dollars = full + usd(b_in, b_out, stage_price, BATCH_PRICE_FACTOR)
        stages[stage] = StageCost(
            stage, u.requests, u.prompt_tokens, u.completion_tokens, b_req, b_in, b_out, dollars
        )
    return CostTable(price, stages, own)


@dataclass
class _Sum:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def batch_usage(run: Path) -> dict[str, _Sum]:
    """Sum, per stage, the requests answered through the Batch API and their tokens."""
    from selfinstruct.store import read_lines

    usage: dict[str, _Sum] = {}
    for _, line, _ in read_lines(run / BATCHES):
        try:
            entry = json.loads(line)
            if entry.get("event") != "end":
                continue
            for stage, (n, prompt, completion) in entry.get("usage", {}).items():
                total = usage.setdefault(str(stage), _Sum())
                total.requests += int(n)
                total.prompt_tokens += int(prompt)
                total.completion_tokens += int(completion)
        except (ValueError, TypeError, AttributeError):
            continue  # a summary: a damaged record only leaves it short
    return usage


class BatchedUsage:
    """The Batch API answers of a run directory, read again only when batches.jsonl grows."""

    def __init__(self, run: Path) -> None:
        self._path = run / BATCHES
        self._size = -1
        self._usage: dict[str, _Sum] = {}

    def get(self) -> dict[str, _Sum]:
        """Return the batched requests and tokens per stage, as batches.jsonl has them now."""
        try:
            size = self._path.stat().st_size
        except OSError:
            size = 0  # no batch ever ended in this run
        if size != self._size:
            self._usage = batch_usage(self._path.parent) if size else {}
            self._size = size
        return self._usage


def run_cost(
    run: Path,
    prices: tuple[float | None, float | None] = (None, None),
    usage: Mapping[str, Tokens] | None = None,
) -> CostTable:
    """Price a run directory's logged answers (or `usage`, e.g. its committed part).

    `prices` overrides the run's stored prices part by part; the model is the run's own.
    """
    from selfinstruct.store import read_header, read_state

    header = read_header(run)
    model = str(header["config"]["teacher"]["model"])
    price = choose_price(model, prices, stored_prices(run))
    own = stored_stage_prices(run)
    if usage is None:
        state = read_state(run)
        usage = state.usage if state is not None else {}
    return price_usage(usage, batch_usage(run), price, own)
