"""Known prices of common teacher models; costs.py prices a run with them."""

from __future__ import annotations

# The Batch API bills half the synchronous price (OpenAI pricing page, "Batch API").
BATCH_PRICE_FACTOR = 0.5

# USD per million (prompt, completion) tokens, from OpenAI's published price list
# (standard tier, as of 2025). Users override with --price-in / --price-out; local and
# self-hosted models have no entry.
KNOWN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-3.5-turbo-instruct": (1.50, 2.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "davinci-002": (2.00, 2.00),
    "babbage-002": (0.40, 0.40),
}


def price_for(model: str) -> tuple[float, float] | None:
    """Return (input, output) USD per million tokens, matching dated variants by prefix."""
    if model in KNOWN_PRICES:
        return KNOWN_PRICES[model]
    # "gpt-4o-mini-2024-07-18" is priced as "gpt-4o-mini": take the longest matching prefix.
    matches = [name for name in KNOWN_PRICES if model.startswith(name + "-")]
    return KNOWN_PRICES[max(matches, key=len)] if matches else None
