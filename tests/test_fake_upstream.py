"""The fake upstream speaks the real wire formats: the official SDKs drive it directly."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx2
import openai
import pytest
from fake_upstream import FakeUpstream

TOOLS_CHAT = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}]
TOOLS_RESP = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
TOOLS_ANT = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
USER = [{"role": "user", "content": "what is up"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    """One fake for the module."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture()
def fake(server: FakeUpstream) -> FakeUpstream:
    """The shared fake, with its records cleared."""
    server.clear()
    return server


def oai(fake: FakeUpstream, scenario: str = "ok", **kw: Any) -> openai.OpenAI:
    """An OpenAI client on a scenario."""
    return openai.OpenAI(base_url=fake.base_url("openai", scenario), api_key="x", max_retries=0, **kw)


def ant(fake: FakeUpstream, scenario: str = "ok", **kw: Any) -> anthropic.Anthropic:
    """An Anthropic client on a scenario."""
    return anthropic.Anthropic(base_url=fake.base_url("anthropic", scenario), api_key="x", max_retries=0, **kw)


def raw(fake: FakeUpstream, method: str, path: str, body: Any = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib request; returns status, lower-case headers and body."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(fake.url + path, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


# ------------------------------------------------------------------------------------------- OpenAI Chat

def test_chat_create(fake: FakeUpstream) -> None:
    """A plain completion: text, usage, ids, rate-limit headers."""
    resp = oai(fake).chat.completions.with_raw_response.create(
        model="any-model", messages=[{"role": "system", "content": "be nice"}, *USER])
    done = resp.parse()
    assert done.choices[0].message.content == "Hello from fake chat: what is up"
    assert done.choices[0].finish_reason == "stop" and done.model == "any-model"
    assert done.id.startswith("chatcmpl-")
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.total_tokens) == (8, 7, 15)
    assert resp.headers["x-ratelimit-remaining-requests"] == "999"
    assert resp.headers["x-ratelimit-reset-tokens"] == "6m0s" and resp.headers["x-request-id"].startswith("req_")


def test_chat_stream_word_deltas_and_usage_chunk(fake: FakeUpstream) -> None:
    """One delta per word, then finish, then a usage chunk with no choices."""
    chunks = list(oai(fake).chat.completions.create(model="m", messages=USER, stream=True,
                                                     stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert pieces == ["Hello ", "from ", "fake ", "chat: ", "what ", "is ", "up"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 7
    assert fake.last("/chat/completions").body["stream"] is True


def test_chat_tool_call_then_result(fake: FakeUpstream) -> None:
    """A tool call to the first tool; a tool result is echoed back."""
    client = oai(fake)
    first = client.chat.completions.create(model="m", messages=USER, tools=TOOLS_CHAT)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and first.usage.completion_tokens == 10
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == \
        ("call_fake1", "get_weather", {"city": "Paris"})
    history = [*USER, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": "call_fake1", "content": "sunny"}]
    second = client.chat.completions.create(model="m", messages=history, tools=TOOLS_CHAT)
    assert second.choices[0].message.content == "Tool said: sunny"


def test_chat_stream_parallel_tools(fake: FakeUpstream) -> None:
    """The SDK's stream helper assembles two calls sent as partial-JSON pieces."""
    with oai(fake, "parallel_tools").chat.completions.stream(model="m", messages=USER, tools=TOOLS_CHAT) as stream:
        arg_pieces = sum(1 for e in stream if e.type == "tool_calls.function.arguments.delta" and e.arguments_delta)
        done = stream.get_final_completion()
    calls = done.choices[0].message.tool_calls
    assert [(c.id, json.loads(c.function.arguments)["city"]) for c in calls] == \
        [("call_fake1", "Paris"), ("call_fake2", "Rome")]
    assert arg_pieces == 6


def test_chat_max_tokens_truncates(fake: FakeUpstream) -> None:
    """A cap below the reply length cuts it with finish_reason length."""
    done = oai(fake).chat.completions.create(model="m", messages=USER, max_completion_tokens=2)
    assert (done.choices[0].message.content, done.choices[0].finish_reason) == ("Hello from", "length")


def test_chat_tool_message_without_call_is_rejected(fake: FakeUpstream) -> None:
    """Like the real API, a dangling tool message is a 400."""
    with pytest.raises(openai.BadRequestError):
        oai(fake).chat.completions.create(model="m", messages=[*USER, {"role": "tool", "tool_call_id": "nope",
                                                                       "content": "x"}])


# ------------------------------------------------------------------------------------------- OpenAI Responses

def test_responses_create(fake: FakeUpstream) -> None:
    """A string input; usage with details."""
    resp = oai(fake).responses.create(model="m", input="hi you", instructions="be brief")
    assert resp.output_text == "Hello from fake responses: hi you" and resp.status == "completed"
    assert resp.id.startswith("resp_") and resp.output[0].id.startswith("msg_")
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (7, 6, 13)
    assert resp.usage.input_tokens_details.cached_tokens == 0


def test_responses_stream_events_and_final(fake: FakeUpstream) -> None:
    """The full event sequence, numbered, assembles into the final response."""
    with oai(fake).responses.stream(model="m", input=[{"role": "user", "content": "hey"}]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == \
        ["Hello ", "from ", "fake ", "responses: ", "hey"]
    assert final.output_text == "Hello from fake responses: hey" and final.usage.output_tokens == 5


def test_responses_tool_call_stream_then_output(fake: FakeUpstream) -> None:
    """A streamed function call; function_call_output is echoed back."""
    client = oai(fake)
    with client.responses.stream(model="m", input="weather?", tools=TOOLS_RESP) as stream:
        final = stream.get_final_response()
    call = final.output[0]
    assert (call.type, call.id, call.call_id, call.name, call.arguments) == \
        ("function_call", "fc_fake1", "call_fake1", "get_weather", '{"city": "Paris"}')
    follow = client.responses.create(model="m", tools=TOOLS_RESP, input=[
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": "call_fake1", "name": "get_weather", "arguments": call.arguments},
        {"type": "function_call_output", "call_id": "call_fake1", "output": "rainy"}])
    assert follow.output_text == "Tool said: rainy"


def test_responses_max_output_tokens_incomplete(fake: FakeUpstream) -> None:
    """Truncation gives status incomplete; the stream ends with response.incomplete."""
    resp = oai(fake).responses.create(model="m", input="a b c", max_output_tokens=3)
    assert (resp.status, resp.incomplete_details.reason, resp.output_text) == \
        ("incomplete", "max_output_tokens", "Hello from fake")
    events = list(oai(fake).responses.create(model="m", input="a b c", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.usage.output_tokens == 3


# ------------------------------------------------------------------------------------------- Anthropic

def test_anthropic_create(fake: FakeUpstream) -> None:
    """Text, usage with cache fields, rate-limit headers, request-id."""
    resp = ant(fake).messages.with_raw_response.create(model="claude-x", max_tokens=100, system="be kind",
                                                       messages=USER)
    msg = resp.parse()
    assert msg.content[0].text == "Hello from fake anthropic: what is up" and msg.stop_reason == "end_turn"
    assert msg.id.startswith("msg_") and msg.model == "claude-x"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.usage.cache_read_input_tokens) == (8, 7, 0)
    assert resp.headers["anthropic-ratelimit-requests-remaining"] == "999"
    assert resp.headers["anthropic-ratelimit-tokens-reset"].endswith("Z") and resp.headers["request-id"]


def test_anthropic_stream_final_message(fake: FakeUpstream) -> None:
    """The SDK accumulates the streamed message, usage included."""
    with ant(fake).messages.stream(model="c", max_tokens=100, messages=USER) as stream:
        texts = list(stream.text_stream)
        msg = stream.get_final_message()
    assert texts == ["Hello ", "from ", "fake ", "anthropic: ", "what ", "is ", "up"]
    assert msg.content[0].text == "Hello from fake anthropic: what is up"
    assert (msg.usage.input_tokens, msg.usage.output_tokens, msg.stop_reason) == (6, 7, "end_turn")


def test_anthropic_raw_sse_has_event_lines_and_ping(fake: FakeUpstream) -> None:
    """Every data line has its event line, and a ping comes along."""
    status, headers, body = raw(fake, "POST", "/v1/messages", {"model": "c", "max_tokens": 9, "messages": USER,
                                                               "stream": True},
                                {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    blocks = [b.splitlines() for b in body.decode().strip().split("\n\n")]
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert all(len(b) == 2 and b[0].startswith("event: ") and b[1].startswith("data: ") for b in blocks)
    names = [b[0][7:] for b in blocks]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]


def test_anthropic_tool_use_stream_then_result(fake: FakeUpstream) -> None:
    """Tool input arrives as partial JSON; a tool_result is echoed back."""
    client = ant(fake)
    with client.messages.stream(model="c", max_tokens=100, messages=USER, tools=TOOLS_ANT) as stream:
        msg = stream.get_final_message()
    block = msg.content[0]
    assert (block.type, block.id, block.name, block.input, msg.stop_reason) == \
        ("tool_use", "toolu_fake1", "get_weather", {"city": "Paris"}, "tool_use")
    follow = client.messages.create(model="c", max_tokens=100, tools=TOOLS_ANT, messages=[
        *USER, {"role": "assistant", "content": [block.model_dump(exclude_none=True)]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_fake1", "content": "windy"}]}])
    assert follow.content[0].text == "Tool said: windy"


def test_anthropic_max_tokens_and_validation(fake: FakeUpstream) -> None:
    """A small max_tokens stops with max_tokens; missing max_tokens and stray tool_result are 400s."""
    msg = ant(fake).messages.create(model="c", max_tokens=1, messages=USER)
    assert (msg.content[0].text, msg.stop_reason, msg.usage.output_tokens) == ("Hello", "max_tokens", 1)
    status, _, body = raw(fake, "POST", "/v1/messages", {"model": "c", "messages": USER},
                          {"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        ant(fake).messages.create(model="c", max_tokens=5, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "?"}]}])


def test_count_tokens_and_models(fake: FakeUpstream) -> None:
    """count_tokens uses the usage formula; both models shapes parse."""
    count = ant(fake).messages.count_tokens(model="c", system="one two", messages=USER)
    assert count.input_tokens == 8
    assert [m.id for m in oai(fake).models.list()] == ["gpt-fake-1", "gpt-fake-mini"]
    models = list(ant(fake).models.list())
    assert models[0].type == "model" and models[0].id == "claude-fake-1" and models[0].created_at.year == 2025
    assert oai(fake).models.retrieve("whatever").id == "whatever"


# ------------------------------------------------------------------------------------------- auth and faults

def test_auth_is_required(fake: FakeUpstream) -> None:
    """No key: 401 in each provider's envelope; x-api-key and Bearer both pass on Anthropic routes."""
    status, _, body = raw(fake, "POST", "/v1/chat/completions", {"model": "m", "messages": USER})
    assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
    status, _, body = raw(fake, "POST", "/v1/messages", {"model": "m", "max_tokens": 5, "messages": USER},
                          {"anthropic-version": "2023-06-01"})
    assert status == 401 and json.loads(body) == {"type": "error", "error": {
        "type": "authentication_error", "message": "x-api-key header is required"}}
    for auth in ({"x-api-key": "k"}, {"authorization": "Bearer k"}):
        status, _, _ = raw(fake, "POST", "/v1/messages", {"model": "m", "max_tokens": 5, "messages": USER},
                           {"anthropic-version": "2023-06-01", **auth})
        assert status == 200


@pytest.mark.parametrize(("scenario", "oa_error", "an_error"), [
    ("http500", openai.InternalServerError, anthropic.InternalServerError),
    ("http503", openai.InternalServerError, anthropic.InternalServerError),
    ("http429", openai.RateLimitError, anthropic.RateLimitError),
    ("http400", openai.BadRequestError, anthropic.BadRequestError),
    ("http401", openai.AuthenticationError, anthropic.AuthenticationError),
])
def test_http_faults(fake: FakeUpstream, scenario: str, oa_error: type, an_error: type) -> None:
    """Status faults map to the SDKs' exception classes, with the provider envelopes."""
    with pytest.raises(oa_error) as oa_err:
        oai(fake, scenario).chat.completions.create(model="m", messages=USER)
    with pytest.raises(an_error) as an_err:
        ant(fake, scenario).messages.create(model="m", max_tokens=5, messages=USER)
    assert oa_err.value.body["type"] and an_err.value.body["error"]["type"]
    if scenario == "http429":
        assert oa_err.value.response.headers["retry-after"] == "1"
        assert an_err.value.body["error"]["type"] == "rate_limit_error"
    if scenario == "http400":
        assert oa_err.value.body["message"] == "fake upstream rejected the request"
        assert an_err.value.body["error"]["message"] == "fake upstream rejected the request"
    assert fake.count(scenario) == 2


def test_garbage(fake: FakeUpstream) -> None:
    """Non-JSON bodies and non-JSON SSE data make the SDKs raise."""
    bad = (ValueError, openai.APIResponseValidationError, anthropic.APIResponseValidationError)
    with pytest.raises(bad):
        oai(fake, "garbage").chat.completions.create(model="m", messages=USER)
    with pytest.raises(bad):
        ant(fake, "garbage").messages.create(model="m", max_tokens=5, messages=USER)
    with pytest.raises(bad):
        list(oai(fake, "garbage").responses.create(model="m", input="x", stream=True))
    with pytest.raises(bad):
        list(ant(fake, "garbage").messages.create(model="m", max_tokens=5, messages=USER, stream=True))


def test_cut(fake: FakeUpstream) -> None:
    """A truncated body is a connection error; a cut stream raises after its first events."""
    with pytest.raises(openai.APIConnectionError):
        oai(fake, "cut").chat.completions.create(model="m", messages=USER)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai(fake, "cut").chat.completions.create(model="m", messages=USER, stream=True):
            received.append(chunk)
    assert len(received) == 3
    # The anthropic SDK lets transport errors from a stream's body through unwrapped.
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        with ant(fake, "cut").messages.stream(model="m", max_tokens=5, messages=USER) as stream:
            stream.get_final_message()


def test_hangup(fake: FakeUpstream) -> None:
    """No answer at all is an APIConnectionError, and the request was still recorded."""
    with pytest.raises(openai.APIConnectionError):
        oai(fake, "hangup").responses.create(model="m", input="x")
    with pytest.raises(anthropic.APIConnectionError):
        ant(fake, "hangup").messages.create(model="m", max_tokens=5, messages=USER)
    assert fake.count("hangup") == 2


def test_nousage(fake: FakeUpstream) -> None:
    """No usage in OpenAI formats; zeros in Anthropic's."""
    assert oai(fake, "nousage").chat.completions.create(model="m", messages=USER).usage is None
    chunks = list(oai(fake, "nousage").chat.completions.create(model="m", messages=USER, stream=True,
                                                                stream_options={"include_usage": True}))
    assert all(c.choices and c.usage is None for c in chunks)
    assert oai(fake, "nousage").responses.create(model="m", input="x").usage is None
    with ant(fake, "nousage").messages.stream(model="m", max_tokens=50, messages=USER) as stream:
        usage = stream.get_final_message().usage
    assert (usage.input_tokens, usage.output_tokens) == (0, 0)


def test_midstream_error(fake: FakeUpstream) -> None:
    """Each provider's in-stream failure reaches the SDK."""
    with pytest.raises(openai.APIError, match="fake upstream stream error"):
        list(oai(fake, "midstream_error").chat.completions.create(model="m", messages=USER, stream=True))
    events = list(oai(fake, "midstream_error").responses.create(model="m", input="x", stream=True))
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_error"
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        list(ant(fake, "midstream_error").messages.create(model="m", max_tokens=5, messages=USER, stream=True))


def test_slow_and_stall(fake: FakeUpstream) -> None:
    """slow delays the answer (a short timeout fires); stall pauses a stream after its first events."""
    with pytest.raises(openai.APITimeoutError):
        oai(fake, "slow-0.5", timeout=0.1).chat.completions.create(model="m", messages=USER)
    start = time.monotonic()
    ant(fake, "slow-0.2").messages.create(model="m", max_tokens=5, messages=USER)
    assert time.monotonic() - start >= 0.2
    stamps = []
    for _ in oai(fake, "stall-0.4").chat.completions.create(model="m", messages=USER, stream=True):
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps[1] >= 0.35 and max(gaps[:1] + gaps[2:]) < 0.2


# ------------------------------------------------------------------------------------------- records and script

def test_records(fake: FakeUpstream) -> None:
    """Requests are recorded with path, scenario, headers and body; last/count/clear work."""
    oai(fake, "acct-a").chat.completions.create(model="m1", messages=USER)
    ant(fake, "acct-b").messages.create(model="m2", max_tokens=5, messages=USER)
    oai(fake).responses.create(model="m3", input="x")
    chat = fake.last("/chat/completions")
    assert (chat.method, chat.path, chat.scenario, chat.body["model"]) == ("POST", "/v1/chat/completions", "acct-a", "m1")
    assert chat.headers["authorization"] == "Bearer x" and json.loads(chat.raw) == chat.body
    msg = fake.last(scenario="acct-b")
    assert msg.path == "/v1/messages" and msg.headers["anthropic-version"]
    assert fake.last().path == "/v1/responses" and fake.last().scenario == "ok"
    assert (fake.count("acct-a"), fake.count("acct-b"), fake.count()) == (1, 1, 3)
    with pytest.raises(LookupError):
        fake.last("/nowhere")
    fake.clear()
    assert fake.requests == [] and fake.count() == 0


def test_keep_alive_reuses_connection(fake: FakeUpstream) -> None:
    """JSON and chunked SSE responses read to their end leave the connection reusable."""
    client, aclient = oai(fake), ant(fake)
    for _ in range(3):
        list(client.responses.create(model="m", input="x", stream=True))
        client.chat.completions.create(model="m", messages=USER)
        list(aclient.messages.create(model="m", max_tokens=5, messages=USER, stream=True))
    peers = [r.peer for r in fake.requests]
    assert len(peers) == 9 and len(set(peers[0::3] + peers[1::3])) == 1 and len(set(peers[2::3])) == 1


def test_runs_as_a_script() -> None:
    """`python tests/fake_upstream.py --port N` serves."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = Path(__file__).with_name("fake_upstream.py")
    proc = subprocess.Popen([sys.executable, str(script), "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and f"127.0.0.1:{port}" in proc.stdout.readline()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model="m", messages=USER).choices[0].message.content.endswith("up")
    finally:
        proc.terminate()
        proc.wait(timeout=5)
