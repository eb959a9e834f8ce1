"""The canonical turn and stream: what every wire format is parsed into and rendered from.

A codec per wire format converts between its JSON and these dataclasses, so N
formats cost N codecs. Nothing here knows HTTP or Flask.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from typing import Any, Optional, Union


# ---------------------------------------------------------------- content parts
@dataclass
class TextPart:
    text: str
    type: str = "text"
    # sources of the text: {"type": "url_citation", "url", "title", "start_index", "end_index", "cited_text"?}
    # with indexes into this part's text (end_index None: to the part's end)
    annotations: list = field(default_factory=list)
    refusal: bool = False  # the model declined: a refusal in the formats that have one


@dataclass
class ImagePart:
    """An image: `url` is an http(s) URL or a `data:` URL; `file_id` one of our files."""

    url: Optional[str] = None
    file_id: Optional[str] = None
    detail: Optional[str] = None
    inlined_from: Optional[str] = None  # the file id `url` was read from (a stored thread keeps only the id)
    type: str = "image"


@dataclass
class FilePart:
    """A document: base64 `data` with its media type, or a URL, or one of our file ids."""

    data: Optional[str] = None
    media_type: Optional[str] = None
    filename: Optional[str] = None
    file_id: Optional[str] = None
    url: Optional[str] = None
    text: Optional[str] = None  # plain-text documents
    inlined_from: Optional[str] = None  # the file id `data` was read from (a stored thread keeps only the id)
    type: str = "file"


@dataclass
class ToolCallPart:
    """A call the model made; `arguments` is a JSON string, as in the OpenAI formats."""

    id: str
    name: str
    arguments: str = ""
    type: str = "tool_call"
    kind: Optional[str] = None  # a Responses client call other than a function (`custom_tool_call`, …)

    def arguments_object(self) -> dict:
        """The arguments parsed; `{}` when empty or not a JSON object (Anthropic's `input` must be one)."""
        try:
            value = json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class ToolResultPart:
    """The result of a tool call; `content` is text or a list of Text/Image parts."""

    call_id: str
    content: Union[str, list] = ""
    is_error: bool = False
    name: Optional[str] = None
    type: str = "tool_result"
    kind: Optional[str] = None  # the Responses call type it answers, when not a function

    def text(self) -> str:
        """The result flattened to text."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


@dataclass
class ReasoningPart:
    """Model reasoning: Anthropic thinking (+signature, or redacted data) or an OpenAI reasoning item."""

    text: str = ""
    signature: Optional[str] = None
    redacted_data: Optional[str] = None
    encrypted_content: Optional[str] = None
    id: Optional[str] = None
    type: str = "reasoning"


@dataclass
class ServerToolPart:
    """A tool the provider ran itself (a web search): shown where the client's format has one, never executed."""

    id: str
    name: str
    input: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)  # [{"url", "title"}] it found
    type: str = "server_tool"


Part = Union[TextPart, ImagePart, FilePart, ToolCallPart, ToolResultPart, ReasoningPart, ServerToolPart]

PART_TYPES = {cls.type: cls for cls in (TextPart, ImagePart, FilePart, ToolCallPart, ToolResultPart, ReasoningPart,
                                        ServerToolPart)}


_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in PART_TYPES.values()}


def part_from_dict(data: dict) -> Part:
    """Rebuild a part from its `to_dict` form."""
    data = dict(data)
    cls = PART_TYPES[data.pop("type")]
    if cls is ToolResultPart and isinstance(data.get("content"), list):
        data["content"] = [part_from_dict(p) for p in data["content"]]
    return cls(**data)


def part_to_dict(part: Part, by_reference: bool = False) -> dict:
    """A JSON-able dict of a part, dropping empty optional fields.

    `by_reference`: content read from one of our files is kept as its file id, to be read again when the
    part is used (a stored thread then holds no copy of the file, however many turns repeat it).
    """
    if by_reference and getattr(part, "inlined_from", None):
        kept = {"type": part.type, "file_id": part.inlined_from}
        for name in ("filename", "detail"):
            if getattr(part, name, None) is not None:
                kept[name] = getattr(part, name)
        return kept
    data = {}
    for name in _FIELD_NAMES[type(part)]:
        value = getattr(part, name)
        if value is None:
            continue
        if name == "content" and isinstance(part, ToolResultPart) and isinstance(value, list):
            data[name] = [part_to_dict(p, by_reference=by_reference) for p in value]
        else:  # containers copied, as dataclasses.asdict would: the dict never aliases the part
            data[name] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
    return data


# ---------------------------------------------------------------- turn
@dataclass
class Message:
    """One message. Roles: `user`, `assistant`, and `system` for mid-conversation system text."""

    role: str
    parts: list = field(default_factory=list)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    def to_dict(self, by_reference: bool = False) -> dict:
        return {"role": self.role, "parts": [part_to_dict(p, by_reference) for p in self.parts]}

    @classmethod
    def from_dict(cls, data: dict) -> "Message":
        return cls(role=data["role"], parts=[part_from_dict(p) for p in data.get("parts", [])])


@dataclass
class ToolSpec:
    name: str
    description: Optional[str] = None
    parameters: dict = field(default_factory=lambda: {"type": "object", "properties": {}})
    kind: Optional[str] = None  # the Responses tool type when not a function (`custom`, `apply_patch`, …)


@dataclass
class Usage:
    input_tokens: int = 0  # all input tokens, cached ones included
    output_tokens: int = 0
    cached_tokens: int = 0  # of input_tokens, read from cache
    cache_write_tokens: int = 0  # of input_tokens, written to cache (5-minute and 1-hour writes)
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, the 1-hour writes
    reasoning_tokens: int = 0  # of output_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def merge(self, other: "Usage") -> None:
        """Take every non-zero figure of `other` (stream usage arrives in pieces)."""
        for name in ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                     "reasoning_tokens"):
            value = getattr(other, name)
            if value:
                setattr(self, name, value)
        if other.reported:  # an upstream's report is whole (parsers keep the figures so far): its zeros count too
            vars(self).update(vars(other))

    # the upstream gave figures (zeros included): they are the answer; False: count locally
    reported: bool = field(default=False, compare=False)
    web_search_requests: int = 0  # server-side web searches the upstream ran (priced per request)


@dataclass
class Request:
    """A request in no particular format.

    tool_choice: None | "auto" | "none" | "required" | {"name": str}.
    response_format: None | {"type": "json_object"} | {"type": "json_schema", "name", "schema", "strict"}.
    reasoning: None | {"effort": str, "budget_tokens": int, "summary": str} (any subset).
    """

    model: str
    messages: list = field(default_factory=list)
    system: Optional[str] = None
    tools: list = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: Optional[bool] = None
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    stop: list = field(default_factory=list)
    stream: bool = False
    metadata: Optional[dict] = None
    response_format: Optional[dict] = None
    reasoning: Optional[dict] = None
    user: Optional[str] = None


# Canonical stop reasons (Anthropic's vocabulary; codecs map to their own).
STOP_END_TURN = "end_turn"
STOP_MAX_TOKENS = "max_tokens"
STOP_TOOL_USE = "tool_use"
STOP_SEQUENCE = "stop_sequence"
STOP_REFUSAL = "refusal"  # content filter
STOP_PAUSE = "pause_turn"


@dataclass
class Response:
    """A complete model answer: output parts (text, tool calls, reasoning), stop reason, usage."""

    id: str = ""
    model: str = ""
    parts: list = field(default_factory=list)
    stop_reason: str = STOP_END_TURN
    stop_sequence: Optional[str] = None
    usage: Usage = field(default_factory=Usage)

    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


# ---------------------------------------------------------------- stream
@dataclass
class StreamEvent:
    """One event of a canonical stream.

    types and the fields they use:
      "text"        index, text            (a piece of text of output part `index`)
      "reasoning"   index, text, signature (a piece of reasoning; signature when it arrives)
      "tool_call"   index, call_id, name   (a tool call starts at part `index`)
      "tool_args"   index, text            (a piece of the JSON argument string)
      "part_end"    index                  (part `index` is complete; optional)
      "annotation"  index, part            (a source of text part `index`: an annotation dict of TextPart)
      "server_tool" index, part            (a whole ServerToolPart)
      "usage"       usage                  (figures known so far; merge with Usage.merge)
      "finish"      stop_reason, stop_sequence
      "error"       text (message), error_type
    Parts are numbered from 0 in order of first appearance.
    """

    type: str
    index: int = 0
    text: str = ""
    call_id: Optional[str] = None
    name: Optional[str] = None
    signature: Optional[str] = None
    usage: Optional[Usage] = None
    stop_reason: Optional[str] = None
    stop_sequence: Optional[str] = None
    error_type: Optional[str] = None
    part: Any = None


class ResponseBuilder:
    """Folds stream events into a Response (for storage, billing and non-streamed answers)."""

    def __init__(self, response_id: str = "", model: str = ""):
        self.response = Response(id=response_id, model=model)
        self._by_index: dict = {}
        self.finished = False
        self.error: Optional[StreamEvent] = None

    def feed(self, event: StreamEvent) -> None:
        kind = event.type
        if kind == "text":
            part = self._part(event.index, lambda: TextPart(text=""))
            if isinstance(part, TextPart):
                part.text += event.text
        elif kind == "reasoning":
            part = self._part(event.index, lambda: ReasoningPart())
            if isinstance(part, ReasoningPart):
                part.text += event.text
                if event.signature:
                    part.signature = (part.signature or "") + event.signature
                if isinstance(event.part, ReasoningPart):  # the opaque payload, whole
                    for name in ("redacted_data", "encrypted_content", "id"):
                        setattr(part, name, getattr(event.part, name) or getattr(part, name))
        elif kind == "tool_call":
            self._part(event.index, lambda: ToolCallPart(id=event.call_id or "", name=event.name or ""))
        elif kind == "tool_args":
            part = self._part(event.index, lambda: ToolCallPart(id="", name=""))
            if isinstance(part, ToolCallPart):
                part.arguments += event.text
        elif kind == "annotation":
            part = self._part(event.index, lambda: TextPart(text=""))
            if isinstance(part, TextPart):
                part.annotations.append(event.part)
        elif kind == "server_tool":
            self._part(event.index, lambda: event.part)
        elif kind == "usage" and event.usage:
            self.response.usage.merge(event.usage)
        elif kind == "finish":
            self.finished = True
            if event.stop_reason:
                self.response.stop_reason = event.stop_reason
            self.response.stop_sequence = event.stop_sequence
        elif kind == "error":
            self.error = event

    def _part(self, index: int, make):
        if index not in self._by_index:
            part = make()
            self._by_index[index] = part
            self.response.parts.append(part)
        return self._by_index[index]


def response_events(response: Response) -> list:
    """The stream events that would have produced `response` (to stream a non-streamed answer)."""
    events = []
    for index, part in enumerate(response.parts):
        if isinstance(part, TextPart):
            events.append(StreamEvent("text", index=index, text=part.text))
            events += [StreamEvent("annotation", index=index, part=a) for a in part.annotations]
        elif isinstance(part, ServerToolPart):
            events.append(StreamEvent("server_tool", index=index, part=part))
        elif isinstance(part, ReasoningPart):
            opaque = part if part.redacted_data or part.encrypted_content else None
            events.append(StreamEvent("reasoning", index=index, text=part.text, signature=part.signature, part=opaque))
        elif isinstance(part, ToolCallPart):
            events.append(StreamEvent("tool_call", index=index, call_id=part.id, name=part.name))
            if part.arguments:
                events.append(StreamEvent("tool_args", index=index, text=part.arguments))
        events.append(StreamEvent("part_end", index=index))
    events.append(StreamEvent("usage", usage=response.usage))
    events.append(StreamEvent("finish", stop_reason=response.stop_reason, stop_sequence=response.stop_sequence))
    return events


@dataclass
class RenderContext:
    """What a renderer needs beyond the canonical content.

    response_id: the id the client sees, already in the client format's prefix
    (`resp_`, `chatcmpl-`, `msg_`). `request_body`: the inbound body, for the
    Responses object's echoed fields. `include_usage`: Chat's stream_options.
    """

    response_id: str
    model: str
    created_at: int
    request_body: dict = field(default_factory=dict)
    include_usage: bool = False
    extra: dict = field(default_factory=dict)  # e.g. previous_response_id, conversation, store
