"""Request validation: the fields every gateway route reads are typed and bounded once, before a codec parses
them; bad input is a 400 in the route's envelope naming the field, with nothing reserved and nothing sent
upstream. Hostile values (huge integers, non-finite numbers, lone surrogates, wrong types at every level,
deep nesting) are fuzzed into valid bodies of the three routes and count_tokens, on every upstream kind."""
from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import drop_database, start_server
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROUTES = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages",
          "count_tokens": "/v1/messages/count_tokens"}
TOKEN_FIELDS = [("chat", "max_tokens"), ("chat", "max_completion_tokens"), ("responses", "max_output_tokens"),
                ("messages", "max_tokens")]
EXPENSIVE = "val-opus"  # $75 per million output tokens, on the fake Anthropic upstream
UPSTREAM_MODELS = {"val-opus": ("anthropic", {}), "val-gpt": ("openai", {"api": "chat"}),
                   "val-resp": ("openai", {"api": "responses"})}
IMAGE = "data:image/png;base64,iVBORw0KGgo="
GOOD = {
    "chat": {"model": "echo-1", "max_tokens": 16, "temperature": 0.5, "stream": False, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image_url", "image_url": {"url": IMAGE}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"c\":1}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]},
    "responses": {"model": "echo-1", "max_output_tokens": 16, "top_p": 1, "instructions": "be brief", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "weather?"},
                                     {"type": "input_image", "image_url": IMAGE}]},
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}}], "store": False},
    "messages": {"model": "echo-1", "max_tokens": 16, "system": [{"type": "text", "text": "be brief"}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "sunny"}]}]}],
        "tools": [{"name": "weather", "input_schema": {"type": "object"}}]},
}
GOOD["count_tokens"] = {k: v for k, v in GOOD["messages"].items() if k != "max_tokens"}


def deep(levels: int, dicts: bool = False):
    value: object = 1
    for _ in range(levels):
        value = {"a": value} if dicts else [value]
    return value


NAN, INF = float("nan"), float("inf")
HOSTILE = [10**29, -(10**29), 2**63, 2**31, 10**15, 0, -1, 1e308, -1e308, 0.5, NAN, INF, -INF, "\ud800", "\udfff",
           "\\\udc00", "\ud83d\ude00\ude00", "\ud83d\ud83d\ude00", {"\ud800": "key"}, "\x00",
           "", "x" * 20_000, None, True, False, [], {}, [[]], {"type": 5}, {"url": 5}, deep(300), deep(900),
           deep(800, dicts=True), [None],
           [{"type": "text", "text": "\ud800"}], {"id": 5, "type": "message", "content": 5}]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=6)
VALUES = st.one_of(st.sampled_from(HOSTILE), JSON_VALUES)  # the known troublemakers, and any JSON at all


def raw(body: dict) -> bytes:
    """The body as a client may send it: NaN and Infinity as JavaScript writes them, surrogates escaped."""
    return json.dumps(body, allow_nan=True).encode()


def post(gateway, route: str, key: str, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", "x-api-key": key,
               "anthropic-version": "2023-06-01"}
    return requests.post(gateway.url + ROUTES[route], data=body, headers=headers, timeout=30)


def assert_bad_request(answer: requests.Response, route: str, param: str | None = None) -> None:
    assert answer.status_code == 400, (answer.status_code, answer.text[:500])
    body = answer.json()
    if route in ("messages", "count_tokens"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["error"]["type"] == "invalid_request_error", body
        if param is not None:
            assert body["error"]["param"] == param, body


def assert_nothing_spent(gateway, key: str) -> None:
    usage = requests.get(gateway.v1 + "/usage", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert usage["budget"]["used_usd"] == "0.000000000", usage
    rows = requests.get(gateway.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert rows.json()["data"] == [], rows.text  # nothing reached an upstream


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A gateway of this module's own: its log must show no traceback after the fuzzing."""
    server = start_server(tmp_path_factory.mktemp("validation"), name="validation")
    yield server
    server.stop()
    drop_database(server.database_url)
    assert "Traceback" not in server.log_text(), server.log_text()[-5000:]


@pytest.fixture(scope="module")
def served(gateway, upstream) -> list[str]:
    """echo-1 and one model per upstream kind of the fake upstream (the expensive one on Anthropic)."""
    for model, (provider, extra) in UPSTREAM_MODELS.items():
        gateway.create_model(model, input_usd_per_mtok="15", output_usd_per_mtok="75", max_output_tokens=4096)
        gateway.create_account(provider=provider, base_url=upstream.base_url(provider, f"validation-{model}"),
                               api_key=f"sk-upstream-validation-{model}", models=[model], **extra)
    return ["echo-1", *UPSTREAM_MODELS]


@pytest.fixture()
def fresh_key(gateway) -> str:
    return gateway.create_key(budget="1000", name="validation")["key"]


@pytest.mark.parametrize("route,field", TOKEN_FIELDS)
@pytest.mark.parametrize("model,value", [("echo-1", 10**29), (EXPENSIVE, 10**15), (EXPENSIVE, 10**29)])
def test_huge_output_limits_are_a_400_naming_the_field(gateway, served, fresh_key, route, field, model, value):
    body = {**GOOD[route], "model": model, field: value}
    assert_bad_request(post(gateway, route, fresh_key, raw(body)), route, field)
    assert_nothing_spent(gateway, fresh_key)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("model", ["echo-1", EXPENSIVE, "val-gpt"])
def test_a_lone_surrogate_in_text_is_a_400(gateway, served, fresh_key, route, model):
    body = copy.deepcopy(GOOD[route])
    body["model"] = model
    if route == "chat":
        body["messages"][1]["content"][0]["text"] = "hi \ud800"
    elif route == "responses":
        body["input"][0]["content"][0]["text"] = "hi \ud800"
    else:
        body["messages"][0]["content"][0]["text"] = "hi \ud800"
    answer = post(gateway, route, fresh_key, raw(body))
    assert_bad_request(answer, route)
    assert "surrogate" in answer.text
    assert_nothing_spent(gateway, fresh_key)


def test_a_number_for_an_image_url_to_an_anthropic_model_is_a_400(gateway, served, fresh_key):
    body = copy.deepcopy(GOOD["responses"])
    body["model"] = EXPENSIVE
    body["input"][0]["content"][1]["image_url"] = 5
    assert_bad_request(post(gateway, "responses", fresh_key, raw(body)), "responses",
                       "input[0].content[1].image_url")
    assert_nothing_spent(gateway, fresh_key)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("text", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_anywhere_are_a_400(gateway, served, fresh_key, route, text):
    good = raw(GOOD[route])[:-1]
    for extra in (b', "temperature": ' + text, b', "metadata": {"x": [' + text + b"]}"):
        answer = post(gateway, route, fresh_key, good + extra + b"}")
        assert_bad_request(answer, route)
    assert_nothing_spent(gateway, fresh_key)


class RetryAfterUpstream(BaseHTTPRequestHandler):
    """An upstream that is always rate limited, with the `retry-after` the test chose (`/<value>/v1/…`)."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": "slow down", "type": "requests"}}).encode()
        self.send_response(429)
        self.send_header("retry-after", self.path.split("/")[1])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("value", ["nan", "1e999", "-inf", "99999999999999999999"])
def test_an_upstream_429_with_an_insane_retry_after_is_a_429(gateway, fresh_key, value):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RetryAfterUpstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        model = f"val-retry-{value.replace('-', 'm')}"
        gateway.create_model(model)
        gateway.create_account(provider="openai", base_url=f"http://127.0.0.1:{server.server_port}/{value}/v1",
                               api_key="sk-upstream-retry-after", models=[model])
        answer = post(gateway, "chat", fresh_key, raw({**GOOD["chat"], "model": model}))
        assert answer.status_code == 429, answer.text
        assert 1 <= int(answer.headers["retry-after"]) <= 3600
    finally:
        server.shutdown()


def mutations(body: dict):
    """Every place of `body` a value can go: (container, key) pairs, existing keys and one new key per object."""
    places = []

    def walk(node):
        if isinstance(node, dict):
            places.append((node, "fuzzed_field"))
            for name, value in node.items():
                places.append((node, name))
                walk(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                places.append((node, i))
                walk(value)
    walk(body)
    return places


@pytest.mark.parametrize("route", ROUTES)
def test_hostile_values_anywhere_in_a_valid_body_never_answer_5xx(gateway, served, route):
    key = gateway.create_key(budget="1000", name=f"fuzz-{route}")["key"]
    seen: set = set()

    @settings(max_examples=150, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(data=st.data(), model=st.sampled_from(served), stream=st.booleans())
    def exercise(data, model, stream):
        body = copy.deepcopy(GOOD[route])
        body["model"] = model
        if route != "count_tokens":
            body["stream"] = stream
        for _ in range(data.draw(st.integers(1, 3))):
            node, name = data.draw(st.sampled_from(mutations(body)))
            node[name] = copy.deepcopy(data.draw(VALUES))
        answer = post(gateway, route, key, raw(body))
        seen.add(answer.status_code)
        assert answer.status_code < 500, (answer.status_code, answer.text[:500], raw(body)[:2000])
        if answer.status_code != 200:
            assert answer.headers["Content-Type"].startswith("application/json"), answer.headers
            envelope = answer.json()
            assert ("type" in envelope and "error" in envelope) if route in ("messages", "count_tokens") \
                else "message" in envelope["error"], envelope
        else:
            assert answer.content is not None  # a stream is read to its end
    exercise()
    assert 400 in seen and 200 in seen, seen  # the fuzz reached both the refusals and the upstreams
    assert requests.get(gateway.v1 + "/ping", timeout=10).status_code == 200
    assert "Traceback" not in gateway.log_text(), gateway.log_text()[-5000:]


@pytest.mark.parametrize("item", [b'{"type": "message", "role": "user", "content": "hi", "x": NaN}',
                                  b'{"type": "message", "role": "user", "content": "hi \\ud800"}'])
def test_conversation_items_sent_upstream_later_are_read_as_strictly(gateway, fresh_key, item):
    headers = {"Authorization": f"Bearer {fresh_key}", "Content-Type": "application/json"}
    for path, body in (("/conversations", b'{"items": [' + item + b"]}"), ("/admin/keys", None)):
        if body is None:  # any JSON route: an admin body too
            body, headers = b'{"name": "x", "budget_usd": NaN}', {**headers,
                                                                    "Authorization": f"Bearer {gateway.admin_token}"}
        answer = requests.post(gateway.v1 + path, data=body, headers=headers, timeout=10)
        assert_bad_request(answer, "conversations")
