"""What tokens cost: a model's prices, and the exact price of a call's usage in nano-dollars.

Kept pure (no storage): the settlement charges `price_tokens`, and `onekeyllm
audit` recomputes each request-log row with it from the prices stored in the row.
"""
from __future__ import annotations

import functools
import json

from .canonical import Usage
from .catalog import ModelInfo

PRICE_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")  # nano-USD per million tokens
# Anthropic's multipliers of the input price, for a model that names no cache-write price (in quarters)
CACHE_WRITE_QUARTERS = 5  # 1.25x: 5-minute writes
CACHE_WRITE_1H_QUARTERS = 8  # 2x: 1-hour writes


def prices_of(model: ModelInfo) -> dict:
    """The model's prices by PRICE_FIELDS name; None where the model names none (the default applies)."""
    return {"input": model.input_nano_per_mtok, "cached_input": model.cached_input_nano_per_mtok,
            "cache_write": model.cache_write_nano_per_mtok, "cache_write_1h": model.cache_write_1h_nano_per_mtok,
            "output": model.output_nano_per_mtok}


def prices_json(prices: dict) -> str:
    """The prices as the request-log row keeps them."""
    return _prices_json(tuple(prices.items()))


@functools.lru_cache(maxsize=1024)  # a call's model has the prices of many calls before it
def _prices_json(items: tuple) -> str:
    return json.dumps(dict(items), separators=(",", ":"), sort_keys=True)


def _quarter_prices(prices: dict) -> tuple:
    """(input, cached input, 5-minute write, 1-hour write, output), each 4x its nano-USD per million."""
    base = int(prices.get("input") or 0)

    def named(name: str, default_quarters: int) -> int:
        value = prices.get(name)
        return base * default_quarters if value is None else int(value) * 4

    return (base * 4, named("cached_input", 4), named("cache_write", CACHE_WRITE_QUARTERS),
            named("cache_write_1h", CACHE_WRITE_1H_QUARTERS), int(prices.get("output") or 0) * 4)


def token_kinds(usage: Usage) -> tuple:
    """(plain input, cached input, 5-minute writes, 1-hour writes, output): disjoint counts, each ≥ 0.

    Cached and written tokens are part of `input_tokens`; a figure larger than what contains it is cut to it.
    """
    total = max(0, int(usage.input_tokens))
    cached = min(max(0, int(usage.cached_tokens)), total)
    writes = min(max(0, int(usage.cache_write_tokens)), total - cached)
    hour = min(max(0, int(usage.cache_write_1h_tokens)), writes)
    return total - cached - writes, cached, writes - hour, hour, max(0, int(usage.output_tokens))


def price_tokens(prices: dict, usage: Usage) -> int:
    """The exact cost of `usage` at `prices` in nano-dollars, rounded up once (output includes reasoning)."""
    quarters = sum(count * price for count, price in zip(token_kinds(usage), _quarter_prices(prices)))
    return -(-quarters // 4_000_000)


def highest_input_price(prices: dict, writes_possible: bool) -> int:
    """The most one input token can cost (nano-USD per million, rounded up): a cache write, where possible."""
    quarters = _quarter_prices(prices)
    top = max(quarters[:4]) if writes_possible else max(quarters[0], quarters[1])
    return -(-top // 4)

