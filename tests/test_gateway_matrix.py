"""The gateway matrix: every inbound format × every upstream kind × stream or not × text or a tool loop.

Driven through the official SDKs against the live server and the fake upstream;
each test also checks what the fake upstream received.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

import anthropic
import openai
import pytest
import requests

UPSTREAMS = ["chat", "responses", "anthropic", "echo"]
INBOUNDS = ["responses", "chat", "messages"]
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL_RESULT = "Sunny and 21C"
PROMPT = "Paris weather please"


@dataclass
class Target:
    """A public model on one upstream kind, and how the fake upstream sees it."""

    kind: str
    model: str
    scenario: Optional[str] = None  # the fake's scenario label (None for echo)
    upstream_model: Optional[str] = None
    path: Optional[str] = None  # the upstream path the gateway calls


@dataclass
class Outcome:
    """One answer, reduced to what the matrix compares across formats."""

    text: str = ""
    calls: list = field(default_factory=list)  # (call_id, name, arguments dict)
    stop: str = ""  # canonical: "end_turn" | "tool_use" | "max_tokens"
    input_tokens: int = 0
    output_tokens: int = 0
    raw: Any = None


@pytest.fixture(scope="module")
def targets(gateway, upstream) -> dict:
    """One account per upstream kind, each serving its own public model through `model_map`."""
    found = {}
    specs = [("chat", "mx-chat", "openai", {"api": "chat"}, "gpt-fake-1", "/v1/chat/completions"),
             ("responses", "mx-resp", "openai", {"api": "responses"}, "gpt-fake-mini", "/v1/responses"),
             ("anthropic", "mx-anth", "anthropic", {}, "claude-fake-1", "/v1/messages")]
    for kind, model, provider, extra, upstream_model, path in specs:
        scenario = f"matrix-{kind}"
        gateway.create_model(model, max_output_tokens=1024)
        gateway.create_account(provider=provider, base_url=upstream.base_url(provider, scenario),
                               api_key=f"sk-upstream-secret-{kind}", models=[model],
                               model_map={model: upstream_model}, **extra)
        found[kind] = Target(kind, model, scenario, upstream_model, path)
    found["echo"] = Target("echo", "echo-1")
    return found


@pytest.fixture(scope="module")
def matrix_key(gateway) -> str:
    return gateway.create_key(budget="100", name="matrix")["key"]


@pytest.fixture(scope="module")
def oai(gateway, matrix_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=matrix_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def ant(gateway, matrix_key) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=matrix_key, max_retries=0, timeout=30)


# ---------------------------------------------------------------- one turn per inbound format
def responses_turn(client: openai.OpenAI, model: str, items: list, stream: bool, tools: bool, **extra) -> Outcome:
    """One Responses call; the outcome and the output items to send back next turn."""
    kwargs: dict = {"model": model, "input": items, "max_output_tokens": 200, **extra}
    if tools:
        kwargs["tools"] = [{"type": "function", "name": "get_weather", "description": "Weather of a city",
                            "parameters": WEATHER_SCHEMA}]
    if stream:
        with client.responses.stream(**kwargs) as events:
            kinds = [event.type for event in events]
            resp = events.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    else:
        resp = client.responses.create(**kwargs)
    assert resp.id.startswith("resp_") and resp.status == "completed"
    calls = [(item.call_id, item.name, json.loads(item.arguments)) for item in resp.output
             if item.type == "function_call"]
    return Outcome(resp.output_text, calls, "tool_use" if calls else "end_turn", resp.usage.input_tokens,
                   resp.usage.output_tokens, resp)


def chat_turn(client: openai.OpenAI, model: str, messages: list, stream: bool, tools: bool, **extra) -> Outcome:
    """One Chat Completions call."""
    kwargs: dict = {"model": model, "messages": messages, "max_tokens": 200, **extra}
    if tools:
        kwargs["tools"] = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                             "parameters": WEATHER_SCHEMA}}]
    if stream:
        with client.chat.completions.stream(stream_options={"include_usage": True}, **kwargs) as events:
            for _ in events:
                pass
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.create(**kwargs)
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []]
    stop = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}[choice.finish_reason]
    return Outcome(choice.message.content or "", calls, stop, completion.usage.prompt_tokens,
                   completion.usage.completion_tokens, completion)


def messages_turn(client: anthropic.Anthropic, model: str, messages: list, stream: bool, tools: bool,
                  **extra) -> Outcome:
    """One Messages call."""
    kwargs: dict = {"model": model, "messages": messages, "max_tokens": 200, **extra}
    if tools:
        kwargs["tools"] = [{"name": "get_weather", "description": "Weather of a city", "input_schema": WEATHER_SCHEMA}]
    if stream:
        with client.messages.stream(**kwargs) as events:
            for _ in events:
                pass
            message = events.get_final_message()
    else:
        message = client.messages.create(**kwargs)
    assert message.id.startswith("msg_")
    text = "".join(b.text for b in message.content if b.type == "text")
    calls = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    return Outcome(text, calls, message.stop_reason, message.usage.input_tokens, message.usage.output_tokens,
                   message)


def first_turn(inbound: str, oai, ant, model: str, stream: bool, tools: bool, **extra) -> Outcome:
    """The user's opening turn in the inbound format."""
    if inbound == "responses":
        return responses_turn(oai, model, [{"role": "user", "content": PROMPT}], stream, tools, **extra)
    if inbound == "chat":
        return chat_turn(oai, model, [{"role": "user", "content": PROMPT}], stream, tools, **extra)
    return messages_turn(ant, model, [{"role": "user", "content": PROMPT}], stream, tools, **extra)


def tool_result_turn(inbound: str, oai, ant, model: str, stream: bool, first: Outcome,
                     results: Optional[list] = None) -> Outcome:
    """Send the tools' results (one per call of the first turn) back, as each format's clients do."""
    results = results or [TOOL_RESULT]
    calls = list(zip(first.calls, results, strict=True))
    if inbound == "responses":
        items = [{"role": "user", "content": PROMPT}]
        items += [item.model_dump(exclude_none=True) for item in first.raw.output]
        items += [{"type": "function_call_output", "call_id": call_id, "output": result}
                  for (call_id, _, _), result in calls]
        return responses_turn(oai, model, items, stream, True)
    if inbound == "chat":
        assistant = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            for call_id, name, args in first.calls]}
        messages = [{"role": "user", "content": PROMPT}, assistant]
        messages += [{"role": "tool", "tool_call_id": call_id, "content": result} for (call_id, _, _), result in calls]
        return chat_turn(oai, model, messages, stream, True)
    assistant = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.raw.content]}
    blocks = [{"type": "tool_result", "tool_use_id": call_id, "content": result} for (call_id, _, _), result in calls]
    messages = [{"role": "user", "content": PROMPT}, assistant, {"role": "user", "content": blocks}]
    return messages_turn(ant, model, messages, stream, True)


# ---------------------------------------------------------------- what the fake upstream received
def received(upstream, target: Target) -> dict:
    """The body of the last request the fake upstream got for this target."""
    body = upstream.last(target.path, scenario=target.scenario).body
    assert body["model"] == target.upstream_model, "the model name is mapped with model_map"
    return body


def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def upstream_tool_results(target: Target, body: dict) -> list:
    """The tool result texts as the upstream's own format carries them, each answering a call it was sent."""
    if target.kind == "chat":
        called = {c["id"] for m in body["messages"] for c in m.get("tool_calls") or []}
        tool = [m for m in body["messages"] if m.get("role") == "tool"]
        assert {m["tool_call_id"] for m in tool} <= called
        return [_text(m["content"]) for m in tool]
    if target.kind == "responses":
        called = {i["call_id"] for i in body["input"] if i.get("type") == "function_call"}
        outputs = [i for i in body["input"] if i.get("type") == "function_call_output"]
        assert {i["call_id"] for i in outputs} <= called
        return [_text(i["output"]) for i in outputs]
    roles = [m["role"] for m in body["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "Anthropic turns alternate"
    called = {b["id"] for m in body["messages"] if isinstance(m["content"], list)
              for b in m["content"] if b.get("type") == "tool_use"}
    last = body["messages"][-1]
    assert last["role"] == "user"
    results = [b for b in last["content"] if b.get("type") == "tool_result"]
    assert {b["tool_use_id"] for b in results} <= called
    return [_text(b["content"]) for b in results]


def expected_arguments(target: Target) -> dict:
    """The fake always asks for Paris; echo fills required properties from the user text."""
    return {"city": PROMPT} if target.kind == "echo" else {"city": "Paris"}


# ---------------------------------------------------------------- the matrix
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_text_turn_works_across_formats(inbound, kind, stream, targets, oai, ant, upstream):
    target = targets[kind]
    outcome = first_turn(inbound, oai, ant, target.model, stream, tools=False)
    assert PROMPT in outcome.text
    assert outcome.stop == "end_turn"
    assert outcome.input_tokens > 0 and outcome.output_tokens > 0
    assert outcome.calls == []
    if kind != "echo":
        body = received(upstream, target)
        assert PROMPT in json.dumps(body)
        assert bool(body.get("stream")) == stream


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_tool_call_then_tool_result_across_formats(inbound, kind, stream, targets, oai, ant, upstream):
    target = targets[kind]
    first = first_turn(inbound, oai, ant, target.model, stream, tools=True)
    assert first.stop == "tool_use"
    assert len(first.calls) == 1
    call_id, name, args = first.calls[0]
    assert name == "get_weather" and args == expected_arguments(target)
    prefix = {"responses": "call_", "chat": "call_", "messages": "toolu_"}[inbound]
    assert call_id.startswith(prefix)
    assert first.input_tokens > 0 and first.output_tokens > 0

    second = tool_result_turn(inbound, oai, ant, target.model, stream, first)
    assert TOOL_RESULT in second.text
    assert second.stop == "end_turn" and second.calls == []
    assert second.input_tokens > 0 and second.output_tokens > 0
    if kind != "echo":
        assert upstream_tool_results(target, received(upstream, target)) == [TOOL_RESULT]


@pytest.fixture(scope="module")
def parallel_targets(gateway, upstream, targets) -> dict:
    """The fake upstream kinds again, on accounts whose upstream calls two tools at once."""
    found = {}
    for kind, target in targets.items():
        if kind == "echo":
            continue
        provider = "anthropic" if kind == "anthropic" else "openai"
        model = target.model + "-par"
        gateway.create_model(model, max_output_tokens=1024)
        extra = {"api": kind} if provider == "openai" else {}
        gateway.create_account(provider=provider, base_url=upstream.base_url(provider, "parallel_tools"),
                               api_key="sk-upstream-secret-par", models=[model],
                               model_map={model: target.upstream_model}, **extra)
        found[kind] = Target(kind, model, "parallel_tools", target.upstream_model, target.path)
    return found


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_parallel_tool_calls_across_formats(inbound, kind, stream, parallel_targets, oai, ant, upstream):
    target = parallel_targets[kind]
    first = first_turn(inbound, oai, ant, target.model, stream, tools=True)
    assert first.stop == "tool_use"
    assert [(name, args) for _, name, args in first.calls] == [("get_weather", {"city": "Paris"}),
                                                                ("get_weather", {"city": "Rome"})]
    assert len({call_id for call_id, _, _ in first.calls}) == 2
    second = tool_result_turn(inbound, oai, ant, target.model, stream, first, ["Sunny", "Rainy"])
    assert "Sunny" in second.text and "Rainy" in second.text
    assert upstream_tool_results(target, received(upstream, target)) == ["Sunny", "Rainy"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_output_cap_maps_to_length_stop(inbound, kind, stream, targets, oai, ant):
    target = targets[kind]
    cap = {"responses": "max_output_tokens", "chat": "max_tokens", "messages": "max_tokens"}[inbound]
    # the openai SDK's stream helpers refuse truncated answers (as with OpenAI itself): read the raw streams
    if inbound == "responses":
        if stream:
            events = list(oai.responses.create(model=target.model, input=PROMPT, max_output_tokens=2, stream=True))
            assert events[-1].type == "response.incomplete"
            resp = events[-1].response
        else:
            resp = oai.responses.create(model=target.model, input=PROMPT, max_output_tokens=2)
        assert resp.status == "incomplete" and resp.incomplete_details.reason == "max_output_tokens"
        assert resp.output_text
    elif inbound == "chat" and stream:
        chunks = list(oai.chat.completions.create(model=target.model, messages=[{"role": "user", "content": PROMPT}],
                                                  max_tokens=2, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        outcome = first_turn(inbound, oai, ant, target.model, stream, False, **{cap: 2})
        assert outcome.stop == "max_tokens" and outcome.text


@pytest.mark.parametrize("kind", ["chat", "anthropic", "echo"])
@pytest.mark.parametrize("inbound", INBOUNDS)
def test_streams_are_unbuffered_server_sent_events(inbound, kind, targets, gateway, matrix_key):
    model = targets[kind].model
    messages = [{"role": "user", "content": PROMPT}]
    path, body = {"responses": ("/responses", {"input": PROMPT}),
                  "chat": ("/chat/completions", {"messages": messages}),
                  "messages": ("/messages", {"messages": messages, "max_tokens": 50})}[inbound]
    answer = requests.post(gateway.v1 + path, json={"model": model, "stream": True, **body}, timeout=30,
                           headers={"Authorization": f"Bearer {matrix_key}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["x-accel-buffering"] == "no"
    events = [e for e in answer.text.split("\n\n") if e.strip()]
    assert all(line.startswith(("event: ", "data: ", ":")) for e in events for line in e.splitlines())
    if inbound == "chat":
        assert events[-1] == "data: [DONE]"
    else:
        assert all(e.startswith("event: ") for e in events), "the anthropic SDK skips events without a name"


# ---------------------------------------------------------------- count_tokens
def test_count_tokens_uses_the_anthropic_upstream(targets, ant, upstream):
    target = targets["anthropic"]
    counted = ant.messages.count_tokens(model=target.model, messages=[{"role": "user", "content": "one two three"}])
    assert counted.input_tokens == 6  # the fake counts words + 3
    record = upstream.last("/v1/messages/count_tokens", scenario=target.scenario)
    assert record.body["model"] == target.upstream_model


@pytest.mark.parametrize("kind", ["chat", "responses", "echo"])
def test_count_tokens_estimates_locally_elsewhere(kind, targets, ant):
    counted = ant.messages.count_tokens(model=targets[kind].model, messages=[{"role": "user", "content": PROMPT}],
                                        system="Be brief.")
    assert counted.input_tokens > 0


# ---------------------------------------------------------------- passthrough
def test_messages_passthrough_keeps_unknown_fields(targets, ant, upstream):
    target = targets["anthropic"]
    message = ant.messages.create(
        model=target.model, max_tokens=2048, messages=[{"role": "user", "content": PROMPT}],
        metadata={"user_id": "user-42"}, thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"x_custom": {"keep": [1, 2]}})
    assert PROMPT in message.content[-1].text
    record = upstream.last("/v1/messages", scenario=target.scenario)
    assert record.body["x_custom"] == {"keep": [1, 2]}
    assert record.body["metadata"] == {"user_id": "user-42"}
    assert record.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert record.body["model"] == target.upstream_model


def test_messages_beta_url_is_passed_through(targets, ant, upstream):
    target = targets["anthropic"]
    message = ant.beta.messages.create(model=target.model, max_tokens=100, betas=["context-management-2025-06-27"],
                                       messages=[{"role": "user", "content": PROMPT}], extra_query={"beta": "true"})
    assert message.stop_reason == "end_turn"
    record = upstream.last("/v1/messages", scenario=target.scenario)
    assert "beta=true" in record.query
    assert "context-management-2025-06-27" in record.headers.get("anthropic-beta", "")


def test_chat_passthrough_keeps_unknown_fields(targets, oai, upstream):
    target = targets["chat"]
    oai.chat.completions.create(model=target.model, messages=[{"role": "user", "content": PROMPT}],
                                extra_body={"x_custom": "kept", "top_k": 5})
    body = received(upstream, target)
    assert body["x_custom"] == "kept" and body["top_k"] == 5


def test_responses_passthrough_keeps_unknown_fields(targets, oai, upstream):
    target = targets["responses"]
    oai.responses.create(model=target.model, input=PROMPT, extra_body={"x_custom": "kept"})
    body = received(upstream, target)
    assert body["x_custom"] == "kept"


def test_streamed_passthrough_answers_with_the_public_model_name(targets, oai, ant):
    with oai.chat.completions.stream(model=targets["chat"].model,
                                     messages=[{"role": "user", "content": PROMPT}]) as events:
        for _ in events:
            pass
        assert events.get_final_completion().model == targets["chat"].model
    with ant.messages.stream(model=targets["anthropic"].model, max_tokens=100,
                             messages=[{"role": "user", "content": PROMPT}]) as events:
        assert events.get_final_message().model == targets["anthropic"].model
    with oai.responses.stream(model=targets["responses"].model, input=PROMPT) as events:
        assert events.get_final_response().model == targets["responses"].model


# ---------------------------------------------------------------- agents
CLAUDE_CODE_FIELDS = {
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
    "output_config": {"effort": "medium"},
    "metadata": {"user_id": "user_abc_account__session_123"},
}
CODEX_FIELDS = {
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "reasoning": {"effort": "medium", "summary": "auto"},
    "prompt_cache_key": "session-123",
    "extra_body": {"client_metadata": {"originator": "codex_cli_rs"}},
}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
def test_claude_code_fields_never_fail(kind, stream, targets, gateway, matrix_key, upstream):
    """Claude Code's extra fields, sent as it does (`?beta=true`, a system block with cache_control)."""
    client = anthropic.Anthropic(base_url=gateway.url, api_key=matrix_key, max_retries=0, timeout=30)
    target = targets[kind]
    kwargs = dict(model=target.model, max_tokens=2048, system=[
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": PROMPT}], extra_body=CLAUDE_CODE_FIELDS,
        betas=["context-management-2025-06-27"], extra_query={"beta": "true"})
    if stream:
        with client.beta.messages.stream(**kwargs) as events:
            message = events.get_final_message()
    else:
        message = client.beta.messages.create(**kwargs)
    assert PROMPT in "".join(b.text for b in message.content if b.type == "text")
    if kind == "anthropic":
        body = received(upstream, target)
        for name, value in CLAUDE_CODE_FIELDS.items():
            assert body[name] == value
    elif kind != "echo":
        body = received(upstream, target)
        assert "context_management" not in body and "output_config" not in body


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
def test_codex_fields_never_fail(kind, stream, targets, oai, upstream):
    target = targets[kind]
    items = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Be Codex."}]},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]
    outcome = responses_turn(oai, target.model, items, stream, False, instructions="You are Codex.",
                             **CODEX_FIELDS)
    assert PROMPT in outcome.text
    if kind == "responses":
        body = received(upstream, target)
        for name in ("include", "reasoning", "prompt_cache_key"):
            assert body[name] == CODEX_FIELDS[name]
        assert body["client_metadata"] == {"originator": "codex_cli_rs"}
        assert body["store"] is False
    elif kind == "anthropic":
        body = received(upstream, target)
        assert "You are Codex." in json.dumps(body["system"]) and "Be Codex." in json.dumps(body["system"])
        assert "prompt_cache_key" not in body and "include" not in body


CODEX_TOOLS = [
    {"type": "function", "name": "shell", "description": "Run a command", "strict": False,
     "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                    "required": ["command"]}},
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
]
CODEX_HISTORY = [
    {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions/>"}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix the bug"}]},
    {"type": "reasoning", "id": "rs_codex1", "summary": [{"type": "summary_text", "text": "Patch it."}],
     "encrypted_content": "gAAAA-opaque"},
    {"type": "custom_tool_call", "id": "ctc_codex1", "call_id": "call_patch1", "name": "apply_patch",
     "input": "*** Begin Patch\n*** End Patch", "status": "completed"},
    {"type": "custom_tool_call_output", "call_id": "call_patch1", "output": "Done!"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Patched.",
                                                          "annotations": []}]},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files"}]},
    {"type": "function_call", "id": "fc_codex1", "call_id": "call_ls1", "name": "shell",
     "arguments": json.dumps({"command": ["ls"]})},
    {"type": "function_call_output", "call_id": "call_ls1", "output": "a.py b.py"},
]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("kind", UPSTREAMS)
def test_a_codex_tool_loop_never_fails(kind, stream, targets, oai, upstream):
    """Codex's history (encrypted reasoning, custom tool calls, shell calls) passes through, or is translated."""
    target = targets[kind]
    kwargs = dict(model=target.model, input=CODEX_HISTORY, tools=CODEX_TOOLS, instructions="You are Codex.",
                  store=False, include=["reasoning.encrypted_content"], parallel_tool_calls=False,
                  extra_body={"prompt_cache_key": "session-1"})
    if stream:
        with oai.responses.stream(**kwargs) as events:
            resp = events.get_final_response()
    else:
        resp = oai.responses.create(**kwargs)
    assert resp.status == "completed" and "a.py b.py" in resp.output_text
    if kind == "responses":
        body = received(upstream, target)
        assert body["input"] == CODEX_HISTORY, "a same-format upstream gets the client's input as it was sent"
        assert body["tools"] == CODEX_TOOLS
    elif kind != "echo":
        body = received(upstream, target)
        assert "a.py b.py" in json.dumps(body) and "Fix the bug" in json.dumps(body)
