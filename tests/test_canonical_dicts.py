"""Canonical messages as the stored threads keep them: every part type read back as it was written, empty
optional fields left out, and a dict that shares no list or dict with the part it was made from."""
from __future__ import annotations

import json

from service.gateway.canonical import (
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    ServerToolPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    part_to_dict,
)


def every_part() -> list:
    return [
        TextPart("hello", annotations=[{"type": "url_citation", "url": "https://x.test", "start_index": 0,
                                        "end_index": None}]),
        TextPart("no", refusal=True),
        ImagePart(url="https://x.test/a.png", detail="low"),
        FilePart(data="JVBERi0=", media_type="application/pdf", filename="a.pdf"),
        ToolCallPart(id="call_1", name="get", arguments='{"q": 1}', kind="custom_tool_call"),
        ToolResultPart(call_id="call_1", content=[TextPart("42"), ImagePart(file_id="file-1")], is_error=True,
                       name="get"),
        ToolResultPart(call_id="call_2", content="plain"),
        ReasoningPart(text="thinking", signature="sig", id="rs_1"),
        ServerToolPart(id="srv_1", name="web_search", input={"query": "x", "nested": {"a": [1]}},
                       sources=[{"url": "https://x.test", "title": "X"}]),
    ]


def test_every_part_reads_back_as_it_was_written_through_json():
    message = Message(role="assistant", parts=every_part())
    stored = json.loads(json.dumps(message.to_dict()))
    assert Message.from_dict(stored) == message


def test_empty_optional_fields_are_left_out_at_every_depth():
    result = part_to_dict(ToolResultPart(call_id="c", content=[ImagePart(file_id="file-1")]))
    assert result == {"call_id": "c", "content": [{"file_id": "file-1", "type": "image"}], "is_error": False,
                      "type": "tool_result"}
    assert part_to_dict(ImagePart(url="https://x.test/a.png")) == {"url": "https://x.test/a.png", "type": "image"}


def test_the_dict_shares_no_container_with_its_part():
    tool = ServerToolPart(id="srv_1", name="web_search", input={"nested": {"a": [1]}}, sources=[{"url": "u"}])
    text = TextPart("t", annotations=[{"url": "u"}])
    tool_dict, text_dict = part_to_dict(tool), part_to_dict(text)
    tool_dict["input"]["nested"]["a"].append(2)
    tool_dict["sources"][0]["url"] = "changed"
    text_dict["annotations"].clear()
    assert tool.input == {"nested": {"a": [1]}} and tool.sources == [{"url": "u"}]
    assert text.annotations == [{"url": "u"}]


def test_by_reference_keeps_only_the_file_id_of_inlined_content_also_inside_tool_results():
    inlined = ImagePart(url="data:image/png;base64,AAAA", inlined_from="file-9", detail="high")
    result = ToolResultPart(call_id="c", content=[inlined])
    assert part_to_dict(result, by_reference=True)["content"] == [{"type": "image", "file_id": "file-9",
                                                                   "detail": "high"}]
    assert part_to_dict(result)["content"][0]["url"] == "data:image/png;base64,AAAA"
