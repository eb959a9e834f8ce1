"""Pricing, the input's upper bound and the output cap's field, as pure functions."""
from __future__ import annotations

import math
import random

import pytest

from service.gateway.canonical import (
    ImagePart,
    Message,
    Request,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolSpec,
    Usage,
)
from service.gateway.catalog import AccountInfo
from service.gateway.output_cap import OutputWatch, apply_cap, chat_cap_field
from service.gateway.pricing import highest_input_price, price_tokens, token_kinds
from service.gateway.tokens import IMAGE_BOUND, asks_for_caching, bound_request, estimate_request, estimate_text

PRICES = {"input": 3_000_000_000, "cached_input": 300_000_000, "cache_write": None, "cache_write_1h": None,
          "output": 15_000_000_000}  # nano-USD per million tokens


def account(base_url: str, **compat) -> AccountInfo:
    return AccountInfo("acct_1", "a", "openai", base_url, "", "chat", (), {}, 1, True, {}, compat)


def test_every_kind_of_token_is_priced_once_and_rounded_up_once():
    usage = Usage(input_tokens=4540, cached_tokens=3000, cache_write_tokens=1500, cache_write_1h_tokens=1000,
                  output_tokens=71)
    assert token_kinds(usage) == (40, 3000, 500, 1000, 71)
    # 40 x 3 + 3000 x 0.30 + 500 x 3.75 + 1000 x 6 + 71 x 15 = 9,960 USD per million tokens
    assert price_tokens(PRICES, usage) == 9_960_000
    assert price_tokens(PRICES, Usage(input_tokens=1)) == 3000
    assert price_tokens({**PRICES, "input": 1}, Usage(input_tokens=1)) == 1  # a fraction of a nano-dollar: 1


def test_named_cache_write_prices_replace_the_multipliers():
    usage = Usage(input_tokens=3000, cache_write_tokens=3000, cache_write_1h_tokens=1000)
    named = {**PRICES, "cache_write": 4_000_000_000, "cache_write_1h": 7_000_000_000}
    assert price_tokens(named, usage) == 2000 * 4000 + 1000 * 7000


def test_counts_larger_than_what_holds_them_are_cut():
    usage = Usage(input_tokens=10, cached_tokens=8, cache_write_tokens=50, cache_write_1h_tokens=99, output_tokens=-5)
    assert token_kinds(usage) == (0, 8, 0, 2, 0)


def test_the_dearest_input_token_is_a_cache_write_only_where_caching_is_asked_for():
    assert highest_input_price(PRICES, writes_possible=False) == 3_000_000_000
    assert highest_input_price(PRICES, writes_possible=True) == 6_000_000_000
    assert asks_for_caching({"messages": [{"content": [{"type": "text", "cache_control": {"type": "ephemeral"}}]}]})
    assert not asks_for_caching({"messages": [{"content": "cache_control"}]})


def test_the_input_bound_is_never_below_the_bytes_nor_the_estimate():
    texts = ["a " * 5000, "\U0001F600" * 300, "预算" * 400, '{"k": [1, 2, 3]}' * 50, ""]
    for text in texts:
        request = Request(model="m", system="be brief", messages=[Message("user", [TextPart(text)])])
        bound = bound_request(request)
        assert bound >= len(text.encode()) + len(b"be brief")
        assert bound >= estimate_request(request)


def test_the_input_bound_covers_tools_images_and_calls_and_stops_at_the_context_window():
    request = Request(model="m", messages=[Message("user", [TextPart("hi"), ImagePart(url="https://x/y.png")]),
                                           Message("assistant", [ToolCallPart("c1", "weather", '{"city":"Paris"}')])],
                      tools=[ToolSpec("weather", "the weather", {"type": "object"})])
    assert bound_request(request) >= IMAGE_BOUND + 2 + len("weather") * 2 + len('{"city":"Paris"}') + 400
    assert bound_request(request, context_window=1000) == 1000


def test_the_chat_cap_field_is_max_completion_tokens_on_openais_own_api_only():
    assert chat_cap_field(account("https://api.openai.com/v1")) == "max_completion_tokens"
    assert chat_cap_field(account("http://127.0.0.1:8080/v1")) == "max_tokens"
    assert chat_cap_field(account("https://api.openai.com/v1", max_tokens_field="max_tokens")) == "max_tokens"
    body = {"max_tokens": 5, "max_completion_tokens": 7}
    apply_cap(body, "chat", account("http://llama:8080/v1"), 16)
    assert body == {"max_tokens": 16}
    body = {}
    apply_cap(body, "responses", account("http://x/v1"), 16)
    assert body == {"max_output_tokens": 16}


def test_the_watch_never_cuts_an_upstream_that_honours_the_cap():
    watch = OutputWatch(3)
    pieces = [StreamEvent("text", text="a"), StreamEvent("usage", usage=Usage(output_tokens=3)),
              StreamEvent("text", text=""), StreamEvent("text", text="b"), StreamEvent("tool_args", text="{")]
    assert not watch.passes(pieces)
    assert watch.passes([StreamEvent("reasoning", text="c")])
    assert [e.type for e in watch.ending()] == ["usage", "finish"] and watch.stopped


@pytest.mark.parametrize("seed", range(50))
def test_the_local_estimate_counts_wide_characters_as_one_token_each(seed):
    """estimate_text counts in C what this counts a character at a time: past U+2E80 a token each, the rest
    four characters a token."""
    rng = random.Random(seed)
    alphabet = ["a", " ", "é", "\u2e80", "\u2e81", "世", "界", "😀", "\U0010ffff", "\ud800", "\n", "ü", "한"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 300)))
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    assert estimate_text(text) == (max(1, math.ceil((len(text) - wide) / 4) + wide) if text else 0)


def test_nano_dollars_print_as_the_decimal_they_are():
    """money.usd formats with integers; it prints what Decimal(nano).scaleb(-9) does, sign and nine places."""
    from decimal import Decimal

    from service.money import usd

    rng = random.Random(9)
    values = [0, 1, -1, 999_999_999, 10 ** 9, -10 ** 9, 2 ** 63 - 1, -(2 ** 63)]
    values += [rng.randrange(-10 ** 19, 10 ** 19) for _ in range(5000)] + [rng.randrange(-10 ** 4, 10 ** 4)
                                                                        for _ in range(1000)]
    for value in values:
        assert usd(value) == f"{Decimal(value).scaleb(-9):.9f}", value
    assert usd(None) is None and usd(1_154_232_800) == "1.154232800"
