"""The OpenAI Responses codec: pure conversions, checked against the official openai SDK's own types."""
from __future__ import annotations

import json

import openai
import pydantic
import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent

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
from service.gateway.codecs import openai_responses as codec

try:  # the openai SDK in this venv is built on httpx2; older ones on httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx


def ctx(**request_body) -> RenderContext:
    return RenderContext(response_id="resp_test1", model="gpt-test", created_at=1_700_000_000,
                         request_body=request_body)


def answer(*parts, stop="end_turn", usage=None) -> Response:
    return Response(id="up_1", model="up-model", parts=list(parts), stop_reason=stop,
                    usage=usage or Usage(input_tokens=12, output_tokens=5, cached_tokens=2, reasoning_tokens=1))


# ---------------------------------------------------------------- input normalization
def test_string_input_becomes_one_user_message():
    [item] = codec.input_items({"input": "hello"})
    assert item["type"] == "message" and item["role"] == "user" and item["status"] == "completed"
    assert item["id"].startswith("msg_")
    assert item["content"] == [{"type": "input_text", "text": "hello"}]


def test_list_input_gets_ids_status_and_parts():
    items = codec.input_items({"input": [
        {"role": "developer", "content": "be brief"},
        {"role": "assistant", "content": "earlier answer"},
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "id": "fc_keep", "call_id": "call_2", "name": "g"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ]})
    prefixes = ["msg_", "msg_", "fc_", "fc_keep", "fco_"]
    assert all(i["id"].startswith(p) for i, p in zip(items, prefixes))
    assert items[3]["id"] == "fc_keep" and items[3]["arguments"] == ""
    assert all(i["status"] == "completed" for i in items)
    assert items[0]["content"] == [{"type": "input_text", "text": "be brief"}]
    assert items[1]["content"][0]["type"] == "output_text"


def test_unknown_item_types_are_dropped_and_references_kept():
    items = codec.input_items({"input": [
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "item_reference", "id": "msg_old"},
        {"id": "msg_older"},
        {"role": "user", "content": "hi"},
    ]})
    assert [i["type"] for i in items] == ["item_reference", "item_reference", "message"]
    assert items[0] == {"type": "item_reference", "id": "msg_old"}


def test_missing_or_empty_input_is_allowed():
    assert codec.input_items({}) == [] and codec.input_items({"input": []}) == []


@pytest.mark.parametrize("value, param", [
    (42, "input"),
    ({"role": "user"}, "input"),
    (["hi"], "input[0]"),
    ([{"type": 3}], "input[0].type"),
    ([{"foo": "bar"}], "input[0].type"),
    ([{"role": "robot", "content": "x"}], "input[0].role"),
    ([{"role": "user", "content": 5}], "input[0].content"),
    ([{"role": "user", "content": ["x"]}], "input[0].content[0]"),
    ([{"type": "function_call", "name": "f"}], "input[0].call_id"),
    ([{"type": "function_call_output", "call_id": "c"}], "input[0].output"),
])
def test_bad_input_shapes_raise_with_param(value, param):
    with pytest.raises(CodecError) as err:
        codec.input_items({"input": value})
    assert err.value.param == param


# ---------------------------------------------------------------- items to messages
def test_function_calls_and_outputs_merge_into_turns():
    items = codec.input_items({"input": [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "two cities"}],
         "encrypted_content": "enc"},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "rain"}]},
        {"type": "item_reference", "id": "msg_x"},
    ]})
    user, assistant, results = codec.items_to_messages(items)
    assert user.role == "user" and user.text() == "weather in Paris and Rome?"
    assert assistant.role == "assistant"
    assert [type(p) for p in assistant.parts] == [ReasoningPart, TextPart, ToolCallPart, ToolCallPart]
    assert assistant.parts[0] == ReasoningPart(text="two cities", encrypted_content="enc", id="rs_1")
    assert assistant.parts[3].arguments_object() == {"city": "Rome"}
    assert results.role == "user"
    assert results.parts == [ToolResultPart(call_id="c1", content="sunny", name="weather"),
                             ToolResultPart(call_id="c2", content=[TextPart("rain")], name="weather")]


def test_content_parts_become_canonical_parts():
    items = codec.input_items({"input": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": [
            {"type": "input_text", "text": "look"},
            {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
            {"type": "input_image", "file_id": "file-img"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
            {"type": "input_file", "file_data": "aGVsbG8=", "filename": "notes.txt"},
            {"type": "input_file", "file_url": "https://x/doc.pdf"},
            {"type": "input_audio", "input_audio": {}},
        ]},
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
    ]})
    system, user, assistant = codec.items_to_messages(items)
    assert system == Message(role="system", parts=[TextPart("sys")])
    assert user.parts == [
        TextPart("look"),
        ImagePart(url="https://x/cat.png", detail="low"),
        ImagePart(file_id="file-img"),
        FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
        FilePart(data="aGVsbG8=", media_type="text/plain", filename="notes.txt"),
        FilePart(url="https://x/doc.pdf"),
    ]
    assert assistant.parts == [TextPart("no")]


# ---------------------------------------------------------------- requests
FULL_REQUEST = {
    "model": "gpt-test",
    "instructions": "You are terse.",
    "input": [{"role": "user", "content": "hi"}],
    "tools": [
        {"type": "function", "name": "weather", "description": "Weather", "strict": True,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "web_search"},
    ],
    "tool_choice": {"type": "function", "name": "weather"},
    "parallel_tool_calls": False,
    "max_output_tokens": 300,
    "temperature": 0.5,
    "top_p": 1,
    "stream": True,
    "metadata": {"k": "v"},
    "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
    "reasoning": {"effort": "low", "summary": "auto"},
    "user": "u1",
    # agent and storage fields the codec ignores
    "store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k", "truncation": "auto",
    "client_metadata": {"x": 1}, "service_tier": "flex", "safety_identifier": "s", "previous_response_id": "resp_0",
}


def test_parse_request_reads_every_field_and_ignores_agent_fields():
    req = codec.parse_request(FULL_REQUEST)
    assert req.model == "gpt-test" and req.system == "You are terse."
    assert req.messages == [Message("user", [TextPart("hi")])]
    assert req.tools == [ToolSpec("weather", "Weather", FULL_REQUEST["tools"][0]["parameters"])]
    assert req.tool_choice == {"name": "weather"}
    assert (req.parallel_tool_calls, req.max_output_tokens, req.temperature, req.top_p) == (False, 300, 0.5, 1.0)
    assert req.stream is True and req.metadata == {"k": "v"} and req.user == "u1"
    assert req.response_format == {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
    assert req.reasoning == {"effort": "low", "summary": "auto"}


def test_parse_request_defaults_and_plain_text_format():
    req = codec.parse_request({"model": "m", "text": {"format": {"type": "text"}}, "tool_choice": "required"})
    assert req.messages == [] and req.response_format is None and req.tool_choice == "required"
    assert codec.parse_request({"model": "m", "text": {"format": {"type": "json_object"}}}).response_format == {
        "type": "json_object"}


@pytest.mark.parametrize("patch, param", [
    ({"model": None}, "model"),
    ({"model": 5}, "model"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"top_p": []}, "top_p"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": 2.5}, "max_output_tokens"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tool_choice": "always"}, "tool_choice"),
    ({"instructions": ["x"]}, "instructions"),
    ({"stream": "yes"}, "stream"),
    ({"metadata": "x"}, "metadata"),
    ({"metadata": {"n": 1}}, "metadata"),
    ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"reasoning": "high"}, "reasoning"),
    ({"input": 3}, "input"),
])
def test_parse_request_rejects_wrong_types_with_param(patch, param):
    with pytest.raises(CodecError) as err:
        codec.parse_request({"model": "m", "input": "hi", **patch})
    assert err.value.param == param


def test_render_request_for_a_responses_upstream():
    req = Request(
        model="alias", system="sys", stream=True, max_output_tokens=100, tool_choice={"name": "f"},
        tools=[ToolSpec("f", "F", {"type": "object", "properties": {}})],
        response_format={"type": "json_object"}, reasoning={"effort": "high"},
        messages=[
            Message("system", [TextPart("mid-conversation rule")]),
            Message("user", [TextPart("see"), ImagePart(url="data:image/png;base64,iVBO"),
                             FilePart(data="JVBERi0=", media_type="application/pdf")]),
            Message("assistant", [ReasoningPart(text="thought", signature="anthropic-sig"),
                                  ReasoningPart(text="s", encrypted_content="enc", id="rs_1"),
                                  TextPart("calling"), ToolCallPart("c1", "f", '{"a":1}')]),
            Message("user", [ToolResultPart("c1", "ok"), TextPart("thanks")]),
        ],
    )
    body = codec.render_request(req, "gpt-real")
    assert body["model"] == "gpt-real" and body["instructions"] == "sys" and body["store"] is False
    assert body["tool_choice"] == {"type": "function", "name": "f"}
    assert body["tools"] == [{"type": "function", "name": "f", "description": "F",
                              "parameters": {"type": "object", "properties": {}}}]
    assert body["text"] == {"format": {"type": "json_object"}} and body["reasoning"] == {"effort": "high"}
    assert "temperature" not in body and "user" not in body
    assert [i["type"] for i in body["input"]] == [
        "message", "message", "reasoning", "message", "function_call", "function_call_output", "message"]
    system, user, reasoning, said, call, result, thanks = body["input"]
    assert system["role"] == "system"
    assert user["content"] == [
        {"type": "input_text", "text": "see"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"},
        {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "document.pdf"},
    ]
    assert reasoning == {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "s"}],
                         "encrypted_content": "enc"}
    assert said["role"] == "assistant" and said["content"][0]["type"] == "output_text"
    assert call == {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'}
    assert result == {"type": "function_call_output", "call_id": "c1", "output": "ok"}
    assert thanks["content"] == [{"type": "input_text", "text": "thanks"}]


def test_request_round_trip_keeps_the_conversation():
    body = {"model": "m", "instructions": "sys", "input": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"role": "developer", "content": "rule"},
    ], "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}], "tool_choice": "auto"}
    first = codec.parse_request(body)
    again = codec.parse_request(codec.render_request(first, "m"))
    assert again.messages == first.messages and again.system == "sys"
    assert again.tools == first.tools and again.tool_choice == "auto"


# ---------------------------------------------------------------- responses
UPSTREAM_RESPONSE = {
    "id": "resp_up", "object": "response", "created_at": 1, "status": "completed", "model": "gpt-real",
    "output": [
        {"type": "reasoning", "id": "rs_9", "summary": [{"type": "summary_text", "text": "a"},
                                                         {"type": "summary_text", "text": "b"}],
         "encrypted_content": "enc"},
        {"type": "message", "id": "msg_9", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello", "annotations": []}]},
        {"type": "function_call", "id": "fc_9", "call_id": "call_9", "name": "f", "arguments": "{}"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ],
    "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 9,
              "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 29},
}


def test_parse_response_reads_parts_stop_reason_and_usage():
    resp = codec.parse_response(UPSTREAM_RESPONSE)
    assert resp.parts == [ReasoningPart(text="a\n\nb", encrypted_content="enc", id="rs_9"), TextPart("Hello"),
                          ToolCallPart("call_9", "f", "{}"), ServerToolPart(id="ws_1", name="web_search")]
    assert resp.stop_reason == "tool_use" and resp.model == "gpt-real"
    assert resp.usage == Usage(input_tokens=20, output_tokens=9, cached_tokens=4, reasoning_tokens=3,
                              web_search_requests=1)  # its web_search_call item ran one search


@pytest.mark.parametrize("status, reason, stop", [
    ("completed", None, "end_turn"),
    ("incomplete", "max_output_tokens", "max_tokens"),
    ("incomplete", "content_filter", "refusal"),
])
def test_parse_response_stop_reasons(status, reason, stop):
    body = {"object": "response", "status": status, "output": [],
            "incomplete_details": {"reason": reason} if reason else None}
    assert codec.parse_response(body).stop_reason == stop


@pytest.mark.parametrize("body", [[], {"object": "chat.completion", "choices": []}, {"object": "response"}])
def test_parse_response_rejects_other_objects(body):
    with pytest.raises(CodecError):
        codec.parse_response(body)


def test_output_items_merge_consecutive_text():
    items = codec.output_items(answer(TextPart("a"), TextPart("b"), ToolCallPart("c1", "f", "{}"),
                                      ReasoningPart(text="r", encrypted_content="e")))
    message, call, reasoning = items
    assert message["id"].startswith("msg_") and message["content"][0]["text"] == "ab"
    assert call["id"].startswith("fc_") and call["call_id"] == "c1" and call["status"] == "completed"
    assert reasoning["id"].startswith("rs_") and reasoning["encrypted_content"] == "e"


def test_render_response_validates_with_the_sdk_and_echoes_the_request():
    resp = answer(ReasoningPart(text="why"), TextPart("Hi!"), ToolCallPart("call_1", "f", '{"x":1}'),
                  stop="tool_use")
    context = ctx(**FULL_REQUEST)
    context.extra = {"previous_response_id": "resp_prev", "conversation": "conv_1", "store": True}
    body = codec.render_response(resp, context)
    sdk = SDKResponse.model_validate(body)
    assert sdk.id == "resp_test1" and sdk.status == "completed" and sdk.output_text == "Hi!"
    assert sdk.usage.total_tokens == 17 and sdk.usage.input_tokens_details.cached_tokens == 2
    assert sdk.previous_response_id == "resp_prev" and sdk.conversation.id == "conv_1" and sdk.store is True
    assert sdk.instructions == "You are terse." and sdk.max_output_tokens == 300 and sdk.temperature == 0.5


def test_render_response_defaults_and_incomplete():
    body = codec.render_response(answer(TextPart("cut"), stop="max_tokens"),
                                 ctx(model="m", input="x", temperature=None, tool_choice=None))
    sdk = SDKResponse.model_validate(body)
    assert sdk.status == "incomplete" and sdk.incomplete_details.reason == "max_output_tokens"
    assert (body["tools"], body["tool_choice"], body["metadata"], body["store"]) == ([], "auto", {}, True)
    assert body["text"] == {"format": {"type": "text"}} and body["truncation"] == "disabled"
    assert body["temperature"] == 1.0 and body["reasoning"] == {"effort": None, "summary": None}
    refused = codec.render_response(answer(stop="refusal"), ctx())
    assert refused["incomplete_details"] == {"reason": "content_filter"}
    in_progress = SDKResponse.model_validate(codec.render_in_progress(ctx()))
    assert in_progress.status == "in_progress" and in_progress.output == [] and in_progress.usage is None


# ---------------------------------------------------------------- streams
def sse(events: list[tuple[str, dict]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


UPSTREAM_STREAM = [
    ("response.created", {"type": "response.created", "response": {"id": "resp_up", "status": "in_progress"}}),
    ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": {
        "type": "message", "id": "msg_1", "role": "assistant", "status": "in_progress", "content": []}}),
    ("response.content_part.added", {"type": "response.content_part.added", "output_index": 0,
                                     "content_index": 0, "part": {"type": "output_text", "text": ""}}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0, "delta": "Let me "}),
    ("response.output_text.delta", {"type": "response.output_text.delta", "output_index": 0, "delta": "check."}),
    ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": {
        "type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "Let me check."}]}}),
    ("response.output_item.added", {"type": "response.output_item.added", "output_index": 1, "item": {
        "type": "function_call", "id": "fc_1", "call_id": "call_A", "name": "weather", "arguments": ""}}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "output_index": 1, "delta": '{"city":'}),
    ("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                "output_index": 1, "delta": '"Paris"}'}),
    ("response.output_item.done", {"type": "response.output_item.done", "output_index": 1, "item": {
        "type": "function_call", "call_id": "call_A", "name": "weather", "arguments": '{"city":"Paris"}'}}),
    ("response.completed", {"type": "response.completed", "response": {
        "id": "resp_up", "status": "completed", "output": [],
        "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10}, "output_tokens": 12,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 42}}}),
]


def parse_stream(events) -> tuple[ResponseBuilder, list[StreamEvent]]:
    parser, builder, seen = codec.StreamParser(), ResponseBuilder(), []
    for name, data in events:
        for ev in parser.feed(name, json.dumps(data)):
            seen.append(ev)
            builder.feed(ev)
    for ev in parser.close():
        builder.feed(ev)
    return builder, seen


def test_stream_parser_reads_text_tool_call_and_usage():
    builder, seen = parse_stream(UPSTREAM_STREAM)
    resp = builder.response
    assert resp.parts == [TextPart("Let me check."), ToolCallPart("call_A", "weather", '{"city":"Paris"}')]
    assert resp.stop_reason == "tool_use" and builder.finished
    assert resp.usage == Usage(input_tokens=30, output_tokens=12, cached_tokens=10)
    assert [e.type for e in seen].count("part_end") == 2
    assert {e.index for e in seen if e.type == "tool_args"} == {1}


def test_stream_parser_takes_arguments_and_reasoning_from_done_items():
    builder, _ = parse_stream([
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0,
                                        "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        ("response.reasoning_summary_text.delta", {"type": "response.reasoning_summary_text.delta",
                                                   "output_index": 0, "summary_index": 0, "delta": "hmm"}),
        ("response.reasoning_summary_part.added", {"type": "response.reasoning_summary_part.added",
                                                   "output_index": 0, "summary_index": 1}),
        ("response.reasoning_summary_text.delta", {"type": "response.reasoning_summary_text.delta",
                                                   "output_index": 0, "summary_index": 1, "delta": "ok"}),
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 1, "item": {
            "type": "function_call", "call_id": "call_B", "name": "f", "arguments": '{"a":1}'}}),
        ("response.incomplete", {"type": "response.incomplete", "response": {
            "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}}),
    ])
    assert builder.response.parts == [ReasoningPart(text="hmm\n\nok"), ToolCallPart("call_B", "f", '{"a":1}')]
    assert builder.response.stop_reason == "max_tokens"


def test_stream_parser_reports_failures_and_bad_json():
    parser = codec.StreamParser()
    [failed] = parser.feed("response.failed", json.dumps({"type": "response.failed", "response": {
        "status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow down"}}}))
    assert (failed.type, failed.text, failed.error_type) == ("error", "slow down", "rate_limit_exceeded")
    [error] = parser.feed("error", json.dumps({"type": "error", "code": "bad", "message": "boom"}))
    assert (error.text, error.error_type) == ("boom", "bad")
    assert parser.feed(None, "[DONE]") == [] and parser.close() == []
    with pytest.raises(CodecError):
        parser.feed("response.output_text.delta", "{not json")


def render_stream(resp: Response, context: RenderContext) -> tuple[codec.StreamRenderer, list]:
    renderer = codec.StreamRenderer(context)
    out = []
    for ev in response_events(resp):
        out += renderer.feed(ev)
    return renderer, out + renderer.close()


def test_stream_renderer_emits_the_documented_event_order():
    resp = answer(TextPart("Hi"), ToolCallPart("call_1", "f", '{"a":1}'), stop="tool_use")
    renderer, events = render_stream(resp, ctx(model="m", input="x"))
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == name for name, data in events)
    final = SDKResponse.model_validate(events[-1][1]["response"])
    assert [item.type for item in final.output] == ["message", "function_call"]
    assert final.output[0].id == events[2][1]["item"]["id"]
    assert renderer.final_response().parts == resp.parts
    assert renderer.final_response().usage == resp.usage


def test_every_streamed_event_validates_as_an_sdk_stream_event():
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    resp = answer(ReasoningPart(text="hmm"), TextPart("Hi"), ToolCallPart("call_1", "f", "{}"), stop="tool_use")
    _, events = render_stream(resp, ctx(**FULL_REQUEST))
    for _, data in events:
        adapter.validate_python(data)
    renderer = codec.StreamRenderer(ctx())
    failed = renderer.feed(StreamEvent("tool_call", index=0, name="f")) + renderer.fail("boom", "rate_limit_error")
    for _, data in failed:
        adapter.validate_python(data)
    assert failed[-1][1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_stream_renderer_round_trips_through_the_stream_parser():
    resp = answer(ReasoningPart(text="think"), TextPart("Hello"), ToolCallPart("call_1", "f", "{}"), stop="tool_use")
    _, events = render_stream(resp, ctx())
    builder, _ = parse_stream(events)
    assert builder.response.parts == resp.parts
    assert builder.response.stop_reason == "tool_use" and builder.response.usage == resp.usage


def test_stream_renderer_ends_with_incomplete_for_max_tokens():
    _, events = render_stream(answer(TextPart("cut"), stop="max_tokens"), ctx())
    name, data = events[-1]
    assert name == "response.incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# ---------------------------------------------------------------- the real SDK as client
def sdk_client(body: bytes, seen: list | None = None) -> openai.OpenAI:
    def handler(request):
        if seen is not None:
            seen.append(json.loads(request.content))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return openai.OpenAI(http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                         base_url="http://test/v1", api_key="x", max_retries=0)


def test_sdk_stream_helper_assembles_the_final_response():
    resp = answer(ReasoningPart(text="plan"), TextPart("Sunny "), TextPart("today."),
                  ToolCallPart("call_7", "weather", '{"city":"Paris"}'), stop="tool_use")
    _, events = render_stream(resp, ctx(model="gpt-test", input="weather?"))
    seen: list = []
    client = sdk_client(sse(events), seen)
    with client.responses.stream(model="gpt-test", input="weather?") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert seen[0]["stream"] is True and deltas == ["Sunny ", "today."]
    assert final.id == "resp_test1" and final.output_text == "Sunny today."
    [call] = [item for item in final.output if item.type == "function_call"]
    assert (call.call_id, call.name, call.arguments) == ("call_7", "weather", '{"city":"Paris"}')
    assert final.usage.input_tokens == 12 and final.usage.output_tokens == 5 and final.usage.total_tokens == 17


def test_sdk_create_stream_iterates_typed_events():
    _, events = render_stream(answer(TextPart("Hi")), ctx())
    stream = sdk_client(sse(events)).responses.create(model="gpt-test", input="hi", stream=True)
    received = list(stream)
    assert [e.type for e in received] == [name for name, _ in events]
    assert received[-1].response.output_text == "Hi" and received[-1].response.status == "completed"


def test_fail_ends_the_stream_with_a_failed_response_the_sdk_surfaces():
    renderer = codec.StreamRenderer(ctx())
    events = renderer.feed(StreamEvent("text", index=0, text="partial"))
    events += renderer.fail("upstream exploded", "upstream_error")
    assert renderer.close() == [] and renderer.feed(StreamEvent("text", text="late")) == []
    name, data = events[-1]
    assert name == "response.failed" and data["response"]["error"]["code"] == "server_error"
    received = list(sdk_client(sse(events)).responses.create(model="gpt-test", input="hi", stream=True))
    assert received[-1].type == "response.failed"
    assert received[-1].response.error.message == "upstream exploded"
    assert received[-1].response.status == "failed"
    SDKResponse.model_validate(data["response"])
    with sdk_client(sse(events)).responses.stream(model="gpt-test", input="hi") as stream:
        with pytest.raises(RuntimeError):
            stream.get_final_response()
