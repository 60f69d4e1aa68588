"""Spend limits of a run (--max-cost, --max-tokens) and what reaching a target will cost.

What a run has spent is the sum over its logged teacher responses (state.usage), across
every session: a response replayed from the log on resume is not paid, nor counted, again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from selfinstruct.config import RunConfig
from selfinstruct.errors import BudgetSpent, ConfigError
from selfinstruct.pricing import price_for
from selfinstruct.store import StageUsage


def prices(config: RunConfig) -> tuple[float, float] | None:
    """Return (prompt, completion) USD per million tokens: the config's, else the known one."""
    known = price_for(config.teacher.model)
    p_in = config.budget.price_in if config.budget.price_in is not None else None
    p_out = config.budget.price_out if config.budget.price_out is not None else None
    if p_in is None and known is not None:
        p_in = known[0]
    if p_out is None and known is not None:
        p_out = known[1]
    return (p_in, p_out) if p_in is not None and p_out is not None else None


def cost(prompt_tokens: int, completion_tokens: int, price: tuple[float, float]) -> float:
    """Return the USD cost of token counts at (prompt, completion) USD per million."""
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1e6


@dataclass(frozen=True)
class Budget:
    """A run's spend limits; `check` raises BudgetSpent once one is reached."""

    max_tokens: int | None
    max_cost: float | None
    price: tuple[float, float] | None

    @classmethod
    def from_config(cls, config: RunConfig) -> Budget | None:
        """Return the configured budget, or None when there is no limit."""
        b = config.budget
        price = prices(config)
        if b.max_cost is not None and price is None:
            raise ConfigError(
                f"--max-cost needs the model's price: {config.teacher.model!r} has no known "
                "price; pass --price-in and --price-out (USD per million tokens)"
            )
        if b.max_tokens is None and b.max_cost is None:
            return None
        return cls(b.max_tokens, b.max_cost, price)

    def spent(self, usage: Mapping[str, StageUsage]) -> tuple[int, float | None]:
        """Return (tokens, USD or None without a price) spent so far."""
        prompt = sum(u.prompt_tokens for u in usage.values())
        completion = sum(u.completion_tokens for u in usage.values())
        return prompt + completion, (
            cost(prompt, completion, self.price) if self.price is not None else None
        )

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
