"""Pure tests of the OpenAI Chat Completions codec, checked against the official openai SDK."""
import json

import httpx2  # the openai SDK in this venv is built on httpx2 (httpx's successor), not httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from service.gateway.canonical import (
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    RenderContext,
    Request,
    Response,
    ResponseBuilder,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
    response_events,
)
from service.gateway.codecs import CodecError
from service.gateway.codecs.openai_chat import (
    StreamParser,
    StreamRenderer,
    parse_request,
    parse_response,
    render_request,
    render_response,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def ctx(include_usage: bool = False) -> RenderContext:
    return RenderContext(
        response_id="chatcmpl-abc123", model="gpt-test", created_at=1_700_000_000, include_usage=include_usage
    )


def weather_call(call_id: str, city: str) -> dict:
    arguments = json.dumps({"city": city}, separators=(",", ":"))
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def tool_history_body() -> dict:
    return {
        "model": "gpt-test",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [weather_call("call_1", "Paris"), weather_call("call_2", "Rome")],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "22C clear"}]},
            {"role": "user", "content": "Thanks. Which is warmer?"},
        ],
        "tools": [WEATHER_TOOL],
    }


# ---------------------------------------------------------------- parse_request
def test_leading_system_and_developer_messages_join_into_system():
    req = parse_request({
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "system", "content": "Now be verbose."},
        ],
    })
    assert req.system == "Be brief.\n\nAnswer in French."
    assert req.messages == [
        Message(role="user", parts=[TextPart(text="Hi")]),
        Message(role="system", parts=[TextPart(text="Now be verbose.")]),
    ]


def test_user_content_parts_become_canonical_parts():
    req = parse_request({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.png", "detail": "low"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_data": "JVBERi0=", "filename": "b.pdf"}},
            {"type": "file", "file": {"file_id": "file-123"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        ]}],
    })
    assert req.messages[0].parts == [
        TextPart(text="Look:"),
        ImagePart(url="https://x.test/cat.png", detail="low"),
        FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
        FilePart(data="JVBERi0=", media_type="application/pdf", filename="b.pdf"),
        FilePart(file_id="file-123"),
    ]


def test_assistant_reasoning_text_and_tool_calls_in_order():
    req = parse_request({"model": "m", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "reasoning_content": "thinking…", "content": "Let me check.",
         "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
    ]})
    assert req.messages[1].parts == [
        ReasoningPart(text="thinking…"),
        TextPart(text="Let me check."),
        ToolCallPart(id="call_9", name="f", arguments="{}"),
    ]


def test_consecutive_tool_messages_become_one_user_message():
    req = parse_request(tool_history_body())
    assert [m.role for m in req.messages] == ["user", "assistant", "user", "user"]
    assert req.messages[2].parts == [
        ToolResultPart(call_id="call_1", content="18C sunny", name="get_weather"),
        ToolResultPart(call_id="call_2", content="22C clear", name="get_weather"),
    ]
    assert req.tools == [ToolSpec(name="get_weather", description="Current weather",
                                  parameters=WEATHER_TOOL["function"]["parameters"])]


def test_options_map_to_canonical_fields():
    req = parse_request({
        "model": "gpt-test", "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 50, "temperature": 0.2, "top_p": 1, "stop": "END", "stream": True,
        "metadata": {"k": "v"}, "user": "u1", "parallel_tool_calls": False, "reasoning_effort": "low",
        "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {
            "type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}
        },
        "n": 1, "some_future_field": {"ignored": True}, "stream_options": {"include_usage": True},
    })
    assert (req.max_output_tokens, req.temperature, req.top_p, req.stop) == (50, 0.2, 1, ["END"])
    assert (req.stream, req.metadata, req.user, req.parallel_tool_calls) == (True, {"k": "v"}, "u1", False)
    assert req.reasoning == {"effort": "low"}
    assert req.tool_choice == {"name": "get_weather"}
    assert req.response_format == {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}


@pytest.mark.parametrize("value", ["auto", "none", "required", None])
def test_tool_choice_strings(value):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": value}
    assert parse_request(body).tool_choice == value


def test_max_completion_tokens_wins_and_text_format_is_none():
    req = parse_request({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10,
                         "max_completion_tokens": 20, "response_format": {"type": "text"}, "stop": ["a", "b"]})
    assert (req.max_output_tokens, req.response_format, req.stop) == (20, None, ["a", "b"])


OK_MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("body, param", [
    ({"messages": OK_MESSAGES}, "model"),
    ({"model": "", "messages": OK_MESSAGES}, "model"),
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": "hi"}, "messages"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": None}]}, "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url"),
    ({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]"),
    ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    ({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": "c"}]}]}, "messages[0].tool_calls[0]"),
    ({"model": "m", "messages": OK_MESSAGES, "tools": {"type": "function"}}, "tools"),
    ({"model": "m", "messages": OK_MESSAGES, "tools": [{"type": "function", "name": "f"}]}, "tools[0]"),
    ({"model": "m", "messages": OK_MESSAGES, "tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools[0]"),
    ({"model": "m", "messages": OK_MESSAGES, "tool_choice": "sometimes"}, "tool_choice"),
    ({"model": "m", "messages": OK_MESSAGES, "n": 2}, "n"),
    ({"model": "m", "messages": OK_MESSAGES, "temperature": "hot"}, "temperature"),
    ({"model": "m", "messages": OK_MESSAGES, "top_p": True}, "top_p"),
    ({"model": "m", "messages": OK_MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": OK_MESSAGES, "max_completion_tokens": "9"}, "max_completion_tokens"),
    ({"model": "m", "messages": OK_MESSAGES, "stop": [1]}, "stop"),
    ({"model": "m", "messages": OK_MESSAGES, "response_format": {"type": "yaml"}}, "response_format"),
    ({"model": "m", "messages": OK_MESSAGES, "stream": "yes"}, "stream"),
])
def test_invalid_bodies_raise_codec_error_naming_the_param(body, param):
    with pytest.raises(CodecError) as info:
        parse_request(body)
    assert info.value.param == param
    assert info.value.message


# ---------------------------------------------------------------- render_request
def test_tool_history_renders_back_to_one_tool_message_per_result():
    body = render_request(parse_request(tool_history_body()), "upstream-model")
    assert body["model"] == "upstream-model"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "tool", "user"]
    assert body["messages"][1] == tool_history_body()["messages"][1]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C sunny"}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_2", "content": "22C clear"}
    assert body["tools"] == [WEATHER_TOOL]


def test_request_round_trip_keeps_the_conversation():
    original = {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "high"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}},
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "system", "content": "Mid-conversation note."},
            *tool_history_body()["messages"][1:],
        ],
        "tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": True,
        "max_completion_tokens": 100, "temperature": 0.5, "top_p": 0.9, "stop": ["\n\n"], "user": "u",
        "response_format": {"type": "json_object"}, "reasoning_effort": "high",
    }
    original["messages"][-2]["content"] = "22C clear"  # text parts come back as a plain string
    rendered = render_request(parse_request(original), "gpt-test")
    assert rendered == original
    assert parse_request(rendered) == parse_request(original)


def test_render_request_streaming_and_formats():
    req = Request(
        model="m", stream=True, max_output_tokens=5, tool_choice={"name": "get_weather"},
        tools=[ToolSpec(name="get_weather")],
        response_format={"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": None},
        metadata={"ours": "only"},
        messages=[Message(role="user", parts=[
            TextPart(text="a"), ImagePart(file_id="file-unresolved"), FilePart(text="notes", filename="n.txt"),
        ])],
    )
    body = render_request(req, "up")
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 5
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}
    }
    text_parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "notes"}]
    assert body["messages"] == [{"role": "user", "content": text_parts}]
    assert "metadata" not in body and "temperature" not in body


def test_render_request_drops_tool_choice_without_tools_and_reasoning_parts():
    req = Request(model="m", tool_choice="auto", parallel_tool_calls=True, messages=[
        Message(role="user", parts=[TextPart(text="hi")]),
        Message(role="assistant", parts=[ReasoningPart(text="hmm", signature="sig"), TextPart(text="hello")]),
    ])
    body = render_request(req, "up")
    assert body == {
        "model": "up", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }


# ---------------------------------------------------------------- responses
@pytest.mark.parametrize("finish, stop", [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("function_call", "tool_use"), ("content_filter", "refusal"), (None, "end_turn"),
])
def test_finish_reason_to_stop_reason(finish, stop):
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}
    assert parse_response(body).stop_reason == stop


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "length"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
])
def test_stop_reason_to_finish_reason(stop, finish):
    body = render_response(Response(parts=[TextPart(text="x")], stop_reason=stop), ctx())
    assert body["choices"][0]["finish_reason"] == finish
    ChatCompletion.model_validate(body)


def test_parse_response_reads_reasoning_text_tool_calls_and_usage():
    resp = parse_response({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "reasoning_content": "Need weather.", "content": "Checking.",
            "tool_calls": [weather_call("call_1", "Oslo")],
        }}],
        "usage": {
            "prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
            "prompt_tokens_details": {"cached_tokens": 64}, "completion_tokens_details": {"reasoning_tokens": 12},
        },
    })
    assert resp.parts == [ReasoningPart(text="Need weather."), TextPart(text="Checking."),
                          ToolCallPart(id="call_1", name="get_weather", arguments='{"city":"Oslo"}')]
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=100, output_tokens=30, cached_tokens=64, reasoning_tokens=12)
    assert (resp.id, resp.model) == ("chatcmpl-up", "up-model")


def test_parse_response_without_usage_counts_zero_and_rejects_non_completions():
    choice = {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    resp = parse_response({"choices": [choice]})
    assert resp.usage == Usage() and resp.text() == "hi"
    with pytest.raises(CodecError):
        parse_response({"error": {"message": "nope"}})


def test_parse_response_reads_a_refusal_as_text_with_refusal_stop():
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    resp = parse_response({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]})
    assert resp.parts == [TextPart(text="I can't help with that.", refusal=True)] and resp.stop_reason == "refusal"


def test_render_response_is_a_valid_chat_completion():
    resp = Response(
        parts=[
            ReasoningPart(text="why"), TextPart(text="Hello"), ToolCallPart(id="call_1", name="f", arguments='{"a":1}'),
        ],
        stop_reason="tool_use", usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=4, reasoning_tokens=2),
    )
    body = render_response(resp, ctx())
    completion = ChatCompletion.model_validate(body)
    assert completion.id == "chatcmpl-abc123" and completion.created == 1_700_000_000 and completion.model == "gpt-test"
    message = completion.choices[0].message
    assert message.content == "Hello" and message.tool_calls[0].function.arguments == '{"a":1}'
    assert body["choices"][0]["message"]["reasoning_content"] == "why"
    assert completion.usage.total_tokens == 15
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2
    assert parse_response(body).parts == resp.parts


def test_render_response_content_is_null_with_only_tool_calls():
    resp = Response(parts=[ToolCallPart(id="call_1", name="f", arguments="{}")], stop_reason="tool_use")
    body = render_response(resp, ctx())
    assert body["choices"][0]["message"]["content"] is None
    assert body["choices"][0]["message"]["refusal"] is None
    ChatCompletion.model_validate(body)


# ---------------------------------------------------------------- streams
def upstream_chunk(delta: dict | None = None, finish: str | None = None, **extra) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return json.dumps({"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "up",
                       "choices": choices, **extra})


UPSTREAM_STREAM = [
    upstream_chunk({"role": "assistant", "content": ""}),
    upstream_chunk({"content": "Checking "}),
    upstream_chunk({"content": "both."}),
    upstream_chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]}),
    upstream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    upstream_chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]}),
    upstream_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    upstream_chunk({}, "tool_calls"),
    upstream_chunk(None, usage={"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70,
                                "prompt_tokens_details": {"cached_tokens": 10}}),
    "[DONE]",
]


def parse_stream(datas: list) -> list:
    parser = StreamParser()
    events = [ev for data in datas for ev in parser.feed(None, data)]
    return events + parser.close()


def test_stream_parser_reads_text_parallel_tool_calls_and_usage():
    events = parse_stream(UPSTREAM_STREAM)
    assert [(e.type, e.index) for e in events] == [
        ("text", 0), ("text", 0), ("tool_call", 1), ("tool_args", 1), ("tool_call", 2), ("tool_args", 2),
        ("tool_args", 1), ("finish", 0), ("usage", 0),
    ]
    assert events[2].call_id == "call_a" and events[2].name == "get_weather"
    builder = ResponseBuilder("chatcmpl-x", "m")
    for ev in events:
        builder.feed(ev)
    assert builder.finished and builder.error is None
    assert builder.response.parts == [
        TextPart(text="Checking both."),
        ToolCallPart(id="call_a", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCallPart(id="call_b", name="get_weather", arguments='{"city":"Rome"}'),
    ]
    assert builder.response.stop_reason == "tool_use"
    assert builder.response.usage == Usage(input_tokens=50, output_tokens=20, cached_tokens=10)


def test_stream_parser_reads_reasoning_content_errors_and_rejects_bad_json():
    events = parse_stream([upstream_chunk({"reasoning_content": "hmm"}), upstream_chunk({"content": "ok"}, "length")])
    assert [(e.type, e.index, e.text) for e in events] == [
        ("reasoning", 0, "hmm"), ("text", 1, "ok"), ("finish", 0, "")]
    assert events[-1].stop_reason == "max_tokens"
    error = StreamParser().feed(None, json.dumps({"error": {"message": "overloaded", "type": "server_error"}}))
    assert error == [StreamEvent("error", text="overloaded", error_type="server_error")]
    with pytest.raises(CodecError):
        StreamParser().feed(None, "{not json")


def render_stream(events: list, include_usage: bool = True) -> list:
    renderer = StreamRenderer(ctx(include_usage))
    return [out for ev in events for out in renderer.feed(ev)] + renderer.close()


def test_stream_renderer_chunks_follow_the_chat_shape():
    rendered = render_stream(parse_stream(UPSTREAM_STREAM))
    assert all(name is None for name, _ in rendered)
    payloads = [payload for _, payload in rendered]
    assert payloads[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(p) for p in payloads[:-1]]
    assert all(c.id == "chatcmpl-abc123" and c.object == "chat.completion.chunk" for c in chunks)
    assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(p["usage"] is None for p in payloads[:-2])
    assert payloads[-3]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}
    assert payloads[-2]["choices"] == [] and payloads[-2]["usage"]["total_tokens"] == 70
    tool_deltas = [p["choices"][0]["delta"]["tool_calls"][0] for p in payloads[:-2]
                   if "tool_calls" in p["choices"][0]["delta"]]
    assert tool_deltas[0] == {
        "index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert [d["index"] for d in tool_deltas] == [0, 0, 1, 1, 0]


def test_stream_renderer_without_include_usage_and_after_fail():
    events = [StreamEvent("text", text="hi"), StreamEvent("finish", stop_reason="end_turn")]
    plain = render_stream(events, include_usage=False)
    assert [p for _, p in plain][-1] == "[DONE]"
    assert all("usage" not in p for _, p in plain[:-1])
    renderer = StreamRenderer(ctx())
    renderer.feed(StreamEvent("text", text="partial"))
    assert renderer.fail("upstream died", "server_error") == [
        (None, {"error": {"message": "upstream died", "type": "server_error", "param": None, "code": None}})]
    assert renderer.feed(StreamEvent("text", text="more")) == [] and renderer.close() == []
    error_event = StreamEvent("error", text="boom", error_type="api_error")
    assert StreamRenderer(ctx()).feed(error_event)[0][1]["error"]["message"] == "boom"


# ---------------------------------------------------------------- the real openai SDK as client
def sse_bytes(rendered: list) -> bytes:
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for _, p in rendered
    )


def sdk_client(rendered: list) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=sse_bytes(rendered))

    http_client = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(http_client=http_client, base_url="http://test/v1", api_key="x", max_retries=0)


def test_sdk_assembles_the_rendered_stream():
    client = sdk_client(render_stream(parse_stream(UPSTREAM_STREAM)))
    with client.chat.completions.stream(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                        tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.id == "chatcmpl-abc123"
    assert message.content == "Checking both."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}'), ("call_b", "get_weather", '{"city":"Rome"}')]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (50, 20, 70)


def test_sdk_create_stream_of_a_non_streamed_answer():
    resp = Response(parts=[ReasoningPart(text="think"), TextPart(text="Hello there")], stop_reason="max_tokens",
                    usage=Usage(input_tokens=3, output_tokens=2))
    client = sdk_client(render_stream(response_events(resp)))
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.total_tokens == 5


def test_sdk_raises_on_a_failed_stream():
    renderer = StreamRenderer(ctx())
    rendered = renderer.feed(StreamEvent("text", text="partial")) + renderer.fail("upstream died", "server_error")
    client = sdk_client(rendered)
    stream = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.APIError, match="upstream died"):
        list(stream)
