"""Billing: the atomic budget under concurrency, 402s, and one billed request-log row per upstream call."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import openai
import pytest
import requests
from conftest import is_postgres

from service.storage.models import ApiKey, RequestLog

PRICES = {"input_usd_per_mtok": "100", "output_usd_per_mtok": "1000"}
PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}


@pytest.fixture(scope="module")
def accounts(gateway, upstream) -> dict:
    """Priced models `bl-<kind>` on one account per fake upstream kind, plus faulty ones `bl-<kind>-<scenario>`."""
    models = {}
    for kind, provider, extra, upstream_model in [("chat", "openai", {"api": "chat"}, "gpt-fake-1"),
                                                  ("responses", "openai", {"api": "responses"}, "gpt-fake-1"),
                                                  ("anthropic", "anthropic", {}, "claude-fake-1")]:
        for scenario in ("ok", "cut", "midstream_error", "stall-1", "nousage"):
            model = f"bl-{kind}" if scenario == "ok" else f"bl-{kind}-{scenario}"
            gateway.create_model(model, max_output_tokens=1000, **PRICES)
            gateway.create_account(provider=provider, base_url=upstream.base_url(provider, scenario),
                                   api_key="sk-upstream-billing", models=[model],
                                   model_map={model: upstream_model}, **extra)
            models[(kind, scenario)] = model
    return models


def body_for(inbound: str, model: str, stream: bool = False, max_tokens: int = 20, text: str = "Say hello") -> dict:
    """A small request in the inbound format (the fake upstream answers one event per word of `text`)."""
    if inbound == "responses":
        return {"model": model, "input": text, "max_output_tokens": max_tokens, "stream": stream}
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
            "stream": stream}


def post(gateway, key: str, inbound: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(gateway.v1 + PATHS[inbound], json=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}"}, **kwargs)


def key_row(db, key_id: str) -> ApiKey:
    with db.connection_context():
        return ApiKey.get_by_id(key_id)


def log_rows(db, key_id: str) -> list:
    with db.connection_context():
        return list(RequestLog.select().where(RequestLog.key_id == key_id).order_by(RequestLog.created_at))


def wait_for_rows(db, key_id: str, count: int = 1, timeout: float = 15) -> list:
    """The key's request-log rows, once `count` of them are (a stream's row is written as it ends)."""
    deadline = time.time() + timeout
    while True:
        rows = log_rows(db, key_id)
        if len(rows) >= count or time.time() > deadline:
            return rows
        time.sleep(0.1)


def assert_spend_matches_log(gateway, db, key: dict) -> None:
    """The key's recorded spend is the sum of its request-log costs, nothing is left reserved."""
    row = key_row(db, key["id"])
    assert row.reserved_nano == 0
    assert row.used_nano == sum(r.cost_nano for r in log_rows(db, key["id"]))
    shown = gateway.admin("GET", f"/keys/{key['id']}").json()
    assert Decimal(shown["used_usd"]) == Decimal(row.used_nano) / Decimal(10 ** 9)


# ---------------------------------------------------------------- the atomic budget
@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_concurrent_requests_never_spend_past_the_budget(inbound, gateway, accounts, db):
    key = gateway.create_key(budget="0.05", name=f"tight-{inbound}")
    model = accounts[("anthropic" if inbound == "messages" else "chat", "ok")]

    def one(_):
        return post(gateway, key["key"], inbound, body_for(inbound, model)).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(one, range(40)))
    assert set(statuses) <= {200, 402}, statuses
    assert 200 in statuses and 402 in statuses
    shown = gateway.admin("GET", f"/keys/{key['id']}").json()
    assert Decimal(shown["used_usd"]) <= Decimal(shown["budget_usd"]) == Decimal("0.05")
    rows = log_rows(db, key["id"])
    assert len(rows) == statuses.count(200)
    assert all(r.status_code == 200 and r.cost_nano > 0 for r in rows)
    assert_spend_matches_log(gateway, db, key)


def test_the_output_is_capped_at_what_the_budget_affords(gateway, accounts, db, upstream):
    key = gateway.create_key(budget="0.0045", name="capped")
    answer = post(gateway, key["key"], "chat", body_for("chat", accounts[("chat", "ok")], max_tokens=500))
    assert answer.status_code == 200, answer.text
    sent = upstream.last("/v1/chat/completions", scenario="ok").body
    cap = sent.get("max_completion_tokens", sent.get("max_tokens"))
    assert cap == 1  # after the input's bound (33 tokens: 0.0033 USD), 0.0045 USD buys one output token
    assert_spend_matches_log(gateway, db, key)


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_budget_exhausted_is_402_in_the_routes_envelope(inbound, gateway, accounts):
    key = gateway.create_key(budget="0", name="empty")
    answer = post(gateway, key["key"], inbound, body_for(inbound, accounts[("chat", "ok")]))
    assert answer.status_code == 402
    assert answer.headers["x-should-retry"] == "false"
    if inbound == "messages":
        assert answer.json()["type"] == "error" and answer.json()["error"]["type"] == "billing_error"
    else:
        error = answer.json()["error"]
        assert error["type"] == "insufficient_quota" and error["message"]


def test_the_sdk_does_not_retry_a_402(gateway, accounts, upstream):
    key = gateway.create_key(budget="0", name="empty-sdk")
    client = openai.OpenAI(base_url=gateway.v1, api_key=key["key"], max_retries=2)
    before = upstream.count()
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=accounts[("chat", "ok")], messages=[{"role": "user", "content": "x"}])
    assert error.value.status_code == 402
    assert upstream.count() == before


def test_an_upstream_without_usage_is_counted_locally(gateway, accounts, db):
    key = gateway.create_key(budget="1", name="nousage")
    answer = post(gateway, key["key"], "chat", body_for("chat", accounts[("chat", "nousage")], stream=True))
    assert answer.status_code == 200
    [row] = wait_for_rows(db, key["id"])
    assert row.status_code == 200 and row.input_tokens > 0 and row.output_tokens > 0 and row.cost_nano > 0
    assert_spend_matches_log(gateway, db, key)


# ---------------------------------------------------------------- streams that end badly
@pytest.mark.parametrize("inbound,kind", [("chat", "chat"), ("messages", "anthropic"), ("responses", "chat"),
                                          ("messages", "chat"), ("responses", "anthropic")])
def test_a_client_hanging_up_mid_stream_is_still_billed(inbound, kind, gateway, accounts, db):
    """The client reads the first event, which comes before the upstream pauses, and hangs up."""
    key = gateway.create_key(budget="5", name="hangup")
    # the upstream pauses after its second event, then streams a few hundred more: the gateway writes them
    # to a closed connection and notices
    body = body_for(inbound, accounts[(kind, "stall-1")], stream=True, max_tokens=1000, text="word " * 300)
    with post(gateway, key["key"], inbound, body, stream=True) as answer:
        assert answer.status_code == 200
        assert next(answer.iter_lines()).strip()
    [row] = wait_for_rows(db, key["id"])
    assert row.status_code == 499
    assert row.stream is True and row.input_tokens > 0 and row.cost_nano > 0
    assert_spend_matches_log(gateway, db, key)


def sse_events(answer: requests.Response) -> list:
    """(event name, data) pairs of a whole SSE body."""
    events, name, data = [], None, []
    for line in answer.iter_lines(decode_unicode=True):
        if not line:
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return events


def assert_ends_with_error_event(inbound: str, events: list) -> None:
    """The format's own failure event closes the stream."""
    name, data = events[-1]
    if inbound == "chat":
        if data == "[DONE]":
            name, data = events[-2]
        assert "error" in json.loads(data) and json.loads(data)["error"]["message"]
    elif inbound == "responses":
        payload = json.loads(data)
        assert name == payload["type"] == "response.failed"
        assert payload["response"]["status"] == "failed" and payload["response"]["error"]["message"]
    else:
        assert name == "error" and json.loads(data)["error"]["message"]


@pytest.mark.parametrize("scenario", ["cut", "midstream_error"])
@pytest.mark.parametrize("kind", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_an_upstream_failing_mid_stream_ends_with_an_error_event(inbound, kind, scenario, gateway, accounts, db):
    key = gateway.create_key(budget="1", name="broken")
    answer = post(gateway, key["key"], inbound, body_for(inbound, accounts[(kind, scenario)], stream=True),
                  stream=True)
    assert answer.status_code == 200
    events = sse_events(answer)
    assert_ends_with_error_event(inbound, events)
    [row] = wait_for_rows(db, key["id"])
    assert row.status_code == 502 and row.stream is True and row.error
    assert row.input_tokens > 0 and row.cost_nano > 0
    assert_spend_matches_log(gateway, db, key)


def test_sdks_raise_on_a_broken_stream(gateway, accounts):
    import anthropic

    key = gateway.create_key(budget="1", name="broken-sdk")["key"]
    oai = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.APIError):
        with oai.chat.completions.stream(model=accounts[("anthropic", "cut")],
                                         messages=[{"role": "user", "content": "hi"}]) as events:
            for _ in events:
                pass
    ant = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.APIError):
        with ant.messages.stream(model=accounts[("chat", "cut")], max_tokens=20,
                                 messages=[{"role": "user", "content": "hi"}]) as events:
            events.get_final_message()


def test_requests_settling_together_share_transactions_and_lose_nothing(gateway, upstream, db):
    # 40 requests answered at the same moment (the upstream holds each 0.3 s): on PostgreSQL their settlements
    # queue behind one another and are written in shared transactions (on SQLite only what queues while the
    # process's writer waits for another process's write lock shares its transaction: one process here, so
    # rarely); each answer still has its row and charge
    gateway.create_model("bl-together", max_output_tokens=1000, **PRICES)
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai", "slow-0.3"), api="chat",
                           api_key="sk-upstream-together", models=["bl-together"],
                           model_map={"bl-together": "gpt-fake-1"})
    key = gateway.create_key(budget="100", name="together")
    before = gateway.admin("GET", "/diagnostics").json()

    def one(i: int) -> int:
        return post(gateway, key["key"], "chat", body_for("chat", "bl-together", stream=i % 2 == 1)).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = list(pool.map(one, range(40)))
    assert statuses == [200] * 40
    after = gateway.admin("GET", "/diagnostics").json()
    settled = after["settlements"] - before["settlements"]
    transactions = after["settlement_transactions"] - before["settlement_transactions"]
    assert settled == 40
    if is_postgres():
        assert transactions < settled, (transactions, settled)  # batched
    else:
        assert 0 < transactions <= settled, (transactions, settled)
    rows = log_rows(db, key["id"])
    assert len(rows) == 40 and all(r.status_code == 200 and r.cost_nano > 0 for r in rows)
    assert_spend_matches_log(gateway, db, key)


def test_a_call_waiting_on_its_upstream_holds_no_database_connection(gateway, upstream):
    gateway.create_model("bl-waits", max_output_tokens=1000, **PRICES)
    gateway.create_account(provider="openai", base_url=upstream.base_url("openai", "slow-3"), api="chat",
                           api_key="sk-upstream-waits", models=["bl-waits"], model_map={"bl-waits": "gpt-fake-1"})
    key = gateway.create_key(budget="100", name="waits")
    idle = gateway.admin("GET", "/diagnostics").json()["db_connections_in_use"]  # this very request's own
    with ThreadPoolExecutor(max_workers=6) as pool:
        calls = [pool.submit(post, gateway, key["key"], "chat", body_for("chat", "bl-waits", stream=i % 2 == 1))
                 for i in range(6)]
        time.sleep(1.0)  # all six are waiting on the upstream (it answers after 3 s)
        during = gateway.admin("GET", "/diagnostics").json()["db_connections_in_use"]
        assert not any(call.done() for call in calls)
        assert during == idle, (during, idle)
        assert [call.result().status_code for call in calls] == [200] * 6
