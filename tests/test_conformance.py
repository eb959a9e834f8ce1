"""Schema conformance: every body and stream event of every gateway route validates as the official SDKs' types.

Each inbound format (Responses, Chat, Messages) × each upstream kind (chat, responses, anthropic, echo:
passthrough where they match, translated otherwise) × streamed or not × text or a tool call, read raw
with `requests` and checked by `schema_check` (validation plus every required field present).
"""
from __future__ import annotations

import json

import anthropic.types as atypes
import pytest
import requests
from openai.types import FileObject, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from schema_check import assert_conforms, sse_events

UPSTREAMS = ["chat", "responses", "anthropic", "echo"]
INBOUNDS = ["responses", "chat", "messages"]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PASSTHROUGH = {"responses": "responses", "chat": "chat", "messages": "anthropic"}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def models(gateway, upstream) -> dict:
    """A public model per upstream kind."""
    found = {"echo": "echo-1"}
    specs = [("chat", "openai", {"api": "chat"}), ("responses", "openai", {"api": "responses"}),
             ("anthropic", "anthropic", {})]
    for kind, provider, extra in specs:
        model = f"cf-{kind}"
        gateway.create_model(model, max_output_tokens=512, context_window=8192)
        for scenario in ("conform", "cut"):
            gateway.create_model(f"{model}-{scenario}", max_output_tokens=512)
            label = "cut" if scenario == "cut" else f"{scenario}-{kind}"  # the fake's fault scenarios go by name
            gateway.create_account(provider=provider, base_url=upstream.base_url(provider, label),
                                   api_key="sk-upstream-conformance", models=[f"{model}-{scenario}"], **extra)
        found[kind] = f"{model}-conform"
        found[f"{kind}-cut"] = f"{model}-cut"
    return found


@pytest.fixture(scope="module")
def key(gateway) -> str:
    return gateway.create_key(budget="100", name="conformance")["key"]


def call(gateway, key: str, inbound: str, model: str, stream: bool, tools: bool) -> requests.Response:
    """One raw request in the inbound format."""
    if inbound == "responses":
        body: dict = {"model": model, "input": "Paris weather please", "max_output_tokens": 100}
        if tools:
            body["tools"] = [{"type": "function", "name": "get_weather", "parameters": SCHEMA}]
        path, headers = "/responses", {"Authorization": f"Bearer {key}"}
    elif inbound == "chat":
        body = {"model": model, "messages": [{"role": "user", "content": "Paris weather please"}], "max_tokens": 100}
        if tools:
            body["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
        if stream:
            body["stream_options"] = {"include_usage": True}
        path, headers = "/chat/completions", {"Authorization": f"Bearer {key}"}
    else:
        body = {"model": model, "messages": [{"role": "user", "content": "Paris weather please"}], "max_tokens": 100}
        if tools:
            body["tools"] = [{"name": "get_weather", "input_schema": SCHEMA}]
        path, headers = "/messages", {"x-api-key": key, **ANTHROPIC_HEADERS}
    body["stream"] = stream
    return requests.post(gateway.v1 + path, json=body, headers=headers, stream=stream, timeout=30)


def check_stream_event(inbound: str, name, data: str) -> None:
    """One SSE event of a gateway stream, as the official type of its format."""
    if inbound == "chat":
        if data == "[DONE]":
            return
        payload = json.loads(data)
        if "error" in payload:
            assert_conforms(ErrorObject, payload["error"], "Chat stream error")
        else:
            assert_conforms(ChatCompletionChunk, payload)
        return
    payload = json.loads(data)
    assert name == payload["type"], "every event's `event:` line names its type"
    if inbound == "responses":
        assert_conforms(ResponseStreamEvent, payload, name)
    elif name == "error":
        assert_conforms(atypes.ErrorResponse, payload, name)
    elif name != "ping":
        assert_conforms(atypes.RawMessageStreamEvent, payload, name)


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_every_route_answers_in_the_official_schema(gateway, key, models, inbound, kind, stream, tools):
    if PASSTHROUGH.get(inbound) == kind:
        pytest.skip("a passthrough body is the upstream's own: test_replay checks it on recorded provider answers")
    answer = call(gateway, key, inbound, models[kind], stream, tools)
    assert answer.status_code == 200, answer.text
    if stream:
        events = sse_events(answer)
        assert events
        for name, data in events:
            check_stream_event(inbound, name, data)
            if name in ("response.created", "response.in_progress"):
                assert json.loads(data)["response"].get("usage", "absent") is not None, "no `usage: null`"
        return
    body = answer.json()
    official = {"responses": Response, "chat": ChatCompletion, "messages": atypes.Message}[inbound]
    assert_conforms(official, body)
    if inbound == "responses":
        assert body.get("user", "absent") is not None, "no `user: null` where the client sent none"
    if inbound == "responses" and tools:
        assert [t["strict"] for t in body["tools"]] == [None], "echoed function tools carry `strict`"


@pytest.mark.parametrize("kind", ["chat", "responses", "anthropic"])
def test_a_chat_stream_that_breaks_ends_with_an_error_of_the_official_shape(gateway, key, models, kind):
    answer = call(gateway, key, "chat", models[f"{kind}-cut"], True, False)
    events = sse_events(answer)
    errors = [json.loads(data)["error"] for _, data in events if data != "[DONE]" and "error" in json.loads(data)]
    assert len(errors) == 1
    assert_conforms(ErrorObject, errors[0])
    for name, data in events:
        check_stream_event("chat", name, data)


@pytest.mark.parametrize("kind", ["responses", "anthropic", "chat"])
def test_a_broken_stream_ends_with_an_error_of_the_official_shape_in_every_format(gateway, key, models, kind):
    for inbound in ("responses", "messages"):
        events = sse_events(call(gateway, key, inbound, models[f"{kind}-cut"], True, False))
        assert events[-1][0] in ("error", "response.failed")
        for name, data in events:
            check_stream_event(inbound, name, data)


def test_file_objects_are_official_file_objects(gateway, key):
    auth = {"Authorization": f"Bearer {key}"}
    created = requests.post(gateway.v1 + "/files", headers=auth, files={"file": ("a.txt", b"hello")},
                            data={"purpose": "user_data"}, timeout=30)
    assert created.status_code == 200, created.text
    assert_conforms(FileObject, created.json())
    assert_conforms(FileObject, requests.get(gateway.v1 + f"/files/{created.json()['id']}", headers=auth,
                                             timeout=30).json())
    for item in requests.get(gateway.v1 + "/files", headers=auth, timeout=30).json()["data"]:
        assert_conforms(FileObject, item)


def test_models_are_official_model_objects_in_both_shapes(gateway, models):
    listed = requests.get(gateway.v1 + "/models", headers=ANTHROPIC_HEADERS, timeout=30).json()
    assert listed["data"]
    for item in listed["data"]:
        assert_conforms(atypes.ModelInfo, item)
    one = requests.get(gateway.v1 + f"/models/{models['anthropic']}", headers=ANTHROPIC_HEADERS, timeout=30)
    assert_conforms(atypes.ModelInfo, one.json())
    for item in requests.get(gateway.v1 + "/models", timeout=30).json()["data"]:
        assert_conforms(Model, item)


def test_an_unknown_model_asked_in_the_anthropic_shape_is_an_anthropic_404(gateway):
    answer = requests.get(gateway.v1 + "/models/no-such-model", headers=ANTHROPIC_HEADERS, timeout=30)
    assert answer.status_code == 404
    assert_conforms(atypes.ErrorResponse, answer.json())
    assert answer.json()["error"]["type"] == "not_found_error"
    plain = requests.get(gateway.v1 + "/models/no-such-model", timeout=30)
    assert plain.status_code == 404 and plain.json()["error"]["type"] == "not_found_error"
    assert "type" not in plain.json()
