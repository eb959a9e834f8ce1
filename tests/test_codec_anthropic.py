"""The Anthropic Messages codec, as pure functions, checked against the official anthropic SDK."""
from __future__ import annotations

import json

import anthropic
import pydantic
import pytest

try:
    import httpx2 as httpx  # what the installed anthropic SDK is built on
except ImportError:  # pragma: no cover
    import httpx

from service.gateway.canonical import (
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    RenderContext,
    Request,
    Response,
    ResponseBuilder,
    ServerToolPart,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
    response_events,
)
from service.gateway.codecs import CodecError
from service.gateway.codecs.anthropic import (
    StreamParser,
    StreamRenderer,
    parse_request,
    parse_response,
    render_request,
    render_response,
)

CTX = RenderContext(response_id="msg_gw1", model="claude-sonnet-4-5", created_at=0)
SIGNED = {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM+sig/=="}


def user(*parts) -> Message:
    return Message(role="user", parts=list(parts))


def assistant(*parts) -> Message:
    return Message(role="assistant", parts=list(parts))


def rendered_messages(*messages: Message, **fields) -> list:
    return render_request(Request(model="any", messages=list(messages), **fields), "claude-up")["messages"]


# ---------------------------------------------------------------- requests
def test_parse_request_maps_every_block_and_option():
    body = {
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": True, "temperature": 0.3, "top_p": 0.9,
        "system": [{"type": "text", "text": "Be brief."},
                   {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Look:"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"}},
                {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
                {"type": "document", "title": "a.pdf",
                 "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes"}},
                {"type": "document", "source": {"type": "url", "url": "https://x.test/b.pdf"}},
                {"type": "search_result", "source": "s", "title": "t", "content": []},
            ]},
            {"role": "assistant", "content": [
                SIGNED, {"type": "redacted_thinking", "data": "opaque"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                          "content": [{"type": "text", "text": "timeout"}]}]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
                  {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"], "thinking": {"type": "enabled", "budget_tokens": 2048},
        "output_config": {"effort": "high"}, "metadata": {"user_id": "u-1"},
        "context_management": {"edits": []}, "service_tier": "auto", "top_k": 5, "mcp_servers": [], "container": "c",
    }
    req = parse_request(body)
    assert req.system == "Be brief.\n\nBe kind."
    assert req.messages[0].parts == [
        TextPart("Look:"), ImagePart(url="data:image/png;base64,iVBORw0"), ImagePart(url="https://x.test/a.jpg"),
        FilePart(data="JVBER", media_type="application/pdf", filename="a.pdf"),
        FilePart(text="notes", media_type="text/plain"), FilePart(url="https://x.test/b.pdf"),
    ]
    assert req.messages[1].parts == [
        ReasoningPart(text=SIGNED["thinking"], signature=SIGNED["signature"]), ReasoningPart(redacted_data="opaque"),
        ServerToolPart(id="srvtoolu_1", name="web_search"),  # shown where a format has server tools, never run
        ToolCallPart(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
    ]
    assert req.messages[2].parts == [ToolResultPart(call_id="toolu_1", content=[TextPart("timeout")], is_error=True)]
    assert req.tools == [ToolSpec(name="get_weather", description="Weather", parameters={"type": "object"})]
    assert (req.tool_choice, req.parallel_tool_calls) == ("required", False)
    assert req.reasoning == {"budget_tokens": 2048, "effort": "high"}
    assert (req.max_output_tokens, req.stop, req.stream, req.temperature, req.top_p) == (1024, ["END"], True, 0.3, 0.9)
    assert req.metadata == {"user_id": "u-1"}


def test_an_anthropic_body_round_trips_through_canonical():
    body = {
        "model": "claude-up", "max_tokens": 512, "system": "You are terse.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather in Paris? See"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
                {"type": "document", "title": "f.pdf",
                 "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            ]},
            {"role": "assistant", "content": [
                SIGNED, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C"},
                                         {"type": "text", "text": "Thanks"}]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "stop_sequences": ["STOP"], "temperature": 0.5, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-1"}, "stream": True,
    }
    assert render_request(parse_request(body), "claude-up") == body


@pytest.mark.parametrize("choice, parallel, expected", [
    ("auto", None, {"type": "auto"}),
    ("required", None, {"type": "any"}),
    ({"name": "f"}, False, {"type": "tool", "name": "f", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
])
def test_tool_choice_renders_back(choice, parallel, expected):
    req = Request(model="m", messages=[user(TextPart("hi"))], tools=[ToolSpec("f")], tool_choice=choice,
                  parallel_tool_calls=parallel)
    assert render_request(req, "up")["tool_choice"] == expected


def test_consecutive_user_messages_merge_and_tool_results_come_first():
    messages = rendered_messages(
        user(TextPart("Weather?")),
        assistant(ToolCallPart(id="toolu_a", name="w", arguments='{"c": 1}')),
        user(TextPart("also this")),
        user(ToolResultPart(call_id="toolu_a", content="sunny")),
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
        {"type": "text", "text": "also this"},
    ]


def test_several_tool_results_share_one_user_turn():
    messages = rendered_messages(
        user(TextPart("Paris and Rome?")),
        assistant(TextPart("Checking."), ToolCallPart("call_1", "w", '{"c":"Paris"}'),
                  ToolCallPart("call_2", "w", '{"c":"Rome"}')),
        user(ToolResultPart("call_1", "18C")),
        user(ToolResultPart("call_2", [TextPart("21C"), ImagePart(url="data:image/png;base64,AAAA")])),
    )
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert [b["input"] for b in messages[1]["content"][1:]] == [{"c": "Paris"}, {"c": "Rome"}]
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [
            {"type": "text", "text": "21C"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
    ]


def test_mid_conversation_system_is_folded_into_system():
    body = render_request(Request(model="m", system="Rule one.", messages=[
        user(TextPart("hi")), Message("system", [TextPart("Rule two.")]), user(TextPart("again")),
    ]), "up")
    assert body["system"] == "Rule one.\n\nRule two."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                             {"type": "text", "text": "again"}]}]
    # the current SDK lets clients send system messages too
    req = parse_request({"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "a"}, {"role": "system", "content": "Rule three."}, {"role": "user", "content": "b"}]})
    assert render_request(req, "up")["system"] == "Rule three."


def test_a_placeholder_user_turn_only_when_the_history_starts_with_the_assistant():
    assert rendered_messages(user(TextPart("hi")))[0]["content"] == [{"type": "text", "text": "hi"}]
    messages = rendered_messages(assistant(TextPart("Hello!")), user(TextPart("hi")))
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"][0]["text"] == "(continued)"


def test_tool_ids_are_sanitized_consistently_and_bad_arguments_become_empty_input():
    messages = rendered_messages(
        user(TextPart("go")),
        assistant(ToolCallPart(id="call:abc.1", name="f", arguments="{not json")),
        user(ToolResultPart(call_id="call:abc.1", content="ok")),
    )
    assert messages[1]["content"] == [{"type": "tool_use", "id": "call_abc_1", "name": "f", "input": {}}]
    assert messages[2]["content"][0]["tool_use_id"] == "call_abc_1"


def test_unsendable_parts_are_dropped():
    messages = rendered_messages(
        user(TextPart(""), TextPart("hi")),
        assistant(ReasoningPart(text="openai summary"), ReasoningPart(redacted_data="xyz"), TextPart("Sure. ")),
    )
    assert messages[0]["content"] == [{"type": "text", "text": "hi"}]
    # unsigned reasoning goes; a final (prefill) assistant turn may not end with whitespace
    assert messages[1]["content"] == [{"type": "redacted_thinking", "data": "xyz"}, {"type": "text", "text": "Sure."}]


def test_thinking_blocks_with_signatures_survive_parse_render_unchanged():
    blocks = [SIGNED, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va=="},
              {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": [1, 2]}}]
    body = {"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "q"}, {"role": "assistant", "content": blocks},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}]}]}
    assert render_request(parse_request(body), "m")["messages"][1]["content"] == blocks


def test_request_options_and_files_render():
    req = Request(model="m", user="alice", metadata={"team": "x"}, stop=["END", "  "], temperature=1.7,
                  reasoning={"effort": "low", "budget_tokens": 2000}, response_format={"type": "json_object"},
                  messages=[user(FilePart(data="data:text/plain;base64,aGVsbG8=", filename="a.txt"),
                                 FilePart(data="JVBER"), FilePart(url="https://x.test/c.pdf"),
                                 ImagePart(url="https://x.test/i.png"), ImagePart(file_id="file-unresolved"))])
    body = render_request(req, "up")
    assert body["max_tokens"] == 4096 and "stream" not in body and "response_format" not in body
    assert (body["stop_sequences"], body["temperature"], body["metadata"]) == (["END"], 1.0, {"user_id": "alice"})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert body["messages"][0]["content"] == [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "hello"}, "title": "a.txt"},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
        {"type": "document", "source": {"type": "url", "url": "https://x.test/c.pdf"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/i.png"}},
    ]


@pytest.mark.parametrize("change, param", [
    ({"model": None}, "model"),
    ({"messages": "hi"}, "messages"),
    ({"max_tokens": None}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "100"}, "max_tokens"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": ["text"]}]}, "messages.0.content.0"),
    ({"system": 3}, "system"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
    ({"temperature": "hot"}, "temperature"),
])
def test_validation_errors_name_the_param(change, param):
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **change}
    with pytest.raises(CodecError) as caught:
        parse_request({k: v for k, v in body.items() if v is not None})
    assert caught.value.param == param and caught.value.message


# ---------------------------------------------------------------- responses
UPSTREAM_MESSAGE = {
    "id": "msg_up", "type": "message", "role": "assistant", "model": "claude-up",
    "content": [SIGNED, {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 30,
              "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5},
}


def test_parse_response_counts_cached_tokens_as_input():
    resp = parse_response(UPSTREAM_MESSAGE)
    assert resp.parts == [ReasoningPart(text=SIGNED["thinking"], signature=SIGNED["signature"]), TextPart("Checking."),
                          ToolCallPart(id="toolu_1", name="w", arguments='{"city": "Paris"}')]
    assert (resp.id, resp.stop_reason) == ("msg_up", "tool_use")
    assert resp.usage == Usage(input_tokens=115, output_tokens=30, cached_tokens=100, cache_creation_tokens=5)
    with pytest.raises(CodecError):
        parse_response({"type": "error", "error": {"type": "api_error", "message": "boom"}})


def test_render_response_is_a_valid_sdk_message():
    body = render_response(parse_response(UPSTREAM_MESSAGE), CTX)
    message = anthropic.types.Message.model_validate(body)
    assert (message.id, message.model, message.stop_reason) == ("msg_gw1", "claude-sonnet-4-5", "tool_use")
    assert message.content[2].input == {"city": "Paris"} and message.content[0].signature == SIGNED["signature"]
    assert body["usage"] == UPSTREAM_MESSAGE["usage"]


def test_render_response_gives_foreign_tool_ids_the_toolu_prefix():
    resp = Response(parts=[ToolCallPart(id="call_x1", name="f", arguments='{"a": 1}')], stop_reason="tool_use",
                    usage=Usage(input_tokens=5, cached_tokens=9))
    body = render_response(resp, CTX)
    assert body["content"] == [{"type": "tool_use", "id": "toolu_call_x1", "name": "f", "input": {"a": 1}}]
    assert body["usage"]["input_tokens"] == 0  # never negative, even with inconsistent upstream figures


# ---------------------------------------------------------------- streams
def sse(event: str, data: dict) -> tuple:
    return event, json.dumps({"type": event, **data})


UPSTREAM_STREAM = [
    sse("message_start", {"message": {**UPSTREAM_MESSAGE, "content": [], "stop_reason": None,
                                      "usage": {**UPSTREAM_MESSAGE["usage"], "output_tokens": 1}}}),
    sse("ping", {}),
    sse("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "The user "}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "wants weather."}}),
    sse("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": SIGNED["signature"]}}),
    sse("content_block_stop", {"index": 0}),
    sse("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Check"}}),
    sse("ping", {}),
    sse("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "ing."}}),
    sse("content_block_stop", {"index": 1}),
    sse("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w",
                                                              "input": {}}}),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": '}}),
    sse("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'}}),
    sse("content_block_stop", {"index": 2}),
    sse("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 30}}),
    sse("message_stop", {}),
]


def parse_stream(pairs: list) -> list:
    parser = StreamParser()
    return [ev for name, data in pairs for ev in parser.feed(name, data)] + parser.close()


def render_stream(events: list, renderer: StreamRenderer | None = None) -> list:
    renderer = renderer or StreamRenderer(CTX)
    return [out for ev in events for out in renderer.feed(ev)] + renderer.close()


def sdk_final_message(rendered: list) -> anthropic.types.Message:
    """Serve the rendered SSE to the real anthropic SDK and let it assemble the message."""
    payload = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in rendered)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=payload)

    client = anthropic.Anthropic(http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                                 base_url="http://test", api_key="x", max_retries=0)
    with client.messages.stream(model="m", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        return stream.get_final_message()


def test_stream_parser_builds_the_response():
    builder = ResponseBuilder()
    for ev in parse_stream(UPSTREAM_STREAM):
        builder.feed(ev)
    assert builder.finished and builder.error is None
    expected = parse_response(UPSTREAM_MESSAGE)
    assert (builder.response.parts, builder.response.stop_reason) == (expected.parts, "tool_use")
    assert builder.response.usage == expected.usage


def test_stream_parser_reports_errors_and_rejects_bad_json():
    events = StreamParser().feed("error", '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}')
    assert [(e.type, e.text, e.error_type) for e in events] == [("error", "Overloaded", "overloaded_error")]
    with pytest.raises(CodecError):
        StreamParser().feed("content_block_delta", "{not json")


def test_rendered_stream_events_are_sdk_events_with_consecutive_block_indexes():
    events = [StreamEvent("usage", usage=Usage(input_tokens=50, cached_tokens=20)),
              StreamEvent("text", index=0, text="a"), StreamEvent("tool_call", index=3, call_id="call_1", name="f"),
              StreamEvent("tool_args", index=3, text="{}"), StreamEvent("reasoning", index=7, text="hm")]
    rendered = render_stream(events)
    adapter = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)
    for name, payload in rendered:
        assert name == payload["type"]
        adapter.validate_python(payload)
    starts = [p["index"] for n, p in rendered if n == "content_block_start"]
    stops = [p["index"] for n, p in rendered if n == "content_block_stop"]
    assert starts == stops == [0, 1, 2]
    assert rendered[0][1]["message"]["usage"]["input_tokens"] == 30
    assert [n for n, _ in rendered[-2:]] == ["message_delta", "message_stop"]


def test_the_sdk_assembles_an_upstream_stream_passed_through_the_codec():
    message = sdk_final_message(render_stream(parse_stream(UPSTREAM_STREAM)))
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert (message.content[0].thinking, message.content[0].signature) == (SIGNED["thinking"], SIGNED["signature"])
    assert message.content[1].text == "Checking."
    assert (message.content[2].id, message.content[2].input) == ("toolu_1", {"city": "Paris"})
    assert (message.id, message.stop_reason) == ("msg_gw1", "tool_use")
    usage = message.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens,
            usage.cache_creation_input_tokens) == (10, 30, 100, 5)


def test_the_sdk_assembles_a_non_streamed_answer_replayed_as_a_stream():
    resp = Response(parts=[TextPart("Hi "), ToolCallPart("call_7", "f", '{"x": [1]}')], stop_reason="tool_use",
                    usage=Usage(input_tokens=12, output_tokens=4))
    message = sdk_final_message(render_stream(response_events(resp)))
    assert message.content[0].text == "Hi "
    assert (message.content[1].id, message.content[1].input) == ("toolu_call_7", {"x": [1]})
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 4)


def test_fail_makes_the_sdk_raise():
    renderer = StreamRenderer(CTX)
    rendered = renderer.feed(StreamEvent("text", index=0, text="partial"))
    rendered += renderer.fail("Upstream exploded", "overloaded_error")
    assert renderer.close() == []
    with pytest.raises(anthropic.APIError, match="Upstream exploded"):
        sdk_final_message(rendered)
