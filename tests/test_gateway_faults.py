"""Upstream faults: failover and cooldown, error statuses in each route's envelope, timeouts, no leaked secrets."""
from __future__ import annotations

import json
import time
import uuid

import anthropic
import openai
import pytest
import requests
from conftest import start_server

UPSTREAM_SECRET = "sk-upstream-fault-" + uuid.uuid4().hex
PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}
PROVIDERS = {"chat": ("openai", {"api": "chat"}), "responses": ("openai", {"api": "responses"}),
             "anthropic": ("anthropic", {})}
ERROR_ANSWERS: list = []  # every error body this module saw, checked for secrets at the end


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.create_key(budget="10", name="faults")["key"]


def serve(gateway, upstream, kind: str, scenarios: list, weights: list | None = None) -> tuple:
    """A fresh public model served by one account per scenario (all of one upstream kind); (model, accounts)."""
    model = f"ft-{kind}-{uuid.uuid4().hex[:6]}"
    gateway.create_model(model, max_output_tokens=256)
    provider, extra = PROVIDERS[kind]
    accounts = [gateway.create_account(provider=provider, base_url=upstream.base_url(provider, scenario),
                                       api_key=UPSTREAM_SECRET, models=[model], weight=weight, **extra)
                for scenario, weight in zip(scenarios, weights or [1] * len(scenarios), strict=True)]
    return model, accounts


def body_for(inbound: str, model: str, stream: bool = False) -> dict:
    if inbound == "responses":
        return {"model": model, "input": "Hello", "max_output_tokens": 50, "stream": stream}
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 50, "stream": stream}


def post(url: str, key: str, inbound: str, body: dict) -> requests.Response:
    answer = requests.post(url + "/v1" + PATHS[inbound], json=body, headers={"Authorization": f"Bearer {key}"},
                           timeout=30)
    if answer.status_code >= 400:
        ERROR_ANSWERS.append(answer.text)
    return answer


def error_of(inbound: str, answer: requests.Response) -> dict:
    """The error object of an answer, checked to be in the route family's envelope."""
    body = answer.json()
    if inbound == "messages":
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}
        return body["error"]
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    return body["error"]


# ---------------------------------------------------------------- failover
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("inbound,kind", [("chat", "chat"), ("messages", "anthropic"), ("responses", "anthropic")])
def test_failover_from_a_failing_account_to_a_healthy_one(inbound, kind, stream, gateway, upstream, key):
    model, (bad, good) = serve(gateway, upstream, kind, ["http500", "ok"], weights=[1000, 1])
    tried_bad = upstream.count("http500")
    for _ in range(3):
        answer = post(gateway.url, key, inbound, body_for(inbound, model, stream))
        assert answer.status_code == 200, answer.text
        assert "Hello" in answer.text
    assert upstream.count("http500") > tried_bad, "the heavier, failing account was tried first"
    cooled = gateway.admin("GET", f"/accounts/{bad['id']}").json()
    assert cooled["cooldown_until"] > time.time()
    assert gateway.admin("GET", f"/accounts/{good['id']}").json()["cooldown_until"] in (None, 0, 0.0)


@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_an_upstream_that_hangs_up_fails_over(inbound, gateway, upstream, key):
    model, _ = serve(gateway, upstream, "anthropic", ["hangup", "ok"], weights=[1000, 1])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_no_account_left_is_503(inbound, gateway, upstream, key):
    model, _ = serve(gateway, upstream, "chat", ["hangup", "http503"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 503
    assert error_of(inbound, answer)["message"]


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_every_account_rate_limited_is_429_with_retry_after(inbound, gateway, upstream, key):
    model, _ = serve(gateway, upstream, "anthropic" if inbound == "messages" else "chat", ["http429", "http429"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 429
    assert float(answer.headers["retry-after"]) >= 1
    error = error_of(inbound, answer)
    assert error["type"] in ("rate_limit_error", "requests", "rate_limit_exceeded")


def test_the_sdk_sees_a_rate_limit_error(gateway, upstream, key):
    model, _ = serve(gateway, upstream, "chat", ["http429"])
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


# ---------------------------------------------------------------- upstream errors passed on
@pytest.mark.parametrize("kind", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_an_upstream_400_is_passed_on_with_its_message(inbound, kind, gateway, upstream, key):
    model, (account,) = serve(gateway, upstream, kind, ["http400"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 400
    error = error_of(inbound, answer)
    assert "fake upstream rejected the request" in error["message"]
    assert error["type"] == "invalid_request_error"
    state = gateway.admin("GET", f"/accounts/{account['id']}").json()
    assert not state["cooldown_until"] or state["cooldown_until"] < time.time(), "a client error cools nothing"


@pytest.mark.parametrize("kind", ["chat", "anthropic"])
@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_an_upstream_refusing_our_credential_is_a_502(inbound, kind, gateway, upstream, key):
    model, _ = serve(gateway, upstream, kind, ["http401"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 502, "the client's own key is fine: the gateway's account is not"
    error = error_of(inbound, answer)
    assert error["type"] in ("upstream_error", "api_error"), "not an authentication_error about the client's key"


@pytest.mark.parametrize("kind", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_garbage_from_upstream_is_a_502(inbound, kind, gateway, upstream, key):
    model, _ = serve(gateway, upstream, kind, ["garbage"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model))
    assert answer.status_code == 502
    assert error_of(inbound, answer)["message"].startswith("Upstream error")


@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_a_garbage_stream_ends_with_an_error_event(inbound, gateway, upstream, key):
    model, _ = serve(gateway, upstream, "anthropic", ["garbage"])
    answer = post(gateway.url, key, inbound, body_for(inbound, model, stream=True))
    assert answer.status_code == 200
    assert "not json" not in answer.text
    last = [line for line in answer.text.splitlines() if line.startswith("data:")][-1]
    assert json.loads(last[5:])["error"]["message"]


# ---------------------------------------------------------------- the client's mistakes
@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_an_unknown_model_is_400(inbound, gateway, key, upstream):
    before = upstream.count()
    answer = post(gateway.url, key, inbound, body_for(inbound, "no-such-model"))
    assert answer.status_code == 400
    assert "no-such-model" in error_of(inbound, answer)["message"]
    assert upstream.count() == before


def test_the_sdks_see_an_unknown_model_as_bad_request(gateway, key):
    with pytest.raises(openai.BadRequestError):
        openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0).responses.create(model="nope", input="x")
    with pytest.raises(anthropic.BadRequestError):
        anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0).messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])


# ---------------------------------------------------------------- timeouts (a server with a 1 s upstream timeout)
@pytest.fixture(scope="module")
def impatient(tmp_path_factory, upstream):
    server = start_server(tmp_path_factory.mktemp("impatient"), name="impatient",
                          extra_env={"ONEKEYLLM_UPSTREAM_TIMEOUT": "1", "ONEKEYLLM_KEEPALIVE_SECONDS": "0.1"})
    key = server.create_key(budget="10")["key"]
    yield server, key
    server.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("inbound", ["chat", "messages"])
def test_an_upstream_slower_than_the_timeout_is_504(inbound, stream, impatient, upstream):
    server, key = impatient
    model, _ = serve(server, upstream, "chat", ["slow-3"])
    answer = post(server.url, key, inbound, body_for(inbound, model, stream))
    assert answer.status_code in (503, 504)
    assert error_of(inbound, answer)["message"]


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_an_upstream_stalling_mid_stream_ends_with_an_error_event(inbound, impatient, upstream):
    server, key = impatient
    model, _ = serve(server, upstream, "anthropic", ["stall-3"])
    answer = post(server.url, key, inbound, body_for(inbound, model, stream=True))
    assert answer.status_code == 200
    tail = answer.text.strip().splitlines()
    if inbound == "chat":
        assert json.loads(tail[-1].removeprefix("data: "))["error"]["message"]
    elif inbound == "responses":
        assert tail[-2] == "event: response.failed"
    else:
        assert tail[-2] == "event: error"


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_a_quiet_upstream_gets_keep_alive_comments(inbound, impatient, upstream):
    """A pause shorter than the upstream timeout but longer than the keep-alive interval."""
    server, key = impatient
    model, _ = serve(server, upstream, "anthropic", ["stall-0.5"])
    answer = post(server.url, key, inbound, body_for(inbound, model, stream=True))
    assert answer.status_code == 200
    assert ": keep-alive" in answer.text.splitlines()
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)
    if inbound == "chat":
        with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "Hello"}]) as events:
            assert "Hello" in events.get_final_completion().choices[0].message.content
    elif inbound == "responses":
        with client.responses.stream(model=model, input="Hello") as events:
            assert "Hello" in events.get_final_response().output_text
    else:
        ant = anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)
        with ant.messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": "Hello"}]) as events:
            assert "Hello" in events.get_final_message().content[0].text


@pytest.mark.parametrize("inbound", ["chat", "responses", "messages"])
def test_the_wait_for_a_streams_first_event_is_bridged_and_bounded_by_the_read_timeout(inbound, impatient, upstream):
    """The upstream's headers, then silence before its first event: keep-alive comments meanwhile (the keep-alive
    interval is 0.1 s) and the answer once it comes; a silence past the read timeout (1 s) ends the stream with
    the format's error event, however many keep-alives bridged it."""
    server, key = impatient
    for scenario in ("wait-0.5", "gzip-wait-0.5"):  # gzip: an upstream that compresses though told not to
        model, _ = serve(server, upstream, "anthropic", [scenario])
        answer = post(server.url, key, inbound, body_for(inbound, model, stream=True))
        assert answer.status_code == 200
        lines = answer.text.splitlines()
        assert lines[0] == ": keep-alive" and lines.count(": keep-alive") >= 2, (scenario, lines[:5])
        assert "Hello" in answer.text
        assert {"chat": "data: [DONE]", "responses": "event: response.completed",
                "messages": "event: message_stop"}[inbound] in lines, (scenario, lines[-5:])
        assert "event: error" not in lines and "event: response.failed" not in lines
    model, _ = serve(server, upstream, "anthropic", ["wait-3"])
    started = time.monotonic()
    answer = post(server.url, key, inbound, body_for(inbound, model, stream=True))
    assert answer.status_code == 200 and time.monotonic() - started < 2.5
    lines = answer.text.strip().splitlines()
    assert lines[0] == ": keep-alive" and "Hello" not in answer.text
    if inbound == "chat":
        assert "read timeout" in json.loads(lines[-1].removeprefix("data: "))["error"]["message"]
    elif inbound == "responses":
        assert lines[-2] == "event: response.failed"
    else:
        assert lines[-2] == "event: error"


# ---------------------------------------------------------------- secrets
def test_the_upstream_sees_the_accounts_credential_not_the_clients_key(gateway, upstream, key):
    model, _ = serve(gateway, upstream, "anthropic", ["secret-check"])
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    headers = upstream.last("/v1/messages", scenario="secret-check").headers
    assert headers["x-api-key"] == UPSTREAM_SECRET
    assert key not in json.dumps(headers)


def test_no_credential_or_key_appears_in_answers_or_the_log(gateway, impatient, key):
    listed = gateway.admin("GET", "/accounts", params={"limit": 100}).text
    assert UPSTREAM_SECRET not in listed
    assert ERROR_ANSWERS, "the tests above collected error answers"
    for text in ERROR_ANSWERS:
        assert UPSTREAM_SECRET not in text and key not in text
        assert "Traceback" not in text
    for server in (gateway, impatient[0]):
        log = server.log_text()
        assert UPSTREAM_SECRET not in log
        assert key not in log and impatient[1] not in log
        assert server.admin_token not in log
