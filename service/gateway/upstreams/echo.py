"""The built-in offline provider: answers deterministically from the input, priced at zero.

Without tools it echoes the last user text. With tools and a fresh user turn
it calls a tool (the one `tool_choice` names, else the first) with arguments
filled from the user text; after a tool result it reports what the tool said.
"""
from __future__ import annotations

import json
from typing import Iterator

from ..canonical import (
    STOP_END_TURN,
    STOP_MAX_TOKENS,
    STOP_TOOL_USE,
    Request,
    Response,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
    response_events,
)
from ..catalog import AccountInfo
from ..tokens import estimate_request, estimate_text


def _last_user_text(request: Request) -> str:
    for message in reversed(request.messages):
        if message.role == "user" and message.text():
            return message.text()
    return ""


def _tool_results(request: Request) -> list:
    if not request.messages or request.messages[-1].role != "user":
        return []
    return [p for p in request.messages[-1].parts if isinstance(p, ToolResultPart)]


def _arguments_for(schema: dict, text: str) -> dict:
    """Arguments that satisfy the required properties of a JSON schema, filled from `text`."""
    props = (schema or {}).get("properties") or {}
    args = {}
    for name in (schema or {}).get("required") or list(props)[:1]:
        kind = (props.get(name) or {}).get("type", "string")
        args[name] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(kind, text)
    return args


class EchoUpstream:
    provider = "echo"
    wire_name = "echo"
    wire = None

    def __init__(self, account: AccountInfo):
        self.account = account

    def complete(self, request: Request) -> Response:
        """The whole answer at once."""
        response = Response(model=request.model)
        results = _tool_results(request)
        wants_tool = request.tools and not results and request.tool_choice != "none"
        if wants_tool:
            tool = request.tools[0]
            if isinstance(request.tool_choice, dict):
                tool = next((t for t in request.tools if t.name == request.tool_choice.get("name")), tool)
            args = _arguments_for(tool.parameters, _last_user_text(request))
            response.parts.append(ToolCallPart(id=f"call_echo{len(request.messages)}", name=tool.name,
                                               arguments=json.dumps(args)))
            response.stop_reason = STOP_TOOL_USE
        else:
            if results:
                text = "Echo: the tool said: " + " | ".join(r.text() for r in results)
            else:
                text = "Echo: " + (_last_user_text(request) or "(nothing to echo)")
            words = text.split(" ")
            limit = request.max_output_tokens
            if limit is not None and len(words) > limit:
                words = words[:max(1, limit)]
                response.stop_reason = STOP_MAX_TOKENS
            else:
                response.stop_reason = STOP_END_TURN
            response.parts.append(TextPart(text=" ".join(words)))
        output = sum(estimate_text(p.text) if isinstance(p, TextPart) else estimate_text(p.arguments) + 3
                     for p in response.parts)
        response.usage = Usage(input_tokens=estimate_request(request), output_tokens=output)
        return response

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        """The same answer as events, text word by word."""
        for event in response_events(self.complete(request)):
            if event.type == "text":
                words = event.text.split(" ")
                for i, word in enumerate(words):
                    yield StreamEvent("text", index=event.index, text=word if i == len(words) - 1 else word + " ")
            else:
                yield event
