"""Spend limits of a run (--max-cost, --max-tokens).

What a run has spent is the sum over its logged teacher responses (state.usage), across
every session: a response replayed from the log on resume is not paid, nor counted, again.
It is priced by costs.py, as `status` and `report` price it (Batch API answers at half).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from selfinstruct.config import RunConfig
from selfinstruct.costs import (
    BatchedUsage,
    Price,
    config_price,
    config_stage_prices,
    price_usage,
)
from selfinstruct.errors import BudgetSpent, ConfigError
from selfinstruct.store import StageUsage


@dataclass(frozen=True)
class Budget:
    """A run's spend limits; `check` raises BudgetSpent once one is reached."""

    max_tokens: int | None
    max_cost: float | None
    price: Price | None
    batched: BatchedUsage | None = field(default=None, compare=False)
    # Stages with a price of their own (the judge's own model; costs.config_stage_prices).
    stage_prices: dict[str, Price | None] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: RunConfig) -> Budget | None:
        """Return the configured budget, or None when there is no limit."""
        b = config.budget
        price = config_price(config)
        if b.max_cost is not None and price is None:
            raise ConfigError(
                f"--max-cost needs the model's price: {config.teacher.model!r} has no known "
                "price; pass --price-in and --price-out (USD per million tokens)"
            )
        own = config_stage_prices(config)
        if b.max_cost is not None and own.get("judge", price) is None:
            raise ConfigError(
                f"--max-cost needs the judge model's price: {config.judge.model!r} has no known "
                "price; pass --judge-price-in and --judge-price-out (USD per million tokens)"
            )
        if b.max_tokens is None and b.max_cost is None:
            return None
        return cls(b.max_tokens, b.max_cost, price, BatchedUsage(config.out), own)

    def spent(self, usage: Mapping[str, StageUsage]) -> tuple[int, float | None]:
        """Return (tokens, USD or None without a price) spent so far."""
        batched = self.batched.get() if self.batched is not None else {}
        table = price_usage(usage, batched, self.price, self.stage_prices)
        return table.tokens, table.total_usd

    def check(self, usage: Mapping[str, StageUsage]) -> None:
        """Raise BudgetSpent when a limit is reached, so the next request is not sent."""
        tokens, dollars = self.spent(usage)
        if self.max_tokens is not None and tokens >= self.max_tokens:
            raise BudgetSpent(
                f"budget spent: {tokens:,} tokens used of --max-tokens {self.max_tokens:,}"
            )
        if self.max_cost is not None and dollars is not None and dollars >= self.max_cost:
            raise BudgetSpent(
                f"budget spent: {dollars:.2f} USD used of --max-cost {self.max_cost:.2f}"
            )
