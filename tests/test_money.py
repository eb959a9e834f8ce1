"""Money that adds up against hostile upstreams: exact charges, true upper bounds, the gateway's own output cap,
overage past a key's limit, and a request-log row for every call that reached an upstream."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_CEILING, Decimal

import anthropic
import openai
import pytest
import requests

from service.storage.models import Account, ApiKey, RequestLog

PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}
UPSTREAMS = {"chat": ("openai", {"api": "chat"}), "responses": ("openai", {"api": "responses"}),
             "anthropic": ("anthropic", {})}
# USD per million tokens
PRICES = {"input_usd_per_mtok": "3", "output_usd_per_mtok": "15", "cached_input_usd_per_mtok": "0.30"}


def serve(gateway, upstream, kind: str, scenario: str = "ok", prices: dict | None = None, **account) -> str:
    """A fresh priced model served by one account of `kind` in `scenario`; its public name."""
    model = f"mn-{kind}-{uuid.uuid4().hex[:6]}"
    gateway.create_model(model, max_output_tokens=1000, **(PRICES if prices is None else prices))
    provider, extra = UPSTREAMS[kind]
    gateway.create_account(provider=provider, base_url=upstream.base_url(provider, scenario),
                           api_key="sk-upstream-money", models=[model], **extra, **account)
    return model


def body_for(inbound: str, model: str, max_tokens: int | None = 16, stream: bool = False,
             text: str = "Say hello") -> dict:
    limit = {} if max_tokens is None else {"max_output_tokens" if inbound == "responses" else "max_tokens": max_tokens}
    if inbound == "responses":
        return {"model": model, "input": text, "stream": stream, **limit}
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream, **limit}


def post(gateway, key: str, inbound: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(gateway.v1 + PATHS[inbound], json=body, timeout=60,
                         headers={"Authorization": f"Bearer {key}"}, **kwargs)


def settled_rows(db, key_id: str, count: int = 1, timeout: float = 15) -> list:
    """The key's request-log rows, once `count` of them are."""
    deadline = time.time() + timeout
    while True:
        with db.connection_context():
            rows = list(RequestLog.select().where(RequestLog.key_id == key_id))
        if len(rows) >= count or time.time() > deadline:
            return rows
        time.sleep(0.05)


def key_row(db, key_id: str) -> ApiKey:
    with db.connection_context():
        return ApiKey.get_by_id(key_id)


def nano(usd) -> int:
    return int(Decimal(str(usd)) * 10 ** 9)


def tokens_cost(prices: dict, plain=0, cached=0, write_5m=0, write_1h=0, output=0) -> int:
    """What the tokens cost in nano-dollars, by the SPEC's rule (written here independently of the gateway's)."""
    price = {k: Decimal(v) for k, v in prices.items() if v is not None}
    base = price["input_usd_per_mtok"]
    usd = (plain * base + cached * price.get("cached_input_usd_per_mtok", base)
           + write_5m * price.get("cache_write_usd_per_mtok", base * Decimal("1.25"))
           + write_1h * price.get("cache_write_1h_usd_per_mtok", base * 2)
           + output * price["output_usd_per_mtok"]) / 10 ** 6
    return int((usd * 10 ** 9).to_integral_value(rounding=ROUND_CEILING))


def assert_spend_is_its_rows(db, key: dict) -> None:
    row = key_row(db, key["id"])
    assert row.reserved_nano == 0
    assert row.used_nano == sum(r.cost_nano for r in settled_rows(db, key["id"]))
    if row.budget_nano is not None:
        assert row.used_nano <= row.budget_nano


# ---------------------------------------------------------------- the output cap is the gateway's
@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_a_chat_server_is_sent_max_tokens_whatever_the_inbound_format(inbound, gateway, upstream):
    """llama.cpp's server and most OpenAI-compatible servers honour `max_tokens` only."""
    model = serve(gateway, upstream, "chat", "max_tokens_only")
    key = gateway.create_key(budget="5", name="cap-field")
    body = body_for(inbound, model, max_tokens=16)
    if inbound == "chat":  # what today's openai SDK users send
        body["max_completion_tokens"] = body.pop("max_tokens")
    answer = post(gateway, key["key"], inbound, body)
    assert answer.status_code == 200, answer.text
    sent = upstream.last("/v1/chat/completions", scenario="max_tokens_only").body
    assert sent["max_tokens"] == 16 and "max_completion_tokens" not in sent


def test_a_request_without_a_cap_is_sent_the_reserved_one(gateway, upstream):
    model = serve(gateway, upstream, "chat", "max_tokens_only")
    key = gateway.create_key(budget="5", name="no-cap")
    answer = post(gateway, key["key"], "chat", body_for("chat", model, max_tokens=None))
    assert answer.status_code == 200, answer.text
    sent = upstream.last("/v1/chat/completions", scenario="max_tokens_only").body
    assert sent["max_tokens"] == 1000  # the model's max_output_tokens, which was reserved


def test_the_cap_field_follows_the_accounts_compat(gateway, upstream):
    model = serve(gateway, upstream, "chat", "compat-completion", compat={"max_tokens_field": "max_completion_tokens"})
    key = gateway.create_key(budget="5", name="compat")
    answer = post(gateway, key["key"], "chat", body_for("chat", model, max_tokens=12))
    assert answer.status_code == 200, answer.text
    sent = upstream.last("/v1/chat/completions", scenario="compat-completion").body
    assert sent["max_completion_tokens"] == 12 and "max_tokens" not in sent
    [account] = [a for a in gateway.admin("GET", "/accounts?limit=100").json()["data"] if model in a["models"]]
    assert account["compat"] == {"max_tokens_field": "max_completion_tokens"}
    patched = gateway.admin("PATCH", f"/accounts/{account['id']}", json={"compat": {"max_tokens_field": "auto"}})
    assert patched.status_code == 200 and patched.json()["compat"] == {"max_tokens_field": "auto"}
    refused = gateway.admin("PATCH", f"/accounts/{account['id']}", json={"compat": {"max_tokens_field": "limit"}})
    assert refused.status_code == 400


def _client_stream(gateway, key: str, inbound: str, model: str, cap: int) -> tuple:
    """Stream through the official SDK: (text deltas received, the length stop reason as the format says it)."""
    if inbound == "messages":
        client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
        with client.messages.stream(model=model, max_tokens=cap, messages=[{"role": "user", "content": "go"}]) as s:
            deltas = sum(1 for event in s if event.type == "content_block_delta")
            final = s.get_final_message()
        return deltas, final.stop_reason
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    if inbound == "responses":
        deltas, final = 0, None
        for event in client.responses.create(model=model, input="go", max_output_tokens=cap, stream=True):
            deltas += event.type == "response.output_text.delta"
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
        return deltas, final.incomplete_details.reason if final.incomplete_details else final.status
    deltas, reason = 0, None
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "go"}],
                                                max_tokens=cap, stream=True):
        for choice in chunk.choices:
            deltas += bool(choice.delta.content)
            reason = choice.finish_reason or reason
    return deltas, reason


@pytest.mark.parametrize("inbound,kind", [("chat", "chat"), ("responses", "responses"), ("messages", "anthropic"),
                                          ("responses", "chat"), ("messages", "chat"), ("chat", "anthropic")])
def test_an_upstream_streaming_past_the_cap_is_stopped_there(inbound, kind, gateway, upstream, db):
    model = serve(gateway, upstream, kind, "runaway")
    key = gateway.create_key(budget="5", name=f"runaway-{inbound}-{kind}")
    started = time.time()
    deltas, reason = _client_stream(gateway, key["key"], inbound, model, cap=16)
    assert deltas <= 16
    assert reason == {"chat": "length", "responses": "max_output_tokens", "messages": "max_tokens"}[inbound]
    [row] = settled_rows(db, key["id"])
    assert row.status_code == 200 and row.output_tokens == 16
    assert row.cost_nano == tokens_cost(PRICES, plain=row.input_tokens, output=16) and row.overage_nano == 0
    # the upstream was hung up on, long before its 3,000 words
    received = upstream.last(scenario="runaway")
    deadline = time.time() + 5
    while not received.aborted and time.time() < deadline:
        time.sleep(0.05)
    assert received.aborted and received.events_sent < 500
    assert time.time() - started < 5
    assert_spend_is_its_rows(db, key)


# ---------------------------------------------------------------- charge what the tokens cost
def test_long_inputs_are_charged_in_full(gateway, upstream, db):
    """An upstream counting far more input tokens than the gateway's estimate: every one is charged."""
    upstream.report_usage("long-input", {"prompt_tokens": 2000, "completion_tokens": 5, "total_tokens": 2005})
    model = serve(gateway, upstream, "chat", "long-input")
    key = gateway.create_key(budget="5", name="long-input")
    assert post(gateway, key["key"], "chat", body_for("chat", model, text="a " * 1000)).status_code == 200
    [row] = settled_rows(db, key["id"])
    assert (row.input_tokens, row.output_tokens) == (2000, 5)
    assert row.cost_nano == tokens_cost(PRICES, plain=2000, output=5)
    assert_spend_is_its_rows(db, key)


@pytest.mark.parametrize("prices", [PRICES, {**PRICES, "cache_write_usd_per_mtok": "4",
                                             "cache_write_1h_usd_per_mtok": "7"}], ids=["default", "priced"])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_cache_reads_and_writes_are_priced_apart(prices, stream, gateway, upstream, db):
    scenario = f"cache-{uuid.uuid4().hex[:6]}"
    upstream.report_usage(scenario, {"input_tokens": 40, "cache_read_input_tokens": 3000,
                                     "cache_creation_input_tokens": 1500, "output_tokens": 70,
                                     "cache_creation": {"ephemeral_5m_input_tokens": 500,
                                                        "ephemeral_1h_input_tokens": 1000}})
    model = serve(gateway, upstream, "anthropic", scenario, prices=prices)
    key = gateway.create_key(budget="5", name="cache")
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key["key"], max_retries=0)
    messages = [{"role": "user", "content": [{"type": "text", "text": "Say hello",
                                              "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]
    if stream:
        with client.messages.stream(model=model, max_tokens=100, messages=messages) as answer:
            answer.get_final_message()
    else:
        client.messages.create(model=model, max_tokens=100, messages=messages)
    [row] = settled_rows(db, key["id"])
    assert (row.input_tokens, row.cached_tokens, row.cache_write_tokens, row.cache_write_1h_tokens) == (
        4540, 3000, 1500, 1000)
    assert row.cost_nano == tokens_cost(prices, plain=40, cached=3000, write_5m=500, write_1h=1000, output=70)
    listed = requests.get(gateway.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key['key']}"},
                          timeout=10).json()["data"][0]
    assert listed["cache_write_tokens"] == 1500 and listed["overage_usd"] == "0.000000000"
    assert_spend_is_its_rows(db, key)


def test_cache_creation_without_a_breakdown_is_priced_as_five_minute_writes(gateway, upstream, db):
    upstream.report_usage("cache-plain", {"input_tokens": 10, "cache_creation_input_tokens": 800, "output_tokens": 9})
    model = serve(gateway, upstream, "anthropic", "cache-plain")
    key = gateway.create_key(budget="5", name="cache-plain")
    assert post(gateway, key["key"], "messages", body_for("messages", model)).status_code == 200
    [row] = settled_rows(db, key["id"])
    assert row.cost_nano == tokens_cost(PRICES, plain=10, write_5m=800, output=9)


@pytest.mark.parametrize("kind,usage", [
    ("chat", {"prompt_tokens": 3000, "completion_tokens": 300, "total_tokens": 3300,
              "prompt_tokens_details": {"cached_tokens": 2400}, "completion_tokens_details": {"reasoning_tokens": 250}}),
    ("responses", {"input_tokens": 3000, "output_tokens": 300, "total_tokens": 3300,
                   "input_tokens_details": {"cached_tokens": 2400}, "output_tokens_details": {"reasoning_tokens": 250}}),
])
def test_openai_cached_input_and_reasoning_are_charged(kind, usage, gateway, upstream, db):
    scenario = f"reasoning-{kind}"
    upstream.report_usage(scenario, usage)
    model = serve(gateway, upstream, kind, scenario)
    key = gateway.create_key(budget="5", name=scenario)
    inbound = "responses" if kind == "responses" else "chat"
    body = body_for(inbound, model, max_tokens=400, text="a " * 1500)  # 3,000 bytes: the bound covers 3,000 tokens
    assert post(gateway, key["key"], inbound, body).status_code == 200
    [row] = settled_rows(db, key["id"])
    assert row.cost_nano == tokens_cost(PRICES, plain=600, cached=2400, output=300)  # reasoning is output
    assert row.overage_nano == 0


def test_echo_is_priced_like_a_small_real_model(gateway, db):
    key = gateway.create_key(budget="1", name="echo")
    assert post(gateway, key["key"], "chat", body_for("chat", "echo-1", text="one two three")).status_code == 200
    [row] = settled_rows(db, key["id"])
    assert row.cost_nano > 0
    assert row.cost_nano == tokens_cost({"input_usd_per_mtok": "0.15", "cached_input_usd_per_mtok": "0.075",
                                         "output_usd_per_mtok": "0.60"},
                                        plain=row.input_tokens, output=row.output_tokens)


# ---------------------------------------------------------------- past the bound: the key's limit, then overage
@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_reporting_absurd_usage_is_charged_up_to_the_limit(stream, gateway, upstream, db):
    scenario = f"absurd-{int(stream)}"
    upstream.report_usage(scenario, {"prompt_tokens": 200_000_000, "completion_tokens": 5, "total_tokens": 0})
    model = serve(gateway, upstream, "chat", scenario)
    key = gateway.create_key(budget="0.50", name=scenario)
    before = gateway.admin("GET", "/usage").json()["overage_usd"]
    answer = post(gateway, key["key"], "chat", {**body_for("chat", model, stream=stream),
                                                "stream_options": {"include_usage": True}} if stream else
                  body_for("chat", model))
    assert answer.status_code == 200
    assert answer.content  # the whole answer, stream or not
    [row] = settled_rows(db, key["id"])
    due = tokens_cost(PRICES, plain=200_000_000, output=5)
    assert row.cost_nano == nano("0.50") and row.overage_nano == due - nano("0.50")
    assert key_row(db, key["id"]).used_nano == nano("0.50")
    assert_spend_is_its_rows(db, key)
    with db.connection_context():
        [account] = [a for a in Account.select() if model in (a.models or [])]
    assert "past the bound" in account.last_error
    capacity = requests.get(gateway.v1 + "/usage/account_capacity", timeout=10,
                            headers={"Authorization": f"Bearer {key['key']}"}).json()
    assert any("past the bound" in (a.get("last_error") or "") for a in capacity["data"])
    shown = gateway.admin("GET", "/usage").json()
    assert Decimal(shown["overage_usd"]) - Decimal(before) == Decimal(due - nano("0.50")) / 10 ** 9
    audited = subprocess.run([sys.executable, "-m", "service.cli", "audit"], capture_output=True, text=True,
                             env={**os.environ, "ONEKEYLLM_DATABASE_URL": gateway.database_url}, timeout=60)
    assert f"USD on account {account.name}: reported past its bounds" in audited.stdout, audited.stdout
    assert post(gateway, key["key"], "chat", body_for("chat", model)).status_code == 402


def test_a_non_streamed_answer_past_the_cap_is_charged_with_its_excess_recorded(gateway, upstream, db):
    model = serve(gateway, upstream, "chat", "runaway")
    key = gateway.create_key(budget="0.01", name="runaway-whole")
    answer = post(gateway, key["key"], "chat", body_for("chat", model, max_tokens=16))
    assert answer.status_code == 200
    [row] = settled_rows(db, key["id"])
    assert row.output_tokens == 3000
    due = tokens_cost(PRICES, plain=row.input_tokens, output=3000)
    assert row.cost_nano + row.overage_nano == due and row.cost_nano <= nano("0.01")
    assert_spend_is_its_rows(db, key)


# ---------------------------------------------------------------- the bound holds under concurrency
def test_thirty_concurrent_calls_on_a_key_affording_ten_never_pass_its_limit(gateway, upstream, db):
    # each call is counted 2,000 input tokens and answers up to its cap (200 words, fewer where the budget
    # lowered the cap): about ten such calls fit the budget
    upstream.report_usage("tenfold", {"prompt_tokens": 2000})
    model = serve(gateway, upstream, "chat", "tenfold")
    key = gateway.create_key(budget=str(Decimal(tokens_cost(PRICES, plain=2000, output=200) * 10) / 10 ** 9),
                             name="tenfold")

    def one(_):
        return post(gateway, key["key"], "chat", body_for("chat", model, max_tokens=200, text="x " * 1000)).status_code

    with ThreadPoolExecutor(max_workers=30) as pool:
        statuses = list(pool.map(one, range(30)))
    assert set(statuses) <= {200, 402} and 200 in statuses and 402 in statuses, statuses
    rows = settled_rows(db, key["id"], statuses.count(200))
    assert len(rows) == statuses.count(200) >= 8
    assert [(r.cost_nano, r.overage_nano) for r in rows] == [
        (tokens_cost(PRICES, plain=2000, output=r.output_tokens), 0) for r in rows]
    assert_spend_is_its_rows(db, key)


def test_the_input_bound_holds_for_multibyte_text(gateway, upstream, db):
    """A tokenizer may spend a token per byte: four-byte characters are reserved as four tokens each."""
    text = "\U0001F600" * 200
    bound = 16 + 8 + 800  # framing of the request and of its message, and the text's bytes
    upstream.report_usage("bytes", {"prompt_tokens": bound, "completion_tokens": 1, "total_tokens": 0})
    model = serve(gateway, upstream, "chat", "bytes", prices={"input_usd_per_mtok": "1000", "output_usd_per_mtok": "0"})
    short = gateway.create_key(budget="0.823", name="bytes-short")  # a tenth of a cent short of the bound
    assert post(gateway, short["key"], "chat", body_for("chat", model, text=text)).status_code == 402
    key = gateway.create_key(budget="0.825", name="bytes")
    answer = post(gateway, key["key"], "chat", body_for("chat", model, text=text))
    assert answer.status_code == 200, answer.text
    [row] = settled_rows(db, key["id"])
    assert row.cost_nano == tokens_cost({"input_usd_per_mtok": "1000", "output_usd_per_mtok": "0"}, plain=bound)
    assert row.overage_nano == 0
    assert_spend_is_its_rows(db, key)


def test_rows_keep_the_prices_they_were_charged_at(gateway, upstream, db):
    model = serve(gateway, upstream, "chat")
    key = gateway.create_key(budget="5", name="prices-kept")
    assert post(gateway, key["key"], "chat", body_for("chat", model)).status_code == 200
    gateway.create_model(model, input_usd_per_mtok="99")
    [row] = settled_rows(db, key["id"])
    assert json.loads(row.prices)["input"] == nano(3)


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_an_output_limit_past_the_models_is_capped_at_the_models(inbound, gateway, upstream, db):
    model = serve(gateway, upstream, "chat", "max_tokens_only")  # the model writes 1,000 tokens at most
    key = gateway.create_key(budget="5", name=f"past-model-{inbound}")
    answer = post(gateway, key["key"], inbound, body_for(inbound, model, max_tokens=2_000_000_000))
    assert answer.status_code == 200, answer.text
    assert upstream.last("/v1/chat/completions", scenario="max_tokens_only").body["max_tokens"] == 1000
    assert_spend_is_its_rows(db, key)
