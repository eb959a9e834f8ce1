"""Usage in the shapes providers report it, and stream blocks the Anthropic parser does not know: pure codec checks."""
from __future__ import annotations

import json

from service.gateway.canonical import ReasoningPart
from service.gateway.codecs import anthropic, openai_chat, openai_responses
from service.gateway.codecs.opaque_reasoning import unwrap, wrap


def test_zero_usage_is_reported_and_missing_usage_is_not():
    assert openai_chat.reported_usage({"prompt_tokens": 0, "completion_tokens": 0}).reported
    assert not openai_chat.reported_usage(None).reported
    assert openai_responses.reported_usage({"input_tokens": 0, "output_tokens": 0}).reported
    assert not openai_responses.reported_usage(None).reported
    assert anthropic.reported_usage({"input_tokens": 0, "output_tokens": 0}).reported


def test_reasoning_beside_completion_tokens_is_output_and_reasoning_inside_is_not_counted_twice():
    beside = openai_chat.reported_usage({"prompt_tokens": 40, "completion_tokens": 2, "total_tokens": 382,
                                         "completion_tokens_details": {"reasoning_tokens": 340}})
    assert (beside.output_tokens, beside.reasoning_tokens) == (342, 340)
    inside = openai_chat.reported_usage({"prompt_tokens": 40, "completion_tokens": 400, "total_tokens": 440,
                                         "completion_tokens_details": {"reasoning_tokens": 340}})
    assert inside.output_tokens == 400


def test_other_servers_cache_figures_are_cache_reads_and_writes():
    deepseek = openai_chat.reported_usage({"prompt_tokens": 100, "completion_tokens": 5,
                                           "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36})
    assert deepseek.cached_tokens == 64
    proxied = {"prompt_tokens": 100, "completion_tokens": 5, "cache_read_input_tokens": 10,
               "cache_creation_input_tokens": 20}
    assert openai_chat.reported_usage(proxied).cached_tokens == 10
    assert openai_chat._openai_shaped(proxied)["prompt_tokens_details"]["cache_write_tokens"] == 20


def test_every_iteration_is_billed():
    usage = anthropic.reported_usage({"input_tokens": 682, "output_tokens": 1320, "iterations": [
        {"type": "compaction", "input_tokens": 60385, "output_tokens": 592},
        {"type": "message", "input_tokens": 682, "output_tokens": 1320}]})
    assert (usage.input_tokens, usage.output_tokens) == (61067, 1912)


def test_server_web_searches_are_counted():
    assert anthropic.reported_usage({"input_tokens": 1, "output_tokens": 1,
                                     "server_tool_use": {"web_search_requests": 3}}).web_search_requests == 3
    searches = [{"type": "web_search_call", "id": "ws_1"}, {"type": "web_search_call", "id": "ws_2"}]
    assert openai_responses.reported_usage({"input_tokens": 1}, searches).web_search_requests == 2


def feed(parser, events: list) -> list:
    return [e for name, payload in events for e in parser.feed(name, json.dumps(payload))]


def test_deltas_of_a_block_type_the_parser_does_not_know_make_no_tool_call():
    events = feed(anthropic.StreamParser(), [
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "mcp_tool_use", "id": "mcptoolu_1", "name": "ask",
                                                   "server_name": "wiki", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "input_json_delta", "partial_json": "{\"q\": 1}"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ])
    assert events == []


def test_a_whole_message_in_message_start_is_a_complete_stream():
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
               "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
               "usage": {"input_tokens": 5, "output_tokens": 3}}
    events = feed(anthropic.StreamParser(), [("message_start", {"type": "message_start", "message": message}),
                                             ("message_stop", {"type": "message_stop"})])
    kinds = [(e.type, e.name or e.text or e.stop_reason) for e in events if e.type != "usage"]
    assert kinds == [("tool_call", "f"), ("tool_args", '{"a": 1}'), ("part_end", None), ("finish", "tool_use")]


def test_message_stop_ends_a_stream_without_a_stop_reason():
    events = feed(anthropic.StreamParser(), [("message_stop", {"type": "message_stop"})])
    assert [e.type for e in events] == ["finish"]


def test_the_reasoning_envelope_gives_back_what_it_carries():
    signed = ReasoningPart(text="thought", signature="sig")
    assert unwrap(wrap(signed)) == signed
    encrypted = ReasoningPart(encrypted_content="gAAA", id="rs_1")
    assert unwrap(wrap(encrypted), "summary") == ReasoningPart(text="summary", encrypted_content="gAAA", id="rs_1")
    assert unwrap("EqQBCgIYAhIM") is None, "a provider's own signature is not ours"
