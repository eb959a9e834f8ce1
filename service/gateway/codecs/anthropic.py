"""The Anthropic Messages codec: /v1/messages bodies, messages and SSE streams to and from the canonical turn."""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional
from urllib.parse import unquote_to_bytes

from ... import json_codec
from ..canonical import (
    STOP_END_TURN,
    STOP_MAX_TOKENS,
    FilePart,
    ImagePart,
    Message,
    Part,
    ReasoningPart,
    RenderContext,
    Request,
    Response,
    ServerToolPart,
    StreamEvent,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    Usage,
)
from . import CodecError, opaque_reasoning, sources

DEFAULT_MAX_TOKENS = 4096
# Anthropic wants the first turn to be the user's; this stands in when the history starts elsewhere.
PLACEHOLDER_TEXT = "(continued)"
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}
_TOOL_CHOICE_IN = {"auto": "auto", "any": "required", "none": "none"}
_TOOL_CHOICE_OUT = {"auto": "auto", "required": "any", "none": "none"}
_NOT_A_TOOL_ID_CHAR = re.compile(r"[^a-zA-Z0-9_-]")


# ---------------------------------------------------------------- client requests
def parse_request(body: dict) -> Request:
    """A client's /v1/messages body as a canonical Request; CodecError when the format forbids it."""
    if not isinstance(body, dict):
        raise CodecError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise CodecError("`model` is required and must be a string.", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise CodecError("`messages` must be a non-empty list of messages.", "messages")
    max_tokens = body.get("max_tokens")
    if not _is_positive_int(max_tokens):
        raise CodecError("`max_tokens` is required and must be a positive integer.", "max_tokens")
    stop = body.get("stop_sequences") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise CodecError("`stop_sequences` must be a list of strings.", "stop_sequences")
    tool_choice, parallel_tool_calls = _parse_tool_choice(body.get("tool_choice"))
    metadata = body.get("metadata")
    return Request(
        model=model,
        messages=[_parse_message(m, f"messages.{i}") for i, m in enumerate(messages)],
        system=_parse_system(body.get("system")),
        tools=_parse_tools(body.get("tools")),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel_tool_calls,
        max_output_tokens=max_tokens,
        temperature=_optional_number(body, "temperature"),
        top_p=_optional_number(body, "top_p"),
        stop=stop,
        stream=body.get("stream") is True,
        metadata=metadata if isinstance(metadata, dict) else None,
        reasoning=_parse_reasoning(body.get("thinking"), body.get("output_config")),
    )


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _optional_number(body: dict, name: str) -> Optional[float]:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise CodecError(f"`{name}` must be a number.", name)
    return value


def _parse_system(system: Any) -> Optional[str]:
    if system is None or isinstance(system, str):
        return system or None
    if not isinstance(system, list):
        raise CodecError("`system` must be a string or a list of text blocks.", "system")
    texts = [b.get("text") for b in system if isinstance(b, dict) and b.get("type") == "text"]
    return "\n\n".join(t for t in texts if isinstance(t, str) and t) or None


def _parse_message(message: Any, where: str) -> Message:
    if not isinstance(message, dict):
        raise CodecError(f"`{where}` must be an object.", where)
    role = message.get("role")
    # "system" is not in the classic API but the current SDK sends it; canonical has a place for it.
    if role not in ("user", "assistant", "system"):
        raise CodecError(f'`{where}.role` must be "user" or "assistant", got {role!r}.', f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return Message(role=role, parts=[TextPart(text=content)])
    if not isinstance(content, list):
        raise CodecError(f"`{where}.content` must be a string or a list of content blocks.", f"{where}.content")
    parts = [_parse_block(block, f"{where}.content.{j}") for j, block in enumerate(content)]
    return Message(role=role, parts=[p for p in parts if p is not None])


def _parse_block(block: Any, where: str) -> Optional[Part]:
    """One content block as a part; None for block types canonical cannot carry (server tools, search results)."""
    if not isinstance(block, dict):
        raise CodecError(f"`{where}` must be a content block object.", where)
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise CodecError(f"`{where}.text` must be a string.", f"{where}.text")
        cited = [sources.from_anthropic_citation(c) for c in block.get("citations") or []]
        return TextPart(text=block["text"], annotations=[c for c in cited if c])
    if kind == "server_tool_use":
        return ServerToolPart(id=str(block.get("id") or ""), name=str(block.get("name") or ""),
                              input=block.get("input") if isinstance(block.get("input"), dict) else {})
    if kind == "image":
        return _parse_image(block.get("source"))
    if kind == "document":
        return _parse_document(block)
    if kind == "tool_use":
        return ToolCallPart(id=str(block.get("id") or ""), name=str(block.get("name") or ""),
                            arguments=json.dumps(block.get("input") or {}))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            items = [_parse_block(b, f"{where}.content.{k}") for k, b in enumerate(content)]
            content = [p for p in items if isinstance(p, (TextPart, ImagePart))]
        return ToolResultPart(call_id=str(block.get("tool_use_id") or ""),
                              content=content if isinstance(content, (str, list)) else "",
                              is_error=bool(block.get("is_error")))
    if kind == "thinking":  # a signature of ours carries another provider's reasoning
        return opaque_reasoning.unwrap(block.get("signature"), block.get("thinking") or "") or \
            ReasoningPart(text=block.get("thinking") or "", signature=block.get("signature"))
    if kind == "redacted_thinking":
        return ReasoningPart(redacted_data=block.get("data"))
    return None


def _parse_image(source: Any) -> Optional[ImagePart]:
    source = source if isinstance(source, dict) else {}
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(url=f"data:{source.get('media_type')};base64,{source.get('data')}")
    if kind == "url":
        return ImagePart(url=source.get("url"))
    return None  # "file" sources name Anthropic's Files API, not ours


def _parse_document(block: dict) -> Optional[FilePart]:
    source = block.get("source") if isinstance(block.get("source"), dict) else {}
    kind, title = source.get("type"), block.get("title")
    if kind == "base64":
        return FilePart(data=source.get("data"), media_type=source.get("media_type") or "application/pdf",
                        filename=title)
    if kind == "text":
        return FilePart(text=source.get("data") or "", media_type="text/plain", filename=title)
    if kind == "url":
        return FilePart(url=source.get("url"), filename=title)
    return None


def _parse_tools(tools: Any) -> list:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise CodecError("`tools` must be a list.", "tools")
    specs = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise CodecError(f"`tools.{i}` must be an object.", f"tools.{i}")
        if not isinstance(tool.get("input_schema"), dict):
            continue  # server tools (web_search_…, bash_…) run at Anthropic; no upstream can honour them
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise CodecError(f"`tools.{i}.name` is required.", f"tools.{i}.name")
        specs.append(ToolSpec(name=tool["name"], description=tool.get("description"), parameters=tool["input_schema"]))
    return specs


def _parse_tool_choice(choice: Any) -> tuple:
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        raise CodecError("`tool_choice` must be an object.", "tool_choice")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    kind = choice.get("type")
    if kind == "tool":
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise CodecError('`tool_choice.name` is required when its type is "tool".', "tool_choice.name")
        return {"name": choice["name"]}, parallel
    if kind not in _TOOL_CHOICE_IN:
        raise CodecError(f"`tool_choice.type` must be auto, any, tool or none, got {kind!r}.", "tool_choice.type")
    return _TOOL_CHOICE_IN[kind], parallel


def _parse_reasoning(thinking: Any, output_config: Any) -> Optional[dict]:
    reasoning = {}
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        if _is_positive_int(thinking.get("budget_tokens")):
            reasoning["budget_tokens"] = thinking["budget_tokens"]
    if isinstance(output_config, dict) and isinstance(output_config.get("effort"), str):
        reasoning["effort"] = output_config["effort"]
    return reasoning or None


# ---------------------------------------------------------------- upstream requests
def render_request(req: Request, upstream_model: str) -> dict:
    """A canonical Request as an Anthropic Messages body: alternating turns, tool results first, system folded."""
    system = [req.system] if req.system else []
    turns: list = []
    for message in req.messages:
        if message.role == "system":
            system += [t for t in [message.text()] if t]
            continue
        for part in message.parts:
            role = _turn_role(part, message.role)
            block = _render_block(part, role)
            if block is None:
                continue
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].append(block)
            else:
                turns.append({"role": role, "content": [block]})
    for turn in turns:
        if turn["role"] == "user":  # a stable sort: results first, in their order, then the rest
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    _trim_final_assistant_turn(turns)
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": PLACEHOLDER_TEXT}]})

    body: dict = {"model": upstream_model, "max_tokens": req.max_output_tokens or DEFAULT_MAX_TOKENS, "messages": turns}
    if system:
        body["system"] = "\n\n".join(system)
    tools = [_render_tool(spec) for spec in req.tools]
    if tools:
        body["tools"] = tools
        choice = _render_tool_choice(req.tool_choice, req.parallel_tool_calls)
        if choice:
            body["tool_choice"] = choice
    if req.temperature is not None:
        body["temperature"] = min(max(req.temperature, 0.0), 1.0)  # OpenAI allows up to 2
    if req.top_p is not None:
        body["top_p"] = req.top_p
    stop = [s for s in req.stop if s.strip()]  # whitespace-only sequences are rejected
    if stop:
        body["stop_sequences"] = stop
    budget = (req.reasoning or {}).get("budget_tokens")
    if budget:
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    user_id = (req.metadata or {}).get("user_id") or req.user
    if user_id:
        body["metadata"] = {"user_id": str(user_id)}
    if req.stream:
        body["stream"] = True
    return body


def _turn_role(part: Part, message_role: str) -> str:
    if isinstance(part, ToolResultPart):
        return "user"
    if isinstance(part, ToolCallPart):
        return "assistant"
    return "assistant" if message_role == "assistant" else "user"


def _render_block(part: Part, role: str) -> Optional[dict]:
    """One part as a content block; None for what Anthropic would reject (empty text, unsigned thinking)."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ImagePart):
        return _render_image(part)
    if isinstance(part, FilePart):
        return _render_file(part)
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": _tool_id(part.id), "name": part.name, "input": part.arguments_object()}
    if isinstance(part, ToolResultPart):
        return _render_tool_result(part)
    if isinstance(part, ReasoningPart) and role == "assistant":
        if part.redacted_data:
            return {"type": "redacted_thinking", "data": part.redacted_data}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def _render_image(part: ImagePart) -> Optional[dict]:
    url = part.url or ""
    if url.startswith("data:"):
        media_type, data = _split_data_url(url)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url:
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None  # only a file id: the gateway resolves those before rendering


def _render_file(part: FilePart) -> Optional[dict]:
    if part.text is not None:
        source = {"type": "text", "media_type": "text/plain", "data": part.text}
    elif part.data:
        media_type, data = part.media_type, part.data
        if data.startswith("data:"):
            media_type, data = _split_data_url(data)
        media_type = media_type or "application/pdf"
        if media_type.startswith("image/"):
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        if media_type.startswith("text/"):
            try:
                text = base64.b64decode(data).decode("utf-8", "replace")
            except ValueError:
                return None
            source = {"type": "text", "media_type": "text/plain", "data": text}
        else:  # PDFs; other types are sent as they are, so the upstream names what it does not take
            source = {"type": "base64", "media_type": media_type, "data": data}
    elif part.url:
        source = {"type": "url", "url": part.url}
    else:
        return None
    block = {"type": "document", "source": source}
    if part.filename:
        block["title"] = part.filename
    return block


def _split_data_url(url: str) -> tuple:
    """`data:<media type>[;base64],<data>` as (media type, base64 data)."""
    header, _, data = url[len("data:"):].partition(",")
    if header.endswith(";base64"):
        return header[: -len(";base64")] or None, data
    return header.split(";")[0] or None, base64.b64encode(unquote_to_bytes(data)).decode()


def _render_tool_result(part: ToolResultPart) -> dict:
    block: dict = {"type": "tool_result", "tool_use_id": _tool_id(part.call_id)}
    if isinstance(part.content, str):
        content: Any = part.content
    else:
        content = [b for b in (_render_block(p, "user") for p in part.content) if b is not None]
    if content:
        block["content"] = content
    if part.is_error:
        block["is_error"] = True
    return block


def _tool_id(raw: str) -> str:
    """A tool_use id Anthropic accepts (^[a-zA-Z0-9_-]+$), the same for the call and its result."""
    return _NOT_A_TOOL_ID_CHAR.sub("_", raw) or "toolu_unknown"


def _client_tool_id(raw: str) -> str:
    """A tool_use id for an Anthropic client: valid, and with the `toolu_` prefix whatever the upstream said."""
    clean = _tool_id(raw)
    return clean if clean.startswith("toolu_") else f"toolu_{clean}"


def _trim_final_assistant_turn(turns: list) -> None:
    """A final assistant (prefill) turn may not end with whitespace."""
    last = turns[-1]["content"] if turns and turns[-1]["role"] == "assistant" else [{}]
    if last[-1].get("type") == "text":
        last[-1] = {**last[-1], "text": last[-1]["text"].rstrip()}
        if not last[-1]["text"]:
            last.pop()
            if not last:
                turns.pop()


def _render_tool(spec: ToolSpec) -> dict:
    tool: dict = {"name": spec.name, "input_schema": {"type": "object", **(spec.parameters or {})}}
    if spec.description:
        tool["description"] = spec.description
    return tool


def _render_tool_choice(choice: Any, parallel_tool_calls: Optional[bool]) -> Optional[dict]:
    if isinstance(choice, dict) and choice.get("name"):
        rendered = {"type": "tool", "name": choice["name"]}
    elif choice in _TOOL_CHOICE_OUT:
        rendered = {"type": _TOOL_CHOICE_OUT[choice]}
    elif parallel_tool_calls is False:
        rendered = {"type": "auto"}
    else:
        return None
    if parallel_tool_calls is False and rendered["type"] != "none":
        rendered["disable_parallel_tool_use"] = True
    return rendered


# ---------------------------------------------------------------- complete answers
def parse_response(body: dict) -> Response:
    """An upstream Message as a canonical Response; CodecError when the body is not a message."""
    is_message = isinstance(body, dict) and body.get("type", "message") == "message"
    if not is_message or not isinstance(body.get("content"), list):
        raise CodecError("The upstream answer is not an Anthropic message.")
    parts = [_parse_block(block, f"content.{i}") for i, block in enumerate(body["content"])]
    servers = {p.id: p for p in parts if isinstance(p, ServerToolPart)}
    for block in body["content"]:  # a server tool's results name its call
        if isinstance(block, dict) and block.get("tool_use_id") in servers:
            servers[block["tool_use_id"]].sources += sources.anthropic_search_results(block)
    if body.get("stop_reason") == "refusal":
        for part in parts:
            if isinstance(part, TextPart):
                part.refusal = True
    return Response(
        id=str(body.get("id") or ""),
        model=str(body.get("model") or ""),
        parts=[p for p in parts if isinstance(p, (TextPart, ToolCallPart, ReasoningPart, ServerToolPart))],
        stop_reason=_stop_reason(body.get("stop_reason")),
        stop_sequence=body.get("stop_sequence"),
        usage=reported_usage(body.get("usage")),
    )


def _stop_reason(value: Any) -> str:
    # Newer than the canonical vocabulary; it is a length stop for every other format.
    if value == "model_context_window_exceeded":
        return STOP_MAX_TOKENS
    return value or STOP_END_TURN


def reported_usage(raw: Any) -> Usage:
    """The usage an Anthropic body or event reports, in every shape it comes in (none: not reported)."""
    if not isinstance(raw, dict):
        return Usage()
    usage = _parse_usage(_billed_figures(raw))
    usage.reported = True
    server_tools = raw.get("server_tool_use") if isinstance(raw.get("server_tool_use"), dict) else {}
    usage.web_search_requests = server_tools.get("web_search_requests") or 0
    return usage


_ITERATED = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def _billed_figures(raw: dict) -> dict:
    """The figures to bill: with `iterations` (compaction, advisor, server tool loops), every sampling counts.

    A compaction iteration's tokens are not in the top-level figures, so the top level alone bills too little.
    """
    iterations = [i for i in raw.get("iterations") or [] if isinstance(i, dict)]
    if not iterations:
        return raw
    summed = {name: sum(i.get(name) or 0 for i in iterations) for name in _ITERATED}
    billed = {**raw, **{name: max(summed[name], raw.get(name) or 0) for name in _ITERATED}}
    billed.pop("cache_creation", None)  # its split is of the top-level writes only
    return billed


def _parse_usage(raw: dict) -> Usage:
    """Anthropic usage as canonical: cached and cache-written tokens count as input.

    `cache_creation` splits the writes into 5-minute and 1-hour ones (priced apart); without it, every
    write is a 5-minute one, as `cache_creation_input_tokens` alone means.
    """
    cached = raw.get("cache_read_input_tokens") or 0
    created = raw.get("cache_creation_input_tokens") or 0
    split = raw.get("cache_creation") if isinstance(raw.get("cache_creation"), dict) else {}
    hour = split.get("ephemeral_1h_input_tokens") or 0
    if split:
        created = max(created, (split.get("ephemeral_5m_input_tokens") or 0) + hour)
    details = raw.get("output_tokens_details") if isinstance(raw.get("output_tokens_details"), dict) else {}
    return Usage(
        input_tokens=(raw.get("input_tokens") or 0) + cached + created,
        output_tokens=raw.get("output_tokens") or 0,
        cached_tokens=cached,
        cache_write_tokens=created,
        cache_write_1h_tokens=hour,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )


def _render_usage(usage: Usage) -> dict:
    return {
        "input_tokens": max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens),
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def render_response(resp: Response, ctx: RenderContext) -> dict:
    """A canonical Response as an Anthropic Message for the client."""
    blocks = [_render_output_part(part, f"{ctx.response_id}_{i}") for i, part in enumerate(resp.parts)]
    return {
        "id": ctx.response_id,
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [b for b in blocks if b is not None],
        "stop_reason": resp.stop_reason if resp.stop_reason in STOP_REASONS else STOP_END_TURN,
        "stop_sequence": resp.stop_sequence,
        "usage": _render_usage(resp.usage),
    }


def _render_output_part(part: Part, fallback_id: str) -> Optional[dict]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": _client_tool_id(part.id or fallback_id), "name": part.name,
                "input": part.arguments_object()}
    if isinstance(part, ReasoningPart):
        if part.redacted_data:
            return {"type": "redacted_thinking", "data": part.redacted_data}
        if part.signature:
            return {"type": "thinking", "thinking": part.text, "signature": part.signature}
        if part.text or part.encrypted_content:  # another provider's: resendable through our own signature
            return {"type": "thinking", "thinking": part.text, "signature": opaque_reasoning.wrap(part)}
    return None


# ---------------------------------------------------------------- streams
class StreamParser:
    """Reads an upstream Anthropic SSE stream into canonical stream events; part index = block index."""

    def __init__(self) -> None:
        self._usage: dict = {}  # raw Anthropic figures so far; message_delta only repeats some of them
        self._parts: set = set()  # block indexes that produced a canonical part
        self._started: set = set()  # block indexes whose start was understood: only their deltas are read
        self._server: dict = {}  # block index -> [server tool part, its input JSON so far]
        self._finished = False

    def feed(self, event: Optional[str], data: str) -> list:
        """The canonical events for one SSE event; CodecError when its data is not a JSON object."""
        if not data or not data.strip():
            return []
        try:
            payload = json_codec.loads(data)
        except ValueError as exc:
            raise CodecError(f"The upstream stream sent invalid JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise CodecError("The upstream stream sent an event that is not a JSON object.")
        kind = payload.get("type") or event
        if kind == "message_start":
            return self._message_start(payload.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(payload.get("index", 0), payload.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(payload.get("index", 0), payload.get("delta") or {})
        if kind == "content_block_stop":
            index = payload.get("index", 0)
            return [StreamEvent("part_end", index=index)] if index in self._parts else []
        if kind == "message_delta":
            events = self._usage_events(payload.get("usage"))
            delta = payload.get("delta") or {}
            if delta.get("stop_reason"):
                events += self._finish(delta["stop_reason"], delta.get("stop_sequence"))
            return events
        if kind == "message_stop" and not self._finished:  # message_stop ends a stream, whatever came before
            return self._finish(None, None)
        if kind == "error":
            error = payload.get("error") or {}
            return [StreamEvent("error", text=str(error.get("message") or "The upstream stream failed."),
                                error_type=error.get("type"))]
        return []  # message_stop, ping, and whatever Anthropic adds next

    def close(self) -> list:
        """Nothing is held back: an Anthropic stream needs no flushing."""
        return []

    def _message_start(self, message: dict) -> list:
        """Usage so far, and whatever content and stop reason the start already carries (a whole message may)."""
        events = self._usage_events(message.get("usage"))
        for index, block in enumerate(message.get("content") or []):
            if isinstance(block, dict):
                started = self._block_start(index, block)
                events += started + ([StreamEvent("part_end", index=index)] if started else [])
        if message.get("stop_reason"):
            events += self._finish(message["stop_reason"], message.get("stop_sequence"))
        return events

    def _finish(self, stop_reason: Optional[str], stop_sequence: Optional[str]) -> list:
        self._finished = True
        return [StreamEvent("finish", stop_reason=_stop_reason(stop_reason) if stop_reason else None,
                            stop_sequence=stop_sequence)]

    def _usage_events(self, raw: Any) -> list:
        if not isinstance(raw, dict):
            return []
        self._usage.update({k: v for k, v in raw.items() if v is not None})
        return [StreamEvent("usage", usage=reported_usage(self._usage))]

    def _block_start(self, index: int, block: dict) -> list:
        kind = block.get("type")
        if kind in ("text", "tool_use", "thinking"):
            self._started.add(index)
        if kind == "server_tool_use":
            self._server[index] = [ServerToolPart(id=str(block.get("id") or ""), name=str(block.get("name") or "")),
                                   json.dumps(block["input"]) if block.get("input") else ""]
            return []
        called = next((i for i, (part, _) in self._server.items() if part.id == block.get("tool_use_id")), None)
        if called is not None:  # a server tool's results: the call is whole now
            part, arguments = self._server.pop(called)
            part.input = ToolCallPart(id="", name="", arguments=arguments).arguments_object()
            part.sources = sources.anthropic_search_results(block)
            self._parts.add(called)
            return [StreamEvent("server_tool", index=called, part=part), StreamEvent("part_end", index=called)]
        if kind == "text" and block.get("text"):
            events = [StreamEvent("text", index=index, text=block["text"])]
        elif kind == "tool_use":
            events = [StreamEvent("tool_call", index=index, call_id=block.get("id"), name=block.get("name"))]
            if block.get("input"):  # some compatible servers send the whole input here
                events.append(StreamEvent("tool_args", index=index, text=json.dumps(block["input"])))
        elif kind == "thinking":
            events = [StreamEvent("reasoning", index=index, text=block.get("thinking") or "",
                                  signature=block.get("signature") or None)]
        elif kind == "redacted_thinking" and block.get("data"):
            events = [StreamEvent("reasoning", index=index, part=ReasoningPart(redacted_data=block["data"]))]
        else:  # empty text (deltas follow), redacted thinking, server tool blocks and blocks newer than this parser
            return []
        self._parts.add(index)
        return events

    def _block_delta(self, index: int, delta: dict) -> list:
        kind = delta.get("type")
        if index in self._server and kind == "input_json_delta":
            self._server[index][1] += delta.get("partial_json") or ""
            return []
        if index not in self._started:
            return []  # the pieces of a block this parser did not take up (a server tool's query is no client call)
        if kind == "citations_delta":
            citation = sources.from_anthropic_citation(delta.get("citation"))
            return [StreamEvent("annotation", index=index, part=citation)] if citation else []
        if kind == "text_delta" and delta.get("text"):
            event = StreamEvent("text", index=index, text=delta["text"])
        elif kind == "input_json_delta" and delta.get("partial_json"):
            event = StreamEvent("tool_args", index=index, text=delta["partial_json"])
        elif kind == "thinking_delta" and delta.get("thinking"):
            event = StreamEvent("reasoning", index=index, text=delta["thinking"])
        elif kind == "signature_delta" and delta.get("signature"):
            event = StreamEvent("reasoning", index=index, signature=delta["signature"])
        else:
            return []
        self._parts.add(index)
        return [event]


class StreamRenderer:
    """Writes canonical stream events as Anthropic SSE events: (event name, payload) with name == payload type."""

    def __init__(self, ctx: RenderContext):
        self.ctx = ctx
        self.usage = Usage()
        self.stop_reason = STOP_END_TURN
        self.stop_sequence: Optional[str] = None
        self._started = False
        self._closed = False
        self._blocks: dict = {}  # canonical part index -> (content block index, block type)
        self._count = 0  # content blocks started
        self._open: Optional[int] = None  # the content block index still open
        self._signed: set = set()  # thinking blocks whose signature was sent
        self._thinking: set = set()  # thinking blocks

    def feed(self, ev: StreamEvent) -> list:
        """The SSE events for one canonical event (message_start comes with the first)."""
        if self._closed:
            return []
        if ev.type == "error":
            return self.fail(ev.text, ev.error_type)
        if ev.type == "usage" and ev.usage:
            self.usage.merge(ev.usage)
        out = self._start()
        if ev.type == "finish":
            self.stop_reason = ev.stop_reason or self.stop_reason
            self.stop_sequence = ev.stop_sequence
        elif ev.type == "part_end":
            if ev.index in self._blocks and self._blocks[ev.index][0] == self._open:
                out += self._close_open_block()
        elif ev.type == "text":
            out += self._ensure_block(ev.index, "text")
            out += self._delta(ev.index, {"type": "text_delta", "text": ev.text}) if ev.text else []
        elif ev.type == "reasoning" and isinstance(ev.part, ReasoningPart) and ev.part.redacted_data:
            out += self._ensure_block(ev.index, "redacted_thinking", data=ev.part.redacted_data)
        elif ev.type == "reasoning":
            out += self._ensure_block(ev.index, "thinking")
            out += self._delta(ev.index, {"type": "thinking_delta", "thinking": ev.text}) if ev.text else []
            signature = ev.signature or (opaque_reasoning.wrap(ev.part) if isinstance(ev.part, ReasoningPart) else None)
            if signature:
                self._signed.add(self._blocks[ev.index][0])
                out += self._delta(ev.index, {"type": "signature_delta", "signature": signature})
        elif ev.type in ("tool_call", "tool_args"):
            out += self._ensure_block(ev.index, "tool_use", ev.call_id, ev.name)
            if ev.type == "tool_args" and ev.text:
                out += self._delta(ev.index, {"type": "input_json_delta", "partial_json": ev.text})
        return out

    def close(self) -> list:
        """End the open block, then message_delta (stop reason, final usage) and message_stop."""
        if self._closed:
            return []
        out = self._start() + self._close_open_block()
        self._closed = True
        usage = _render_usage(self.usage) if self.usage.input_tokens else {}
        usage["output_tokens"] = self.usage.output_tokens
        stop_reason = self.stop_reason if self.stop_reason in STOP_REASONS else STOP_END_TURN
        out.append(("message_delta", {"type": "message_delta", "usage": usage,
                                      "delta": {"stop_reason": stop_reason, "stop_sequence": self.stop_sequence}}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def fail(self, message: str, error_type: Optional[str] = None) -> list:
        """An error event, which makes Anthropic clients raise; nothing follows it."""
        self._closed = True
        return [("error", {"type": "error", "error": {"type": error_type or "api_error", "message": message}})]

    def _start(self) -> list:
        if self._started:
            return []
        self._started = True
        usage = {**_render_usage(self.usage), "output_tokens": 1}  # what Anthropic itself sends at the start
        message = {"id": self.ctx.response_id, "type": "message", "role": "assistant", "model": self.ctx.model,
                   "content": [], "stop_reason": None, "stop_sequence": None, "usage": usage}
        return [("message_start", {"type": "message_start", "message": message})]

    def _ensure_block(self, index: int, kind: str, call_id: Optional[str] = None, name: Optional[str] = None,
                      data: Optional[str] = None) -> list:
        known = self._blocks.get(index)
        if known and known[1] == kind:
            return []  # late pieces of a closed block still name it; the SDK indexes blocks, not order
        out = self._close_open_block()
        block_index, self._count = self._count, self._count + 1
        if kind == "text":
            block: dict = {"type": "text", "text": ""}
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            self._thinking.add(block_index)
        elif kind == "redacted_thinking":
            block = {"type": "redacted_thinking", "data": data or ""}
        else:
            block = {"type": "tool_use", "id": _client_tool_id(call_id or f"{self.ctx.response_id}_{index}"),
                     "name": name or "", "input": {}}
        self._blocks[index] = (block_index, kind)
        self._open = block_index
        out.append(("content_block_start",
                    {"type": "content_block_start", "index": block_index, "content_block": block}))
        return out

    def _delta(self, index: int, delta: dict) -> list:
        block_index = self._blocks[index][0]
        return [("content_block_delta", {"type": "content_block_delta", "index": block_index, "delta": delta})]

    def _close_open_block(self) -> list:
        if self._open is None:
            return []
        index, self._open = self._open, None
        out = []
        if index in self._thinking and index not in self._signed:  # another provider's reasoning: our signature
            signature = opaque_reasoning.wrap(ReasoningPart())
            out.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                "delta": {"type": "signature_delta", "signature": signature}}))
        return out + [("content_block_stop", {"type": "content_block_stop", "index": index})]
