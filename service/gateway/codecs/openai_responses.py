"""The OpenAI Responses format (`POST /v1/responses`) to and from the canonical turn.

Plain functions over dicts. The gateway resolves previous_response_id,
conversation, item_reference and file ids before and after; this module only converts.
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Optional

from ... import json_codec
from ...ids import random_bytes
from ..canonical import (
    STOP_END_TURN,
    STOP_MAX_TOKENS,
    STOP_PAUSE,
    STOP_REFUSAL,
    STOP_TOOL_USE,
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
)
from . import CodecError, client_calls, opaque_reasoning, sources

ITEM_ID_PREFIXES = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_", "reasoning": "rs_"}
MESSAGE_ROLES = ("user", "assistant", "system", "developer")
TOOL_CHOICES = ("auto", "none", "required")
# ResponseError.code is a closed set in the SDK; anything else is reported as server_error.
ERROR_CODES = {"server_error", "rate_limit_exceeded", "invalid_prompt", "vector_store_timeout", "invalid_image"}
ERROR_CODE_ALIASES = {"rate_limit_error": "rate_limit_exceeded", "rate_limit": "rate_limit_exceeded"}
# Request fields a response object echoes, with the value it shows when the request left them out.
ECHOED_DEFAULTS = {
    "instructions": None, "metadata": {}, "parallel_tool_calls": True, "tool_choice": "auto",
    "temperature": 1.0, "top_p": 1.0, "max_output_tokens": None, "text": {"format": {"type": "text"}},
    "reasoning": {"effort": None, "summary": None}, "truncation": "disabled",
}
# Fields a function tool object always has in the official schema (nullable, but present).
FUNCTION_TOOL_REQUIRED = {"strict": None, "parameters": None}
# OpenAI's input_file is a PDF unless its name says otherwise.
MEDIA_TYPES = {
    ".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/markdown", ".csv": "text/csv",
    ".json": "application/json", ".html": "text/html", ".png": "image/png", ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
}


def _copied(value):
    """A value of the request echoed in the response: containers copied (the response never aliases the body)."""
    return copy.deepcopy(value) if isinstance(value, (dict, list)) else value


def new_id(prefix: str) -> str:
    """A fresh id with the given prefix (`msg_`, `fc_`, `rs_`, …)."""
    return prefix + random_bytes(16).hex()


# ---------------------------------------------------------------- input items
def input_items(body: dict) -> list[dict]:
    """The request's `input` as a list of Responses items with ids and status."""
    raw = body.get("input")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise CodecError("'input' must be a string or a list of items.", "input")
    items = []
    for i, item in enumerate(raw):
        normalized = _normalize_item(item, f"input[{i}]")
        if normalized is not None:
            items.append(normalized)
    return items


def _normalize_item(item: Any, where: str) -> Optional[dict]:
    if not isinstance(item, dict):
        raise CodecError(f"'{where}' must be an object.", where)
    item = dict(item)
    kind = item.get("type")
    if kind is None:
        if "role" in item:
            kind = "message"
        elif isinstance(item.get("id"), str):
            kind = "item_reference"
        else:
            raise CodecError(f"'{where}' needs a 'type'.", f"{where}.type")
        item["type"] = kind
    if not isinstance(kind, str):
        raise CodecError(f"'{where}.type' must be a string.", f"{where}.type")
    if kind == "item_reference":
        if not isinstance(item.get("id"), str):
            raise CodecError(f"'{where}.id' must be a string.", f"{where}.id")
        return item
    prefix = ITEM_ID_PREFIXES.get(kind) or client_calls.ID_PREFIXES.get(kind)
    if prefix is None:
        return None  # server-side tool items and newer types the gateway cannot convert
    if kind == "message":
        _normalize_message(item, where)
    elif kind == "function_call":
        for key in ("call_id", "name"):
            _require_str(item, key, where)
        item["arguments"] = _optional_str(item, "arguments", where) or ""
    elif kind == "function_call_output":
        _require_str(item, "call_id", where)
        if not isinstance(item.get("output"), (str, list)):
            raise CodecError(f"'{where}.output' must be a string or a list of parts.", f"{where}.output")
    elif kind == "reasoning":
        if not isinstance(item.get("summary", []), list):
            raise CodecError(f"'{where}.summary' must be a list.", f"{where}.summary")
        item.setdefault("summary", [])
    if not item.get("id"):
        item["id"] = new_id(prefix)
    item.setdefault("status", "completed")
    return item


def _normalize_message(item: dict, where: str) -> None:
    role = item.get("role")
    if role not in MESSAGE_ROLES:
        raise CodecError(f"'{where}.role' must be one of {', '.join(MESSAGE_ROLES)}.", f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        if role == "assistant":
            item["content"] = [{"type": "output_text", "text": content, "annotations": []}]
        else:
            item["content"] = [{"type": "input_text", "text": content}]
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise CodecError(f"'{where}.content[{j}]' must be an object with a 'type'.", f"{where}.content[{j}]")
    else:
        raise CodecError(f"'{where}.content' must be a string or a list of parts.", f"{where}.content")


def items_to_messages(items: list[dict]) -> list[Message]:
    """Responses items (normalized by input_items) as canonical messages."""
    messages: list[Message] = []
    names: dict[str, str] = {}  # call_id -> function name, for tool results

    def assistant() -> Message:
        if not messages or messages[-1].role != "assistant":
            messages.append(Message(role="assistant"))
        return messages[-1]

    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = {"developer": "system"}.get(item.get("role"), item.get("role"))
            parts = [p for p in (_content_part(c) for c in item.get("content") or []) if p is not None]
            if role == "assistant":
                assistant().parts.extend(parts)
            else:
                messages.append(Message(role=role, parts=parts))
        elif kind == "function_call":
            call_id, names[item["call_id"]] = item["call_id"], item["name"]
            assistant().parts.append(ToolCallPart(id=call_id, name=item["name"], arguments=item.get("arguments") or ""))
        elif kind == "reasoning":  # encrypted content of ours carries another provider's reasoning
            text = _summary_text(item.get("summary"))
            assistant().parts.append(opaque_reasoning.unwrap(item.get("encrypted_content"), text) or ReasoningPart(
                text=text, encrypted_content=item.get("encrypted_content"), id=item.get("id")))
        elif client_calls.call_part(item) is not None:
            part = client_calls.call_part(item)
            names[part.id] = part.name
            assistant().parts.append(part)
        elif kind in client_calls.OUTPUTS:
            _add_result(messages, client_calls.result_part(item, names))
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = [p for p in (_content_part(c) for c in output) if isinstance(p, (TextPart, ImagePart))]
            _add_result(messages, ToolResultPart(call_id=item["call_id"], content=output,
                                                 name=names.get(item["call_id"])))
    return messages


def _add_result(messages: list[Message], result: ToolResultPart) -> None:
    """A tool result joins the results right before it in one user message."""
    last = messages[-1] if messages else None
    if last and last.role == "user" and last.parts and isinstance(last.parts[-1], ToolResultPart):
        last.parts.append(result)
    else:
        messages.append(Message(role="user", parts=[result]))


def _content_part(part: dict):
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(text=part.get("text") or "")
    if kind == "refusal":
        return TextPart(text=part.get("refusal") or "")
    if kind == "input_image":
        return ImagePart(url=part.get("image_url"), file_id=part.get("file_id"), detail=part.get("detail"))
    if kind == "input_file":
        if part.get("file_data"):
            media_type, data = _split_data_url(part["file_data"], part.get("filename"))
            return FilePart(data=data, media_type=media_type, filename=part.get("filename"))
        return FilePart(file_id=part.get("file_id"), url=part.get("file_url"), filename=part.get("filename"))
    return None


def _split_data_url(value: str, filename: Optional[str]) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL or of bare base64 named `filename`."""
    if value.startswith("data:") and "," in value:
        header, data = value[5:].split(",", 1)
        media_type = header.split(";")[0]
        if media_type:
            return media_type, data
        value = data
    extension = ("." + filename.rsplit(".", 1)[-1].lower()) if filename and "." in filename else ""
    return MEDIA_TYPES.get(extension, "application/pdf"), value


def _summary_text(summary: Any) -> str:
    return "\n\n".join(s.get("text") or "" for s in summary or [] if isinstance(s, dict))


# ---------------------------------------------------------------- requests
def parse_request(body: dict) -> Request:
    """A Responses request body as a canonical Request (raises CodecError on a bad body)."""
    if not isinstance(body, dict):
        raise CodecError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise CodecError("'model' is required.", "model")
    req = Request(model=model, messages=items_to_messages(input_items(body)))
    req.system = _optional_str(body, "instructions")
    req.tools = _parse_tools(body.get("tools"))
    req.tool_choice = _parse_tool_choice(body.get("tool_choice"))
    req.parallel_tool_calls = _optional_type(body, "parallel_tool_calls", bool, "a boolean")
    req.stream = bool(_optional_type(body, "stream", bool, "a boolean"))
    req.metadata = _optional_type(body, "metadata", dict, "an object")
    if req.metadata and not all(isinstance(v, str) for v in req.metadata.values()):
        raise CodecError("'metadata' values must be strings.", "metadata")
    req.user = _optional_str(body, "user")
    tokens = body.get("max_output_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise CodecError("'max_output_tokens' must be a positive integer.", "max_output_tokens")
    req.max_output_tokens = tokens
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise CodecError(f"'{key}' must be a number.", key)
        setattr(req, key, None if value is None else float(value))
    req.response_format = _parse_text_format(body.get("text"))
    req.reasoning = _parse_reasoning(body.get("reasoning"))
    return req


def _parse_tools(tools: Any) -> list[ToolSpec]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise CodecError("'tools' must be a list.", "tools")
    specs = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise CodecError(f"'tools[{i}]' must be an object.", f"tools[{i}]")
        if tool.get("type") != "function":
            client_tool = client_calls.tool_spec(tool)  # custom tools, shells, apply_patch: the client runs them
            specs += [client_tool] if client_tool else []
            continue  # server-side tools (web_search, file_search, …) have no canonical form
        name = _require_str(tool, "name", f"tools[{i}]")
        spec = ToolSpec(name=name, description=_optional_str(tool, "description", f"tools[{i}]"))
        if tool.get("parameters") is not None:
            spec.parameters = _optional_type(tool, "parameters", dict, "an object", f"tools[{i}]")
        specs.append(spec)
    return specs


def _parse_tool_choice(choice: Any) -> Any:
    if choice is None or choice in TOOL_CHOICES:
        return choice
    if isinstance(choice, dict):
        if choice.get("type") == "function" and isinstance(choice.get("name"), str):
            return {"name": choice["name"]}
        if choice.get("type") == "allowed_tools" and choice.get("mode") in TOOL_CHOICES:
            return choice["mode"]
        return None  # built-in tool choices: let the model decide
    raise CodecError("'tool_choice' must be auto, none, required or {type: function, name}.", "tool_choice")


def _parse_text_format(text: Any) -> Optional[dict]:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise CodecError("'text' must be an object.", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise CodecError("'text.format' must be an object.", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise CodecError("'text.format.schema' must be an object.", "text.format.schema")
        return {"type": "json_schema", "name": fmt.get("name") or "response", "schema": fmt["schema"],
                "strict": fmt.get("strict")}
    raise CodecError("'text.format.type' must be text, json_object or json_schema.", "text.format.type")


def _parse_reasoning(reasoning: Any) -> Optional[dict]:
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise CodecError("'reasoning' must be an object.", "reasoning")
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    parsed = {k: v for k, v in (("effort", reasoning.get("effort")), ("summary", summary)) if v is not None}
    return parsed or None


def _require_str(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise CodecError(f"'{where}.{key}' must be a non-empty string.", f"{where}.{key}")
    return value


def _optional_str(obj: dict, key: str, where: str = "") -> Optional[str]:
    return _optional_type(obj, key, str, "a string", where)


def _optional_type(obj: dict, key: str, kind: type, what: str, where: str = "") -> Any:
    value = obj.get(key)
    param = f"{where}.{key}" if where else key
    if value is not None and not isinstance(value, kind):
        raise CodecError(f"'{param}' must be {what}.", param)
    return value


def render_request(req: Request, upstream_model: str) -> dict:
    """A canonical Request as the body for an upstream speaking the Responses API."""
    body: dict = {"model": upstream_model, "instructions": req.system, "input": messages_to_items(req.messages)}
    if req.tools:
        body["tools"] = [
            {k: v for k, v in (("type", "function"), ("name", t.name), ("description", t.description),
                               ("parameters", t.parameters)) if v is not None}
            for t in req.tools
        ]
    if isinstance(req.tool_choice, dict):
        body["tool_choice"] = {"type": "function", "name": req.tool_choice.get("name")}
    else:
        body["tool_choice"] = req.tool_choice
    body.update(parallel_tool_calls=req.parallel_tool_calls, max_output_tokens=req.max_output_tokens,
                temperature=req.temperature, top_p=req.top_p)
    fmt = req.response_format
    if fmt and fmt.get("type") == "json_schema":
        body["text"] = {"format": {"type": "json_schema", "name": fmt.get("name") or "response",
                                   "schema": fmt.get("schema"), "strict": fmt.get("strict")}}
    elif fmt and fmt.get("type") == "json_object":
        body["text"] = {"format": {"type": "json_object"}}
    if req.reasoning:
        reasoning = {k: req.reasoning[k] for k in ("effort", "summary") if req.reasoning.get(k)}
        body["reasoning"] = reasoning or None
        # store is false, so reasoning only survives the next turn as encrypted content
        body["include"] = ["reasoning.encrypted_content"]
    body["stream"] = req.stream
    body["store"] = False
    return _without_none(body)


def messages_to_items(messages: list[Message]) -> list[dict]:
    """Canonical messages as Responses input items (no ids: the upstream does not need them)."""
    items: list[dict] = []
    for message in messages:
        role = message.role
        content: list[dict] = []

        def flush(content: list = content, role: str = role) -> None:
            if content:
                items.append({"type": "message", "role": role, "content": list(content)})
                content.clear()

        for part in message.parts:
            if isinstance(part, TextPart):
                if role == "assistant":
                    content.append({"type": "output_text", "text": part.text, "annotations": []})
                else:
                    content.append({"type": "input_text", "text": part.text})
            elif isinstance(part, (ImagePart, FilePart)) and role != "assistant":
                content.append(_render_input_part(part))
            elif isinstance(part, ToolCallPart) and part.kind in client_calls.CALLS:
                flush()
                items.append(client_calls.call_item(part, part.kind, new_id(client_calls.ID_PREFIXES[part.kind])))
            elif isinstance(part, ToolResultPart) and part.kind in client_calls.CALLS:
                flush()
                items.append(client_calls.result_item(part, part.kind))
            elif isinstance(part, ToolCallPart):
                flush()
                items.append({"type": "function_call", "call_id": part.id, "name": part.name,
                              "arguments": part.arguments or "{}"})
            elif isinstance(part, ToolResultPart):
                flush()
                output = part.content
                if not isinstance(output, str):
                    output = [_render_input_part(p) for p in output]
                items.append({"type": "function_call_output", "call_id": part.call_id, "output": output})
            elif isinstance(part, ReasoningPart) and part.encrypted_content:
                flush()
                summary = [{"type": "summary_text", "text": part.text}] if part.text else []
                items.append(_without_none({"type": "reasoning", "id": part.id, "summary": summary,
                                            "encrypted_content": part.encrypted_content}))
        flush()
    return items


def _render_input_part(part) -> dict:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        return _without_none({"type": "input_image", "image_url": part.url, "file_id": part.file_id,
                              "detail": part.detail or "auto"})
    if part.text is not None and not part.data:
        return {"type": "input_text", "text": part.text}
    if part.data:
        media_type = part.media_type or "application/pdf"
        extension = next((ext for ext, mt in MEDIA_TYPES.items() if mt == media_type), "")
        return {"type": "input_file", "file_data": f"data:{media_type};base64,{part.data}",
                "filename": part.filename or "document" + extension}
    return _without_none({"type": "input_file", "file_id": part.file_id, "file_url": part.url,
                          "filename": part.filename})


def _without_none(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if v is not None}


# ---------------------------------------------------------------- responses
def parse_response(body: dict) -> Response:
    """An upstream response object as a canonical Response."""
    if not isinstance(body, dict) or not isinstance(body.get("output"), list) \
            or body.get("object", "response") != "response":
        raise CodecError("The upstream answer is not a Responses response object.")
    resp = Response(id=body.get("id") or "", model=body.get("model") or "")
    for item in body["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            resp.parts.append(_message_text(item))
        elif kind == "web_search_call":
            resp.parts.append(sources.web_search_part(item))
        elif kind == "function_call":
            resp.parts.append(ToolCallPart(id=item.get("call_id") or "", name=item.get("name") or "",
                                           arguments=item.get("arguments") or ""))
        elif kind == "reasoning":
            resp.parts.append(ReasoningPart(text=_summary_text(item.get("summary")),
                                            encrypted_content=item.get("encrypted_content"), id=item.get("id")))
        elif kind in client_calls.CALLS:
            resp.parts.append(client_calls.call_part(item))
    resp.stop_reason = _stop_reason(body, any(isinstance(p, ToolCallPart) for p in resp.parts))
    if resp.stop_reason == STOP_END_TURN and any(isinstance(p, TextPart) and p.refusal for p in resp.parts):
        resp.stop_reason = STOP_REFUSAL
    resp.usage = reported_usage(body.get("usage"), body["output"])
    return resp


def _message_text(item: dict) -> TextPart:
    """A message item's text parts as one text part, with their annotations; a refusal is marked."""
    part = TextPart(text="")
    for content in item.get("content") or []:
        if not isinstance(content, dict) or content.get("type") not in ("output_text", "refusal"):
            continue
        cited = [sources.from_url_citation(a, -len(part.text)) for a in content.get("annotations") or []]
        part.annotations += [a for a in cited if a]
        part.refusal = part.refusal or content.get("type") == "refusal"
        part.text += content.get("text") or content.get("refusal") or ""
    return part


def _stop_reason(body: dict, has_tool_call: bool) -> str:
    if body.get("status") == "incomplete":
        reason = (body.get("incomplete_details") or {}).get("reason")
        if reason == "content_filter":
            return STOP_REFUSAL
        if reason == "max_output_tokens":
            return STOP_MAX_TOKENS
    return STOP_TOOL_USE if has_tool_call else STOP_END_TURN


def reported_usage(raw: Any, output: Any = None) -> Usage:
    """The usage a response object reports (none: not reported), with the web searches its output ran."""
    if not isinstance(raw, dict):
        return Usage()
    usage = _parse_usage(raw)
    usage.reported = True
    usage.web_search_requests = sum(1 for item in output or [] if isinstance(item, dict)
                                    and item.get("type") == "web_search_call")
    return usage


def _parse_usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    details = usage.get("input_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cached_tokens=details.get("cached_tokens") or 0,
        cache_write_tokens=details.get("cache_write_tokens") or 0,
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def output_items(resp: Response, client_tools: Optional[dict] = None) -> list[dict]:
    """The canonical output parts as Responses output items with fresh ids.

    `client_tools`: tool name -> call item type for the request's client tools that are not functions.
    """
    items: list[dict] = []
    for part in resp.parts:
        kind = part.kind or (client_tools or {}).get(part.name) if isinstance(part, ToolCallPart) else None
        if kind in client_calls.CALLS:
            items.append(client_calls.call_item(part, kind, new_id(client_calls.ID_PREFIXES[kind])))
            continue
        if isinstance(part, TextPart):
            if items and items[-1]["type"] == "message" and items[-1]["content"][0]["type"] == "output_text" \
                    and not part.refusal:
                content = items[-1]["content"][0]
                content["annotations"] += sources.url_citations(part, len(content["text"]))
                content["text"] += part.text
            else:
                items.append(_message_item(new_id("msg_"), part.text, annotations=sources.url_citations(part),
                                           refusal=part.refusal))
        elif isinstance(part, ServerToolPart):
            item = sources.web_search_item(part, new_id("ws_"))
            items += [item] if item else []
        elif isinstance(part, ToolCallPart):
            items.append(_function_call_item(new_id("fc_"), part.id, part.name, part.arguments))
        elif isinstance(part, ReasoningPart):
            items.append(_reasoning_item(part.id or new_id("rs_"), part.text, _encrypted_content(part)))
    return items


def _message_item(item_id: str, text: str, status: str = "completed", annotations: Optional[list] = None,
                  refusal: bool = False) -> dict:
    part = {"type": "refusal", "refusal": text} if refusal else _text_content(text, annotations)
    content = [part] if status != "in_progress" else []
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": content}


def _text_content(text: str, annotations: Optional[list] = None) -> dict:
    return {"type": "output_text", "text": text, "annotations": list(annotations or []), "logprobs": []}


def _function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}


def _encrypted_content(part: ReasoningPart) -> Optional[str]:
    """What a Responses client sends back to resend this reasoning: OpenAI's own, or ours around a signature."""
    if opaque_reasoning.provider(part) == "anthropic":
        return opaque_reasoning.wrap(part)
    return part.encrypted_content


def _reasoning_item(item_id: str, text: str, encrypted_content: Optional[str] = None) -> dict:
    item = {"id": item_id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}] if text else []}
    if encrypted_content:
        item["encrypted_content"] = encrypted_content
    return item


def render_response(resp: Response, ctx: RenderContext) -> dict:
    """The complete Responses object for a canonical Response."""
    client_tools = client_calls.tool_kinds((ctx.request_body or {}).get("tools"))
    return _response_object(ctx, output_items(resp, client_tools), resp.stop_reason, resp.usage)


def render_in_progress(ctx: RenderContext) -> dict:
    """The response object as announced at the start of a stream."""
    return _response_object(ctx, [], None, None)


def _response_object(ctx: RenderContext, output: list, stop_reason: Optional[str], usage: Optional[Usage],
                     error: Optional[dict] = None) -> dict:
    body = ctx.request_body or {}
    status, incomplete = "completed", None
    if error is not None:
        status = "failed"
    elif stop_reason is None:
        status = "in_progress"
    elif stop_reason in (STOP_MAX_TOKENS, STOP_REFUSAL, STOP_PAUSE):
        # a paused turn (a server tool loop to be resumed) is unfinished; the schema's only such reason is the length
        status = "incomplete"
        incomplete = {"reason": "content_filter" if stop_reason == STOP_REFUSAL else "max_output_tokens"}
    conversation = ctx.extra.get("conversation", body.get("conversation"))
    if isinstance(conversation, str):
        conversation = {"id": conversation}
    answer = {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created_at,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "model": ctx.model,
        "output": output,
        "usage": None if usage is None else {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": usage.cached_tokens,
                                     "cache_write_tokens": usage.cache_write_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        },
        **{key: _copied(body[key] if body.get(key) is not None else default)
           for key, default in ECHOED_DEFAULTS.items()},
        "tools": _echoed_tools(body.get("tools")),
        "store": ctx.extra.get("store", body.get("store", True)),
        "previous_response_id": ctx.extra.get("previous_response_id", body.get("previous_response_id")),
        "conversation": conversation,
    }
    if usage is None:
        del answer["usage"]  # not known yet: the schema's usage object has no null form
    if isinstance(body.get("user"), str):
        answer["user"] = body["user"]
    return answer


def _echoed_tools(tools: Any) -> list:
    """The request's tools as a response object shows them: function tools with every field the schema requires."""
    if not isinstance(tools, list):
        return []
    return [{**FUNCTION_TOOL_REQUIRED, **tool} if isinstance(tool, dict) and tool.get("type") == "function"
            else copy.deepcopy(tool) for tool in tools]


# ---------------------------------------------------------------- streams
class StreamParser:
    """Reads an upstream Responses SSE stream into canonical stream events."""

    def __init__(self) -> None:
        self._kinds: dict[int, str] = {}  # output_index -> item type
        self._streamed: set[int] = set()  # output indexes that produced text or arguments
        self._emitted: set[int] = set()  # output indexes that produced any canonical event
        self._saw_tool_call = False

    def feed(self, event: Optional[str], data: str) -> list[StreamEvent]:
        """Canonical events for one SSE event."""
        if not data or data.strip() == "[DONE]":
            return []
        try:
            payload = json_codec.loads(data)
        except ValueError as exc:
            raise CodecError(f"Upstream sent invalid JSON in a stream: {exc}") from None
        if not isinstance(payload, dict):
            raise CodecError("Upstream sent a stream event that is not an object.")
        kind = payload.get("type") or event
        index = payload.get("output_index") or 0
        out: list[StreamEvent] = []
        if kind == "response.output_item.added":
            item = payload.get("item") or {}
            self._kinds[index] = item.get("type")
            if item.get("type") == "function_call":
                out += self._start_call(index, item)
                if item.get("arguments"):
                    out += self._piece("tool_args", index, item["arguments"])
        elif kind in ("response.output_text.delta", "response.refusal.delta"):
            out += self._piece("text", index, payload.get("delta") or "")
        elif kind == "response.output_text.annotation.added":
            annotation = sources.from_url_citation(payload.get("annotation"))
            if annotation:
                self._emitted.add(index)
                out.append(StreamEvent("annotation", index=index, part=annotation))
        elif kind == "response.function_call_arguments.delta" and self._kinds.get(index) == "function_call":
            out += self._piece("tool_args", index, payload.get("delta") or "")
        elif kind == "response.reasoning_summary_part.added" and payload.get("summary_index", 0) > 0:
            out += self._piece("reasoning", index, "\n\n")  # as parse_response joins summaries
        elif kind == "response.reasoning_summary_text.delta":
            out += self._piece("reasoning", index, payload.get("delta") or "")
        elif kind == "response.output_item.done":
            out += self._finish_item(index, payload.get("item") or {})
        elif kind in ("response.completed", "response.incomplete"):
            resp = payload.get("response") or {}
            has_call = self._saw_tool_call or any(
                isinstance(i, dict) and (i.get("type") == "function_call" or i.get("type") in client_calls.CALLS)
                for i in resp.get("output") or [])
            out.append(StreamEvent("usage", usage=reported_usage(resp.get("usage"), resp.get("output"))))
            out.append(StreamEvent("finish", stop_reason=_stop_reason(resp, has_call)))
        elif kind == "response.failed":
            error = (payload.get("response") or {}).get("error") or {}
            out.append(StreamEvent("error", text=error.get("message") or "The upstream response failed.",
                                   error_type=error.get("code") or "server_error"))
        elif kind == "error":
            error = payload.get("error") if isinstance(payload.get("error"), dict) else payload
            out.append(StreamEvent("error", text=error.get("message") or "Upstream stream error.",
                                   error_type=error.get("code") or error.get("type") or "server_error"))
        return out

    def close(self) -> list[StreamEvent]:
        """Nothing is buffered; the upstream's terminal event already said everything."""
        return []

    def _start_call(self, index: int, item: dict) -> list[StreamEvent]:
        self._saw_tool_call = True
        self._emitted.add(index)
        return [StreamEvent("tool_call", index=index, call_id=item.get("call_id"), name=item.get("name"))]

    def _piece(self, kind: str, index: int, text: str) -> list[StreamEvent]:
        if not text:
            return []
        self._streamed.add(index)
        self._emitted.add(index)
        return [StreamEvent(kind, index=index, text=text)]

    def _finish_item(self, index: int, item: dict) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        kind = item.get("type") or self._kinds.get(index)
        if kind == "web_search_call":
            self._emitted.add(index)
            out.append(StreamEvent("server_tool", index=index, part=sources.web_search_part(item)))
        elif kind in client_calls.CALLS and index not in self._emitted:  # whole at its end: its input is no JSON
            call = client_calls.call_part(item)
            out += self._start_call(index, {"call_id": call.id, "name": call.name})
            out += self._piece("tool_args", index, call.arguments)
        elif kind == "function_call":
            if index not in self._emitted:
                out += self._start_call(index, item)
            if index not in self._streamed:
                out += self._piece("tool_args", index, item.get("arguments") or "")
        elif kind == "message" and index not in self._streamed:
            text = "".join(p.get("text") or p.get("refusal") or "" for p in item.get("content") or []
                           if isinstance(p, dict))
            out += self._piece("text", index, text)
        elif kind == "reasoning" and index not in self._streamed:
            out += self._piece("reasoning", index, _summary_text(item.get("summary")))
        if kind == "reasoning" and item.get("encrypted_content"):
            self._emitted.add(index)
            out.append(StreamEvent("reasoning", index=index, part=ReasoningPart(
                encrypted_content=item["encrypted_content"], id=item.get("id"))))
        if index in self._emitted:
            out.append(StreamEvent("part_end", index=index))
        return out


class _OpenItem:
    """An output item being streamed to the client."""

    def __init__(self, kind: str, item_id: str, output_index: int, call_id: str = "", name: str = ""):
        self.kind, self.item_id, self.output_index = kind, item_id, output_index
        self.call_id, self.name = call_id, name
        self.text = ""
        self.summary_open = False
        self.call_kind: Optional[str] = None  # a client call other than a function: sent whole at its end
        self.annotations: list = []
        self.opaque = ReasoningPart()  # a reasoning item's signature or encrypted content so far


class StreamRenderer:
    """Writes canonical stream events as a Responses SSE stream: [(event name, payload)]."""

    def __init__(self, ctx: RenderContext):
        self.ctx = ctx
        self.builder = ResponseBuilder(ctx.response_id, ctx.model)
        self._seq = 0
        self._started = False
        self._done = False
        self._open: Optional[_OpenItem] = None
        self._open_index: Optional[int] = None  # canonical index of the open item
        self._items: list[dict] = []  # completed output items, by output_index
        self._client_tools = client_calls.tool_kinds((ctx.request_body or {}).get("tools"))

    def feed(self, ev: StreamEvent) -> list[tuple[str, dict]]:
        """The Responses events for one canonical event."""
        if self._done:
            return []
        if ev.type == "error":
            return self.fail(ev.text, ev.error_type)
        out = self._start()
        if ev.type == "tool_call" and not ev.call_id:
            ev = replace(ev, call_id=new_id("call_"))  # the client needs a call id to answer with
        self.builder.feed(ev)
        if ev.type == "text":
            out += self._enter(ev.index, "message")
            if ev.text:
                self._open.text += ev.text
                out.append(self._event("response.output_text.delta", item_id=self._open.item_id,
                                       output_index=self._open.output_index, content_index=0, delta=ev.text,
                                       logprobs=[]))
        elif ev.type == "reasoning":
            out += self._enter(ev.index, "reasoning")
            self._open.opaque.signature = (self._open.opaque.signature or "") + (ev.signature or "") or None
            if isinstance(ev.part, ReasoningPart):
                self._open.opaque.redacted_data = ev.part.redacted_data or self._open.opaque.redacted_data
                self._open.opaque.encrypted_content = ev.part.encrypted_content or self._open.opaque.encrypted_content
            if ev.text:
                item = self._open
                if not item.summary_open:
                    item.summary_open = True
                    out.append(self._event("response.reasoning_summary_part.added", item_id=item.item_id,
                                           output_index=item.output_index, summary_index=0,
                                           part={"type": "summary_text", "text": ""}))
                item.text += ev.text
                out.append(self._event("response.reasoning_summary_text.delta", item_id=item.item_id,
                                       output_index=item.output_index, summary_index=0, delta=ev.text))
        elif ev.type == "tool_call":
            out += self._enter(ev.index, "function_call", ev.call_id, ev.name)
        elif ev.type == "tool_args":
            out += self._enter(ev.index, "function_call")
            if ev.text:
                self._open.text += ev.text
                if self._open.call_kind is None:
                    out.append(self._event("response.function_call_arguments.delta", item_id=self._open.item_id,
                                           output_index=self._open.output_index, delta=ev.text))
        elif ev.type == "annotation" and ev.part:
            out += self._enter(ev.index, "message")
            self._open.annotations.append(ev.part)
        elif ev.type == "server_tool" and isinstance(ev.part, ServerToolPart):
            out += self._end() + self._server_tool(ev.part)
        elif ev.type == "part_end" and ev.index == self._open_index:
            out += self._end()
        return out

    def _server_tool(self, part: ServerToolPart) -> list[tuple[str, dict]]:
        """A web search the provider ran, announced whole (other server tools have no Responses item here)."""
        item = sources.web_search_item(part, new_id("ws_"))
        if item is None:
            return []
        index = len(self._items)
        self._items.append(item)
        ids = {"item_id": item["id"], "output_index": index}
        return [self._event("response.output_item.added", output_index=index, item={**item, "status": "in_progress"}),
                self._event("response.web_search_call.in_progress", **ids),
                self._event("response.web_search_call.searching", **ids),
                self._event("response.web_search_call.completed", **ids),
                self._event("response.output_item.done", output_index=index, item=item)]

    def close(self) -> list[tuple[str, dict]]:
        """End open items and emit response.completed (or response.incomplete)."""
        if self._done:
            return []
        out = self._start() + self._end()
        self._done = True
        resp = self.builder.response
        final = _response_object(self.ctx, list(self._items), resp.stop_reason, resp.usage)
        name = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        out.append(self._event(name, response=final))
        return out

    def fail(self, message: str, error_type: Optional[str] = None) -> list[tuple[str, dict]]:
        """End the stream with response.failed carrying the error."""
        if self._done:
            return []
        out = self._start() + self._end(status="incomplete")
        self._done = True
        code = ERROR_CODE_ALIASES.get(error_type or "", error_type)
        error = {"code": code if code in ERROR_CODES else "server_error", "message": message, "type": error_type}
        final = _response_object(self.ctx, list(self._items), STOP_END_TURN, self.builder.response.usage, error=error)
        out.append(self._event("response.failed", response=final))
        return out

    def final_response(self) -> Response:
        """The canonical Response assembled from what was streamed so far."""
        return self.builder.response

    # -- internals
    def _event(self, event_type: str, **fields: Any) -> tuple[str, dict]:
        payload = {"type": event_type, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event_type, payload

    def _start(self) -> list[tuple[str, dict]]:
        if self._started:
            return []
        self._started = True
        return [self._event("response.created", response=render_in_progress(self.ctx)),
                self._event("response.in_progress", response=render_in_progress(self.ctx))]

    def _enter(self, index: int, kind: str, call_id: Optional[str] = None, name: Optional[str] = None):
        """Make canonical part `index` the open item, ending any other one."""
        if self._open is not None and self._open_index == index and self._open.kind == kind:
            return []
        out = self._end()
        call_kind = self._client_tools.get(name or "") if kind == "function_call" else None
        prefix = client_calls.ID_PREFIXES[call_kind] if call_kind else ITEM_ID_PREFIXES[kind]
        item = _OpenItem(kind, new_id(prefix), len(self._items), call_id or new_id("call_"), name or "")
        self._open, self._open_index = item, index
        if call_kind:
            item.call_kind = call_kind
            return out  # announced whole when it ends: its input is not streamed as JSON
        if kind == "message":
            added = _message_item(item.item_id, "", status="in_progress")
        elif kind == "function_call":
            added = _function_call_item(item.item_id, item.call_id, item.name, "", status="in_progress")
        else:
            added = {**_reasoning_item(item.item_id, ""), "status": "in_progress"}
        out.append(self._event("response.output_item.added", output_index=item.output_index, item=added))
        if kind == "message":
            out.append(self._event("response.content_part.added", item_id=item.item_id,
                                   output_index=item.output_index, content_index=0, part=_text_content("")))
        return out

    def _end(self, status: str = "completed") -> list[tuple[str, dict]]:
        item, self._open, self._open_index = self._open, None, None
        if item is None:
            return []
        ids = {"item_id": item.item_id, "output_index": item.output_index}
        out = []
        if item.kind == "message":
            cited = sources.url_citations(TextPart(text=item.text, annotations=item.annotations))
            for number, annotation in enumerate(cited):
                out.append(self._event("response.output_text.annotation.added", **ids, content_index=0,
                                       annotation_index=number, annotation=annotation))
            out.append(self._event("response.output_text.done", **ids, content_index=0, text=item.text, logprobs=[]))
            out.append(self._event("response.content_part.done", **ids, content_index=0,
                                   part=_text_content(item.text, cited)))
            done = _message_item(item.item_id, item.text, status, annotations=cited)
        elif item.call_kind:
            call = ToolCallPart(id=item.call_id, name=item.name, arguments=item.text, kind=item.call_kind)
            done = client_calls.call_item(call, item.call_kind, item.item_id, status)
            out.append(self._event("response.output_item.added", output_index=item.output_index,
                                   item={**done, "status": "in_progress"} if "status" in done else done))
            if item.call_kind == "custom_tool_call":
                out.append(self._event("response.custom_tool_call_input.delta", **ids, delta=done["input"]))
                out.append(self._event("response.custom_tool_call_input.done", **ids, input=done["input"]))
        elif item.kind == "function_call":
            out.append(self._event("response.function_call_arguments.done", **ids, name=item.name,
                                   arguments=item.text))
            done = _function_call_item(item.item_id, item.call_id, item.name, item.text, status)
        else:
            if item.summary_open:
                out.append(self._event("response.reasoning_summary_text.done", **ids, summary_index=0, text=item.text))
                out.append(self._event("response.reasoning_summary_part.done", **ids, summary_index=0,
                                       part={"type": "summary_text", "text": item.text}))
            item.opaque.text = item.text
            done = _reasoning_item(item.item_id, item.text, _encrypted_content(item.opaque))
        self._items.append(done)
        out.append(self._event("response.output_item.done", output_index=item.output_index, item=done))
        return out
