"""Recorded provider answers, played back byte for byte by `replay_upstream`, through the gateway.

Each recording in `tests/recordings/` (written from the providers' API references and the SDKs' types)
is checked three ways:
- it is an official answer (the SDK's types accept it, every required field present);
- passthrough: the SDK object through the gateway equals the SDK object straight from the recording, and
  the wire is the recording's but for the fields the gateway owns (model name, the Responses id and state);
- translated to each other format: that format's SDK accepts the answer (streamed and not), the text and
  the client's tool calls survive, and the usage is exact (in the answer and in the request-log row).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import anthropic
import anthropic.types as atypes
import openai
import pytest
import requests
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from replay_upstream import ReplayUpstream, recording, recordings, sse_payloads
from schema_check import assert_conforms, sse_events

FORMATS = ("anthropic", "responses", "chat")
CLIENTS = {"anthropic": "messages", "responses": "responses", "chat": "chat"}
OFFICIAL = {"anthropic": (atypes.Message, atypes.RawMessageStreamEvent), "responses": (Response, ResponseStreamEvent),
            "chat": (ChatCompletion, ChatCompletionChunk)}
# Responses client-call items and the tool each becomes in the other formats (with the field holding its input)
CLIENT_TOOLS = {"apply_patch_call": "apply_patch", "shell_call": "shell", "local_shell_call": "local_shell"}
CLIENT_INPUTS = {"apply_patch_call": "operation", "shell_call": "action", "local_shell_call": "action"}
ALL = [(fmt, name) for fmt in FORMATS for name in recordings(fmt)]
# What each recording bills: all input tokens (cache reads and writes included) and all output tokens.
USAGE = {
    ("anthropic", "text"): (2095 + 1800 + 248, 17), ("anthropic", "thinking_tools"): (412, 188),
    ("anthropic", "web_search"): (6039, 931), ("anthropic", "whole_message_start"): (380, 42),
    ("anthropic", "zero_usage"): (0, 0), ("anthropic", "refusal"): (31, 9), ("anthropic", "pause_turn"): (2200, 120),
    ("anthropic", "iterations"): (60385 + 682, 592 + 1320),  # every iteration is billed, compaction included
    ("anthropic", "code_execution"): (1520, 64), ("responses", "mcp_approval"): (640, 37),
    ("responses", "text"): (1312, 14), ("responses", "reasoning_tool"): (85, 150),
    ("responses", "web_search"): (8113, 61), ("responses", "custom_tool_call"): (120, 18),
    ("responses", "zero_usage"): (0, 0), ("responses", "client_calls"): (2410, 96),
    ("chat", "text"): (1312, 14), ("chat", "tool_calls"): (82, 46), ("chat", "zero_usage"): (0, 0),
    ("chat", "reasoning_outside"): (40, 2 + 340),  # reasoning reported beside completion_tokens
}


@dataclass
class Seen:
    """An answer reduced to what must survive translation."""

    text: str = ""
    calls: list = field(default_factory=list)  # (name, arguments as an object)
    input_tokens: int = 0
    output_tokens: int = 0
    stop: str = ""  # the format's own stop / finish reason ("" for Responses)


def model_of(fmt: str, name: str) -> str:
    return f"rp-{fmt}-{name.replace('_', '-')}"


@pytest.fixture(scope="module")
def replay():
    server = ReplayUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(gateway, replay) -> str:
    """An account per recording, serving its own public model; the key that calls them."""
    for fmt, name in ALL:
        model = model_of(fmt, name)
        gateway.create_model(model, max_output_tokens=2048, input_usd_per_mtok="1", output_usd_per_mtok="2")
        provider, extra = ("anthropic", {}) if fmt == "anthropic" else ("openai", {"api": fmt})
        gateway.create_account(provider=provider, base_url=replay.base_url(fmt, name), api_key="sk-replay-upstream",
                               models=[model], **extra)
    return gateway.create_key(budget="100", name="replay")["key"]


def clients(base: str, key: str) -> tuple:
    return (openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=30),
            anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=30))


def ask(client_format: str, oai, ant, model: str, stream: bool):
    """One call in a client format through an SDK; the SDK's object (final object for streams)."""
    if client_format == "messages":
        kwargs = {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
        if not stream:
            return ant.messages.create(**kwargs)
        with ant.messages.stream(**kwargs) as events:
            return events.get_final_message()
    if client_format == "responses":
        kwargs = {"model": model, "input": "Weather in Paris?"}
        if not stream:
            return oai.responses.create(**kwargs)
        with oai.responses.stream(**kwargs) as events:  # get_final_response() takes response.completed only
            return next(e.response for e in events if e.type in ("response.completed", "response.incomplete"))
    kwargs = {"model": model, "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    if not stream:
        return oai.chat.completions.create(**kwargs)
    # the chunks as the SDK reads them (its stream() helper raises on a content_filter finish by design)
    return chat_from_chunks(oai.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                        **kwargs))


def chat_from_chunks(chunks) -> ChatCompletion:
    """A ChatCompletion assembled from the SDK's chunk objects: content, tool calls by index, usage."""
    text, calls, usage, finish, first = "", {}, None, None, None
    for chunk in chunks:
        first = first or chunk
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": call.id, "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
                entry["function"]["name"] += (call.function.name or "") if call.function else ""
                entry["function"]["arguments"] += (call.function.arguments or "") if call.function else ""
    message = {"role": "assistant", "content": text or None, "tool_calls": [calls[i] for i in sorted(calls)] or None}
    return ChatCompletion.model_validate({
        "id": first.id, "object": "chat.completion", "created": first.created, "model": first.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage.model_dump()})


def seen(client_format: str, obj) -> Seen:
    """Text, client tool calls and usage of an SDK object (usage in all input tokens, as billed)."""
    if client_format == "messages":
        u = obj.usage
        return Seen("".join(b.text for b in obj.content if b.type == "text"),
                    [(b.name, b.input) for b in obj.content if b.type == "tool_use"],
                    u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0),
                    u.output_tokens, obj.stop_reason)
    if client_format == "responses":
        calls = [_client_call(item) for item in obj.output
                 if item.type in ("function_call", "custom_tool_call", "mcp_approval_request")
                 or item.type in CLIENT_TOOLS]
        text = "".join(getattr(c, "text", None) or getattr(c, "refusal", "") for i in obj.output
                       if i.type == "message" for c in i.content)  # a refusal is the answer's text too
        return Seen(text, calls, obj.usage.input_tokens, obj.usage.output_tokens)
    message = obj.choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]
    return Seen(message.content or message.refusal or "", calls, obj.usage.prompt_tokens, obj.usage.completion_tokens,
                obj.choices[0].finish_reason)


def _client_call(item) -> tuple:
    """A Responses call item as (tool name, input object), as the other formats carry it."""
    if item.type == "function_call":
        return item.name, json.loads(item.arguments)
    if item.type == "custom_tool_call":
        return item.name, {"input": item.input}
    if item.type == "mcp_approval_request":  # the client answers it: approve or deny
        return item.type, {"server_label": item.server_label, "name": item.name, "arguments": item.arguments}
    return CLIENT_TOOLS[item.type], getattr(item, CLIENT_INPUTS[item.type]).model_dump(exclude_unset=True)


def recorded(fmt: str, name: str) -> Seen:
    """What the recording itself says (its non-streamed form, or its stream read by the SDK)."""
    raw = _recorded_object(fmt, name)
    found = seen(CLIENTS[fmt], raw)
    found.input_tokens, found.output_tokens = USAGE[(fmt, name)]
    return found


def _recorded_object(fmt: str, name: str):
    kind = OFFICIAL[fmt][0]
    return kind.model_validate(json.loads(recording(fmt, name, False)))


def raw_call(gateway, key: str, client_format: str, model: str, stream: bool) -> requests.Response:
    """One raw request in a client format, read with `requests` (streams with Chat's usage chunk)."""
    path, headers, body = {
        "messages": ("/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"},
                     {"max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}),
        "responses": ("/responses", {"Authorization": f"Bearer {key}"}, {"input": "hi"}),
        "chat": ("/chat/completions", {"Authorization": f"Bearer {key}"},
                 {"messages": [{"role": "user", "content": "hi"}]}),
    }[client_format]
    if stream and client_format == "chat":
        body["stream_options"] = {"include_usage": True}
    return requests.post(gateway.v1 + path, headers=headers, json={"model": model, "stream": stream, **body},
                         stream=stream, timeout=30)


def last_row(gateway, key: str) -> dict:
    rows = requests.get(gateway.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"},
                        params={"limit": 1}, timeout=30).json()["data"]
    return rows[0]


# ---------------------------------------------------------------- the recordings themselves
@pytest.mark.parametrize("fmt,name", ALL, ids=[f"{f}-{n}" for f, n in ALL])
def test_each_recording_is_an_official_answer(fmt, name):
    assert_conforms(OFFICIAL[fmt][0], json.loads(recording(fmt, name, False)), f"{fmt}/{name}.json")
    for event, data in sse_payloads(recording(fmt, name, True)):
        if data != "[DONE]" and event != "ping":
            assert_conforms(OFFICIAL[fmt][1], json.loads(data), f"{fmt}/{name}.sse {event}")


# ---------------------------------------------------------------- passthrough
OWNED = {"model", "id", "store", "previous_response_id", "conversation"}


def _without_owned(fmt: str, payload):
    """A wire object without the fields the gateway owns (the model name; a Responses object's id and state)."""
    if not isinstance(payload, dict):
        return payload
    owned = OWNED if fmt == "responses" else {"model"}
    cleaned = {k: v for k, v in payload.items() if k not in owned}
    for nested in ("message", "response"):
        if isinstance(cleaned.get(nested), dict):
            cleaned[nested] = _without_owned(fmt, cleaned[nested])
    return cleaned


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fmt,name", ALL, ids=[f"{f}-{n}" for f, n in ALL])
def test_passthrough_keeps_the_recorded_answer(gateway, replay, served, fmt, name, stream):
    model = model_of(fmt, name)
    oai, ant = clients(gateway.url, served)
    through = ask(CLIENTS[fmt], oai, ant, model, stream)
    direct_oai = openai.OpenAI(base_url=replay.base_url(fmt, name), api_key="x", max_retries=0)
    direct_ant = anthropic.Anthropic(base_url=replay.base_url(fmt, name), api_key="x", max_retries=0)
    direct = ask(CLIENTS[fmt], direct_oai, direct_ant, model, stream)
    assert _without_owned(fmt, through.model_dump()) == _without_owned(fmt, direct.model_dump())
    row = last_row(gateway, served)
    assert (row["input_tokens"], row["output_tokens"]) == USAGE[(fmt, name)], "the row bills what the upstream said"


@pytest.mark.parametrize("fmt,name", ALL, ids=[f"{f}-{n}" for f, n in ALL])
def test_passthrough_stream_is_the_recorded_wire(gateway, served, fmt, name):
    answer = raw_call(gateway, served, CLIENTS[fmt], model_of(fmt, name), stream=True)
    wire = [(event, data if data == "[DONE]" else _without_owned(fmt, json.loads(data)))
            for event, data in sse_events(answer)]
    expected = [(event, data if data == "[DONE]" else _without_owned(fmt, json.loads(data)))
                for event, data in sse_payloads(recording(fmt, name, True))]
    assert wire == expected


# ---------------------------------------------------------------- translation
TRANSLATIONS = [(fmt, name, client) for fmt, name in ALL for client in ("responses", "chat", "messages")
                if CLIENTS[fmt] != client]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fmt,name,client", TRANSLATIONS, ids=[f"{f}-{n}-to-{c}" for f, n, c in TRANSLATIONS])
def test_translation_keeps_text_tool_calls_and_usage(gateway, served, fmt, name, client, stream):
    oai, ant = clients(gateway.url, served)
    got = seen(client, ask(client, oai, ant, model_of(fmt, name), stream))
    want = recorded(fmt, name)
    assert got.text == want.text
    assert got.calls == want.calls
    if client != "responses":
        assert (got.stop in ("tool_use", "tool_calls")) == bool(want.calls), "a client call is a tool stop"
    assert (got.input_tokens, got.output_tokens) == (want.input_tokens, want.output_tokens)
    row = last_row(gateway, served)
    assert (row["input_tokens"], row["output_tokens"]) == USAGE[(fmt, name)]


# ---------------------------------------------------------------- what has an equivalent in the other format
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_anthropic_web_search_and_its_citations_become_a_web_search_call_and_annotations(gateway, served, stream):
    oai, ant = clients(gateway.url, served)
    response = ask("responses", oai, ant, model_of("anthropic", "web_search"), stream)
    search = next(i for i in response.output if i.type == "web_search_call")
    assert search.action.query == "Paris weather today"
    assert [s.url for s in search.action.sources] == ["https://weather.example.com/paris"]
    [(annotation, text)] = [(a, c.text) for i in response.output if i.type == "message" for c in i.content
                            for a in c.annotations]
    assert [i.type for i in response.output] == ["message", "web_search_call", "message"]
    assert annotation.url == "https://weather.example.com/paris" and annotation.title == "Paris weather forecast"
    assert text[annotation.start_index:annotation.end_index] == "Paris is sunny at 21 degrees."
    assert not [i for i in response.output if i.type == "function_call"], "a server tool is no client call"
    if not stream:
        chat = ask("chat", oai, ant, model_of("anthropic", "web_search"), stream)
        [cited] = chat.choices[0].message.annotations
        content = chat.choices[0].message.content
        assert content[cited.url_citation.start_index:cited.url_citation.end_index] == "Paris is sunny at 21 degrees."


def test_a_responses_web_search_call_and_annotations_reach_chat_as_annotations(gateway, served):
    oai, ant = clients(gateway.url, served)
    chat = ask("chat", oai, ant, model_of("responses", "web_search"), False)
    [cited] = chat.choices[0].message.annotations
    assert cited.url_citation.url == "https://weather.example.com/paris"
    assert (cited.url_citation.start_index, cited.url_citation.end_index) == (0, 29)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_refusal_stays_a_refusal(gateway, served, stream):
    oai, ant = clients(gateway.url, served)
    response = ask("responses", oai, ant, model_of("anthropic", "refusal"), stream)
    assert response.status == "incomplete" and response.incomplete_details.reason == "content_filter"
    chat = ask("chat", oai, ant, model_of("anthropic", "refusal"), stream)
    assert chat.choices[0].finish_reason == "content_filter"
    if not stream:
        assert [c.type for i in response.output for c in i.content] == ["refusal"]
        assert chat.choices[0].message.refusal == "I can't help with that." and chat.choices[0].message.content is None
    message = ask("messages", oai, ant, model_of("chat", "text"), stream)
    assert message.stop_reason == "end_turn"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_paused_turn_is_unfinished_not_stopped(gateway, served, stream):
    oai, ant = clients(gateway.url, served)
    response = ask("responses", oai, ant, model_of("anthropic", "pause_turn"), stream)
    assert response.status == "incomplete"
    assert ask("chat", oai, ant, model_of("anthropic", "pause_turn"), stream).choices[0].finish_reason == "length"


# ---------------------------------------------------------------- reasoning stays resendable
SIGNATURE = json.loads(recording("anthropic", "thinking_tools", False))["content"][0]


def _sent_thinking(replay) -> list:
    body = replay.last("anthropic", "thinking_tools").body
    return [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]
            if b["type"] == "thinking"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_thinking_signature_shown_as_responses_reasoning_goes_back_intact(gateway, replay, served, stream):
    oai, ant = clients(gateway.url, served)
    model = model_of("anthropic", "thinking_tools")
    first = ask("responses", oai, ant, model, stream)
    reasoning = next(i for i in first.output if i.type == "reasoning")
    assert reasoning.encrypted_content, "the signature rides in encrypted_content"
    items = [{"role": "user", "content": "Weather in Paris?"}]
    items += [i.model_dump(exclude_none=True) for i in first.output]
    items += [{"type": "function_call_output", "call_id": i.call_id, "output": "sunny"} for i in first.output
              if i.type == "function_call"]
    oai.responses.create(model=model, input=items, store=False)
    assert _sent_thinking(replay) == [SIGNATURE]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_thinking_signature_shown_to_chat_goes_back_intact(gateway, replay, served, stream):
    oai, ant = clients(gateway.url, served)
    model = model_of("anthropic", "thinking_tools")
    if stream:
        chunks = list(oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                  stream=True, stream_options={"include_usage": True}))
        details = [d for c in chunks for ch in c.choices for d in (ch.delta.model_extra or {}).get(
            "reasoning_details") or []]
        reasoning = "".join((ch.delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
                            for ch in c.choices)
        calls = chat_from_chunks(iter(chunks)).choices[0].message.tool_calls
    else:
        message = ask("chat", oai, ant, model, False).choices[0].message
        details, reasoning = message.model_extra["reasoning_details"], message.model_extra["reasoning_content"]
        calls = message.tool_calls
    assert [d["signature"] for d in details if d.get("signature")] == [SIGNATURE["signature"]]
    assistant = {"role": "assistant", "content": None, "reasoning_content": reasoning,
                 "reasoning_details": [{k: v for k, v in d.items() if k != "index"} for d in details],
                 "tool_calls": [c.model_dump(exclude_none=True) for c in calls]}
    messages = [{"role": "user", "content": "hi"}, assistant]
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls]
    oai.chat.completions.create(model=model, messages=messages)
    assert _sent_thinking(replay) == [SIGNATURE]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_encrypted_content_shown_to_anthropic_goes_back_intact(gateway, replay, served, stream):
    oai, ant = clients(gateway.url, served)
    model = model_of("responses", "reasoning_tool")
    first = ask("messages", oai, ant, model, stream)
    [thinking] = [b for b in first.content if b.type == "thinking"]
    assert thinking.signature, "never a thinking block with an empty signature"
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": "sunny"} for b in first.content
               if b.type == "tool_use"]
    ant.messages.create(model=model, max_tokens=100, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": results}])
    recorded_item = json.loads(recording("responses", "reasoning_tool", False))["output"][0]
    sent = [i for i in replay.last("responses", "reasoning_tool").body["input"] if i.get("type") == "reasoning"]
    assert [i["encrypted_content"] for i in sent] == [recorded_item["encrypted_content"]]


def test_plain_reasoning_of_a_chat_server_is_signed_by_the_gateway_not_left_unsigned(gateway, served):
    oai, ant = clients(gateway.url, served)
    for stream in (False, True):
        message = ask("messages", oai, ant, model_of("chat", "reasoning_outside"), stream)
        [thinking] = [b for b in message.content if b.type == "thinking"]
        assert thinking.thinking and thinking.signature


def test_a_thread_with_anthropic_reasoning_goes_to_an_anthropic_account(gateway, replay, served):
    gateway.create_model("rp-mixed", max_output_tokens=1024)
    gateway.create_account(provider="openai", api="chat", base_url=replay.base_url("chat", "text"),
                           api_key="sk-replay-upstream", models=["rp-mixed"], weight=100)
    gateway.create_account(provider="anthropic", base_url=replay.base_url("anthropic", "thinking_tools"),
                           api_key="sk-replay-upstream", models=["rp-mixed"], weight=1)
    oai, ant = clients(gateway.url, served)
    first = oai.responses.create(model="rp-mixed", input="hi", store=False)
    if not any(i.type == "reasoning" for i in first.output):  # the chat account answered: ask the other one
        first = oai.responses.create(model=model_of("anthropic", "thinking_tools"), input="hi", store=False)
    items = [{"role": "user", "content": "hi"}] + [i.model_dump(exclude_none=True) for i in first.output]
    items += [{"type": "function_call_output", "call_id": i.call_id, "output": "sunny"} for i in first.output
              if i.type == "function_call"]
    for _ in range(5):
        before = len(replay.received)
        oai.responses.create(model="rp-mixed", input=items, store=False)
        assert replay.received[before].fmt == "anthropic", "the reasoning goes back to the provider that wrote it"


@pytest.mark.parametrize("fmt,name,client", TRANSLATIONS, ids=[f"{f}-{n}-to-{c}" for f, n, c in TRANSLATIONS])
def test_translated_answers_are_official_answers(gateway, served, fmt, name, client):
    """Every body and stream event of a translated recording validates as the client format's official type."""
    target = {"messages": "anthropic", "responses": "responses", "chat": "chat"}[client]
    plain = raw_call(gateway, served, client, model_of(fmt, name), stream=False)
    assert plain.status_code == 200, plain.text
    assert_conforms(OFFICIAL[target][0], plain.json(), f"{fmt}/{name} as {client}")
    streamed = raw_call(gateway, served, client, model_of(fmt, name), stream=True)
    for event, data in sse_events(streamed):
        if data != "[DONE]" and event != "ping":
            assert_conforms(OFFICIAL[target][1], json.loads(data), f"{fmt}/{name} as {client}: {event}")
