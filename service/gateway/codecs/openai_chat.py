"""Codec for the OpenAI Chat Completions format (`POST /v1/chat/completions`)."""
from __future__ import annotations

import json
import mimetypes
from typing import Any, Optional

from ... import json_codec
from ..canonical import (
    STOP_END_TURN,
    STOP_MAX_TOKENS,
    STOP_PAUSE,
    STOP_REFUSAL,
    STOP_SEQUENCE,
    STOP_TOOL_USE,
    FilePart,
    ImagePart,
    Message,
    ReasoningPart,
    RenderContext,
    Request,
    Response,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from . import CodecError, opaque_reasoning, sources

FINISH_TO_STOP = {
    "stop": STOP_END_TURN, "length": STOP_MAX_TOKENS, "tool_calls": STOP_TOOL_USE,
    "function_call": STOP_TOOL_USE, "content_filter": STOP_REFUSAL,
}
STOP_TO_FINISH = {
    # a paused turn (a server tool loop to be resumed) is unfinished: "length" is the finish that says so
    STOP_END_TURN: "stop", STOP_SEQUENCE: "stop", STOP_PAUSE: "length",
    STOP_MAX_TOKENS: "length", STOP_TOOL_USE: "tool_calls", STOP_REFUSAL: "content_filter",
}
ROLES = ("system", "developer", "user", "assistant", "tool")


# ---------------------------------------------------------------- requests
def parse_request(body: dict) -> Request:
    """A client's /v1/chat/completions body as a canonical Request; raises CodecError."""
    if not isinstance(body, dict):
        raise CodecError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise CodecError("`model` is required and must be a non-empty string.", "model")
    if body.get("n") not in (None, 1):
        raise CodecError("Only n=1 is supported.", "n")
    system, messages = _parse_messages(body.get("messages"))
    max_tokens_key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    effort = body.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise CodecError("`reasoning_effort` must be a string.", "reasoning_effort")
    return Request(
        model=model,
        messages=messages,
        system=system,
        tools=_parse_tools(body.get("tools")),
        tool_choice=_parse_tool_choice(body.get("tool_choice")),
        parallel_tool_calls=_typed(body, "parallel_tool_calls", bool),
        max_output_tokens=_positive_int(body, max_tokens_key),
        temperature=_number(body, "temperature"),
        top_p=_number(body, "top_p"),
        stop=_parse_stop(body.get("stop")),
        stream=bool(_typed(body, "stream", bool)),
        metadata=_typed(body, "metadata", dict),
        response_format=_parse_response_format(body.get("response_format")),
        reasoning={"effort": effort} if effort else None,
        user=_typed(body, "user", str),
    )


def _parse_messages(raw: Any) -> tuple[Optional[str], list]:
    """Leading system/developer text, and the remaining messages as canonical Messages."""
    if not isinstance(raw, list) or not raw:
        raise CodecError("`messages` must be a non-empty array.", "messages")
    system: list[str] = []
    messages: list[Message] = []
    tool_names: dict[str, str] = {}
    last_was_tool = False
    for i, msg in enumerate(raw):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise CodecError(f"{param} must be an object.", param)
        role = msg.get("role")
        if role not in ROLES:
            raise CodecError(f"{param}.role must be one of {', '.join(ROLES)}; got {role!r}.", f"{param}.role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = _text_content(content, f"{param}.content")
            if messages:
                messages.append(Message(role="system", parts=[TextPart(text=text)]))
            else:
                system.append(text)
        elif role == "user":
            messages.append(Message(role="user", parts=_user_parts(content, f"{param}.content")))
        elif role == "assistant":
            message = _assistant_message(msg, param)
            tool_names.update((p.id, p.name) for p in message.parts if isinstance(p, ToolCallPart))
            messages.append(message)
        else:
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise CodecError(f"{param}.tool_call_id is required for tool messages.", f"{param}.tool_call_id")
            result = ToolResultPart(
                call_id=call_id, content=_text_content(content, f"{param}.content"), name=tool_names.get(call_id)
            )
            if last_was_tool:
                messages[-1].parts.append(result)
            else:
                messages.append(Message(role="user", parts=[result]))
        last_was_tool = role == "tool"
    return ("\n\n".join(system) if system else None), messages


def _text_content(content: Any, param: str) -> str:
    """Content that must be text: a string or a list of text (or refusal) parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                texts.append(part["refusal"])
            else:
                raise CodecError(f"{param}[{j}] must be a text part.", f"{param}[{j}]")
        return "".join(texts)
    raise CodecError(f"{param} must be a string or an array of text parts.", param)


def _user_parts(content: Any, param: str) -> list:
    """A user message's content as canonical parts."""
    if isinstance(content, str):
        return [TextPart(text=content)]
    if not isinstance(content, list):
        raise CodecError(f"{param} must be a string or an array of content parts.", param)
    parts: list = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(TextPart(text=part["text"]))
        elif kind == "image_url":
            image = part.get("image_url")
            image = {"url": image} if isinstance(image, str) else image
            if not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
                raise CodecError(f"{where}.image_url.url must be a non-empty string.", f"{where}.image_url")
            parts.append(ImagePart(url=image["url"], detail=image.get("detail")))
        elif kind == "file":
            parts.append(_file_part(part.get("file"), f"{where}.file"))
        elif kind == "input_audio":
            continue  # no canonical place for audio input
        else:
            raise CodecError(f"{where} must be a text, image_url, file or input_audio part.", where)
    return parts


def _file_part(file: Any, param: str) -> FilePart:
    """A `file` content part: our file id, or inline data as a data URL or bare base64."""
    if not isinstance(file, dict) or not (file.get("file_id") or file.get("file_data")):
        raise CodecError(f"{param} needs a file_id or file_data.", param)
    filename = file.get("filename")
    data = file.get("file_data")
    media_type = mimetypes.guess_type(filename)[0] if isinstance(filename, str) else None
    if isinstance(data, str) and data.startswith("data:"):
        header, _, data = data.partition(",")
        media_type = header[len("data:"):].split(";")[0] or media_type
    elif data is not None and not isinstance(data, str):
        raise CodecError(f"{param}.file_data must be a string.", param)
    return FilePart(data=data, media_type=media_type if data else None, filename=filename, file_id=file.get("file_id"))


def _assistant_message(msg: dict, param: str) -> Message:
    """An assistant message: reasoning first, then its text, then its tool calls."""
    parts: list = opaque_reasoning.from_chat_details(msg.get("reasoning_details"))  # resendable reasoning first
    reasoning = _reasoning_text(msg)
    if reasoning and not parts:
        parts.append(ReasoningPart(text=reasoning))
    elif len(parts) == 1 and parts[0].signature and not parts[0].text:  # streamed: the text came apart
        parts[0].text = reasoning
    if msg.get("content") is not None:
        text = _text_content(msg["content"], f"{param}.content")
        if text:
            parts.append(TextPart(text=text))
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise CodecError(f"{param}.tool_calls must be an array.", f"{param}.tool_calls")
    for k, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not call.get("id"):
            raise CodecError(f"{param}.tool_calls[{k}] needs an id and function.name.", f"{param}.tool_calls[{k}]")
        arguments = function.get("arguments") or ""
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)  # lenient: some clients send an object
        parts.append(ToolCallPart(id=call["id"], name=function["name"], arguments=arguments))
    return Message(role="assistant", parts=parts)


def _parse_tools(raw: Any) -> list:
    """`tools` as ToolSpecs; only function tools exist in the canonical turn."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CodecError("`tools` must be an array.", "tools")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise CodecError(f"tools[{i}] must be {{type: 'function', function: {{name, ...}}}}.", f"tools[{i}]")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise CodecError(f"tools[{i}].function.parameters must be an object.", f"tools[{i}].function.parameters")
        spec = ToolSpec(name=function["name"], description=function.get("description"))
        if parameters is not None:
            spec.parameters = parameters
        tools.append(spec)
    return tools


def _parse_tool_choice(raw: Any) -> Any:
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    function = raw.get("function") if isinstance(raw, dict) and raw.get("type") == "function" else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"name": function["name"]}
    message = "`tool_choice` must be auto, none, required or {type: 'function', function: {name}}."
    raise CodecError(message, "tool_choice")


def _parse_stop(raw: Any) -> list:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return list(raw)
    raise CodecError("`stop` must be a string or an array of strings.", "stop")


def _parse_response_format(raw: Any) -> Optional[dict]:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if raw is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = raw.get("json_schema") if kind == "json_schema" else None
    if isinstance(schema, dict):
        return {"type": "json_schema", **{k: schema.get(k) for k in ("name", "schema", "strict")}}
    raise CodecError("`response_format` must be {type: text | json_object | json_schema}.", "response_format")


def _typed(body: dict, key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise CodecError(f"`{key}` must be of type {kind.__name__}.", key)
    return value


def _number(body: dict, key: str) -> Optional[float]:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise CodecError(f"`{key}` must be a number.", key)
    return value


def _positive_int(body: dict, key: str) -> Optional[int]:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CodecError(f"`{key}` must be a positive integer.", key)
    return value


def render_request(req: Request, upstream_model: str) -> dict:
    """The canonical Request as a Chat body for an OpenAI-compatible upstream."""
    messages = [{"role": "system", "content": req.system}] if req.system else []
    for message in req.messages:
        if message.role == "assistant":
            messages.append(_render_assistant(message.parts))
        elif message.role == "system":
            messages.append({"role": "system", "content": message.text()})
        else:
            # Tool results answer the preceding assistant turn, so they come before the user's other parts.
            for part in message.parts:
                if isinstance(part, ToolResultPart):
                    messages.append({"role": "tool", "tool_call_id": part.call_id, "content": part.text()})
            content = [c for c in map(_render_user_part, message.parts) if c]
            if len(content) == 1 and content[0]["type"] == "text":
                messages.append({"role": "user", "content": content[0]["text"]})
            elif content:
                messages.append({"role": "user", "content": content})
    body: dict = {"model": upstream_model, "messages": messages}
    if req.tools:
        body["tools"] = [_render_tool(t) for t in req.tools]
        # OpenAI rejects tool_choice and parallel_tool_calls without tools.
        if isinstance(req.tool_choice, dict):
            body["tool_choice"] = {"type": "function", "function": {"name": req.tool_choice["name"]}}
        elif req.tool_choice is not None:
            body["tool_choice"] = req.tool_choice
        if req.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = req.parallel_tool_calls
    optional = {
        "max_completion_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stop": req.stop or None,
        "response_format": _render_response_format(req.response_format),
        "reasoning_effort": (req.reasoning or {}).get("effort"),
        "user": req.user,
    }
    # `metadata` is ours (the client's labels), and OpenAI refuses it unless `store` is on: not forwarded.
    body.update((k, v) for k, v in optional.items() if v is not None)
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _render_assistant(parts: list) -> dict:
    """An assistant message: its text as one string (None when it only calls tools), then its tool calls."""
    text = "".join(p.text for p in parts if isinstance(p, TextPart))
    calls = [
        {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments or "{}"}}
        for p in parts
        if isinstance(p, ToolCallPart)
    ]
    message: dict = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def _render_user_part(part: Any) -> Optional[dict]:
    """A user content part, or None for parts Chat cannot carry (tool results go separately)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart) and part.url:
        image = {"url": part.url}
        if part.detail:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, FilePart) and part.text is not None:
        return {"type": "text", "text": part.text}
    if isinstance(part, FilePart) and part.data:
        file = {"file_data": f"data:{part.media_type or 'application/pdf'};base64,{part.data}"}
        if part.filename:
            file["filename"] = part.filename
        return {"type": "file", "file": file}
    return None  # unresolved file ids, URL-only files, tool results


def _render_tool(tool: ToolSpec) -> dict:
    function = {"name": tool.name, "parameters": tool.parameters}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _render_response_format(fmt: Optional[dict]) -> Optional[dict]:
    if not fmt or fmt.get("type") != "json_schema":
        return fmt
    schema = {"name": fmt.get("name") or "response", "schema": fmt.get("schema"), "strict": fmt.get("strict")}
    return {"type": "json_schema", "json_schema": {k: v for k, v in schema.items() if v is not None}}


# ---------------------------------------------------------------- responses
def parse_response(body: dict) -> Response:
    """An upstream chat.completion as a canonical Response."""
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise CodecError("Not a chat completion: `choices` is missing.")
    response = Response(id=body.get("id") or "", model=body.get("model") or "", usage=reported_usage(body.get("usage")))
    if not body["choices"]:
        return response
    choice = body["choices"][0]
    if not isinstance(choice, dict):
        raise CodecError("Not a chat completion: `choices[0]` is not an object.")
    message = choice.get("message") or {}
    reasoning = _reasoning_text(message)
    if reasoning:
        response.parts.append(ReasoningPart(text=reasoning))
    text = message.get("content") or message.get("refusal")
    if isinstance(text, str) and text:
        cited = [sources.from_url_citation(a) for a in message.get("annotations") or []]
        response.parts.append(TextPart(text=text, annotations=[a for a in cited if a],
                                       refusal=not message.get("content")))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        call_id, name, arguments = call.get("id") or "", function.get("name") or "", function.get("arguments") or ""
        response.parts.append(ToolCallPart(id=call_id, name=name, arguments=arguments))
    response.stop_reason = FINISH_TO_STOP.get(choice.get("finish_reason"), STOP_END_TURN)
    if message.get("refusal") and not message.get("content"):
        response.stop_reason = STOP_REFUSAL
    return response


def _reasoning_text(obj: dict) -> str:
    """Reasoning text some OpenAI-compatible servers add (`reasoning_content`, or `reasoning`)."""
    value = obj.get("reasoning_content") or obj.get("reasoning")
    return value if isinstance(value, str) else ""


def reported_usage(raw: Any) -> Usage:
    """The usage a Chat body or chunk reports, in the shapes OpenAI-compatible servers use (none: not reported)."""
    if not isinstance(raw, dict):
        return Usage()
    usage = _parse_usage(_openai_shaped(raw))
    usage.reported = True
    return usage


def _openai_shaped(raw: dict) -> dict:
    """Other servers' usage figures in OpenAI's places.

    Reasoning reported beside `completion_tokens` rather than inside it (the total says so, or it exceeds
    them) is output too; DeepSeek's cache hits and Anthropic-style cache figures are cache reads and writes.
    """
    shaped = dict(raw)
    prompt = dict(raw.get("prompt_tokens_details") or {})
    completion = raw.get("completion_tokens_details") or {}
    reasoning, output = completion.get("reasoning_tokens") or 0, raw.get("completion_tokens") or 0
    beside = (raw.get("prompt_tokens") or 0) + output + reasoning
    if reasoning and (reasoning > output or (raw.get("total_tokens") == beside and raw.get("total_tokens"))):
        shaped["completion_tokens"] = output + reasoning
    if not prompt.get("cached_tokens"):
        prompt["cached_tokens"] = raw.get("prompt_cache_hit_tokens") or raw.get("cache_read_input_tokens") or 0
    if not prompt.get("cache_write_tokens"):
        prompt["cache_write_tokens"] = raw.get("cache_creation_input_tokens") or 0
    shaped["prompt_tokens_details"] = prompt
    return shaped


def _parse_usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        cache_write_tokens=prompt_details.get("cache_write_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _render_usage(usage: Usage) -> dict:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def render_response(resp: Response, ctx: RenderContext) -> dict:
    """The canonical Response as a chat.completion."""
    message = {**_render_assistant(resp.parts), "refusal": None}
    texts = [p for p in resp.parts if isinstance(p, TextPart)]
    if texts and all(p.refusal for p in texts):  # the model declined: Chat says so in `refusal`
        message.update(content=None, refusal=message["content"])
    annotations = sources.chat_annotations(texts)
    if annotations:
        message["annotations"] = annotations
    reasoning = "".join(p.text for p in resp.parts if isinstance(p, ReasoningPart))
    if reasoning:
        message["reasoning_content"] = reasoning
    details = [d for p in resp.parts if isinstance(p, ReasoningPart) for d in opaque_reasoning.chat_details(p)]
    if details:  # what sends the reasoning back to its provider intact (signatures, encrypted content)
        message["reasoning_details"] = details
    finish_reason = STOP_TO_FINISH.get(resp.stop_reason, "stop")
    return {
        "id": ctx.response_id,
        "object": "chat.completion",
        "created": ctx.created_at,
        "model": ctx.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": _render_usage(resp.usage),
    }


# ---------------------------------------------------------------- streams
class StreamParser:
    """Reads an upstream Chat stream into canonical stream events."""

    def __init__(self) -> None:
        self._next_index = 0
        self._text_index: Optional[int] = None
        self._reasoning_index: Optional[int] = None
        self._tool_indexes: dict[int, int] = {}  # Chat tool_calls[].index -> canonical part index

    def _allocate(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    def feed(self, event: Optional[str], data: str) -> list[StreamEvent]:
        """The canonical events of one SSE event (Chat sends no event names)."""
        data = data.strip()
        if not data or data == "[DONE]":
            return []
        try:
            chunk = json_codec.loads(data)
        except ValueError as exc:
            raise CodecError(f"Invalid JSON in the upstream stream: {data[:200]!r}") from exc
        if not isinstance(chunk, dict):
            raise CodecError(f"Unexpected data in the upstream stream: {data[:200]!r}")
        if chunk.get("error"):
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            error_type = error.get("type") or error.get("code") or "api_error"
            return [StreamEvent("error", text=str(error.get("message") or error), error_type=str(error_type))]
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events.extend(self._choice_events(choice))
        if isinstance(chunk.get("usage"), dict):
            events.append(StreamEvent("usage", usage=reported_usage(chunk["usage"])))
        return events

    def _choice_events(self, choice: dict) -> list[StreamEvent]:
        events = []
        delta = choice.get("delta") or {}
        reasoning = _reasoning_text(delta)
        if reasoning:
            if self._reasoning_index is None:
                self._reasoning_index = self._allocate()
            events.append(StreamEvent("reasoning", index=self._reasoning_index, text=reasoning))
        text = delta.get("content") or delta.get("refusal")  # a refusal reads as text, as in parse_response
        if isinstance(text, str) and text:
            if self._text_index is None:
                self._text_index = self._allocate()
            events.append(StreamEvent("text", index=self._text_index, text=text))
        for position, call in enumerate(delta.get("tool_calls") or []):
            chat_index = call.get("index", position)
            function = call.get("function") or {}
            if chat_index not in self._tool_indexes:
                self._tool_indexes[chat_index] = index = self._allocate()
                call_id = call.get("id") or f"call_{index}"
                events.append(StreamEvent("tool_call", index=index, call_id=call_id, name=function.get("name") or ""))
            if function.get("arguments"):
                index = self._tool_indexes[chat_index]
                events.append(StreamEvent("tool_args", index=index, text=function["arguments"]))
        if choice.get("finish_reason"):
            events.append(StreamEvent("finish", stop_reason=FINISH_TO_STOP.get(choice["finish_reason"], STOP_END_TURN)))
        return events

    def close(self) -> list[StreamEvent]:
        """Events still pending at the end of the stream (none: Chat chunks are self-contained)."""
        return []


class StreamRenderer:
    """Writes canonical stream events as chat.completion.chunk payloads, ending with "[DONE]"."""

    def __init__(self, ctx: RenderContext):
        self.ctx = ctx
        self._started = False
        self._closed = False
        self._tool_indexes: dict[int, int] = {}  # canonical part index -> Chat tool_calls[].index
        self._usage = Usage()
        self._stop_reason: Optional[str] = None

    def _chunk(self, delta: dict, finish_reason: Optional[str] = None) -> tuple[None, dict]:
        chunk: dict = {
            "id": self.ctx.response_id,
            "object": "chat.completion.chunk",
            "created": self.ctx.created_at,
            "model": self.ctx.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.ctx.include_usage:
            chunk["usage"] = None
        return None, chunk

    def _start(self) -> list:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def feed(self, ev: StreamEvent) -> list[tuple[None, Any]]:
        """The chunks for one canonical event (usage and finish are held for close())."""
        if self._closed:
            return []
        if ev.type == "usage" and ev.usage:
            self._usage.merge(ev.usage)
        elif ev.type == "finish":
            self._stop_reason = ev.stop_reason
        elif ev.type == "error":
            return self.fail(ev.text, ev.error_type or "api_error")
        elif ev.type == "text" and ev.text:
            return self._start() + [self._chunk({"content": ev.text})]
        elif ev.type == "reasoning" and (ev.signature or ev.part):
            part = ev.part if isinstance(ev.part, ReasoningPart) else ReasoningPart(signature=ev.signature)
            text = [self._chunk({"reasoning_content": ev.text})] if ev.text else []
            details = [{**d, "index": ev.index} for d in opaque_reasoning.chat_details(part)]
            return self._start() + text + ([self._chunk({"reasoning_details": details})] if details else [])
        elif ev.type == "reasoning" and ev.text:
            return self._start() + [self._chunk({"reasoning_content": ev.text})]
        elif ev.type == "tool_call":
            self._tool_indexes[ev.index] = index = len(self._tool_indexes)
            function = {"name": ev.name, "arguments": ""}
            call = {"index": index, "id": ev.call_id, "type": "function", "function": function}
            return self._start() + [self._chunk({"tool_calls": [call]})]
        elif ev.type == "tool_args" and ev.text and ev.index in self._tool_indexes:
            call = {"index": self._tool_indexes[ev.index], "function": {"arguments": ev.text}}
            return self._start() + [self._chunk({"tool_calls": [call]})]
        return []

    def close(self) -> list[tuple[None, Any]]:
        """The final chunk with finish_reason, the usage chunk when asked for, and "[DONE]"."""
        if self._closed:
            return []
        self._closed = True
        default = STOP_TOOL_USE if self._tool_indexes else STOP_END_TURN
        finish = STOP_TO_FINISH.get(self._stop_reason or default, "stop")
        out = self._start() + [self._chunk({}, finish)]
        if self.ctx.include_usage:
            usage_chunk = dict(out[-1][1], choices=[], usage=_render_usage(self._usage))
            out.append((None, usage_chunk))
        return out + [(None, "[DONE]")]

    def fail(self, message: str, error_type: Optional[str] = None) -> list[tuple[None, Any]]:
        """An error payload (the openai SDK raises on it); nothing is sent after it."""
        if self._closed:
            return []
        self._closed = True
        error = {"message": message, "type": error_type or "api_error", "param": None, "code": None}
        return [(None, {"error": error})]
