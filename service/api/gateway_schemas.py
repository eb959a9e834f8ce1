"""The gateway routes' bodies as marshmallow schemas: their main fields, requests and answers.

One description serves twice: the OpenAPI document shows these (client generators, schemathesis, /docs),
and the request schemas, compiled by http/body_types.py, are the types and bounds every call is checked
against before a codec reads it (`check_request`). Unknown fields are allowed everywhere: the passthrough
keeps them. `null` is taken as absent, as the codecs take it.
"""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..http.body_types import Either, compile_checker

MAX_TOKENS = 2**31 - 1  # no model's output limit comes near; past it, prices overflow the budget's integers
MAX_INT64 = 2**63 - 1


class Open(ma.Schema):
    """A JSON object with these fields typed and any others kept."""

    class Meta:
        unknown = ma.INCLUDE


def _tokens(**kwargs) -> fields.Integer:
    return fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_TOKENS), **kwargs)


def _number(low: float, high: float) -> fields.Float:
    return fields.Float(allow_none=True, allow_nan=False, validate=validate.Range(min=low, max=high))


def _string(**kwargs) -> fields.String:
    return fields.String(allow_none=True, **kwargs)


def _boolean() -> fields.Boolean:
    return fields.Boolean(allow_none=True)


def _object(**kwargs) -> fields.Dict:
    return fields.Dict(keys=fields.String(), allow_none=True, **kwargs)


def _list(inner: fields.Field, **kwargs) -> fields.List:
    return fields.List(inner, allow_none=True, **kwargs)


MODEL = fields.String(required=True, validate=validate.Length(min=1), metadata={"example": "echo-1"})


# ---------------------------------------------------------------- OpenAI Chat Completions
class ChatImageUrlSchema(Open):
    url = _string()
    detail = _string()


class ChatFileSchema(Open):
    file_id = _string()
    file_data = _string()
    filename = _string()


class ChatContentPartSchema(Open):
    type = fields.String(required=True, metadata={"example": "text"})
    text = _string()
    refusal = _string()
    image_url = Either(fields.String(), fields.Nested(ChatImageUrlSchema), allow_none=True)
    file = fields.Nested(ChatFileSchema, allow_none=True)
    input_audio = _object()


class ChatFunctionCallSchema(Open):
    name = _string()
    arguments = _string()


class ChatToolCallSchema(Open):
    id = _string()
    type = _string()
    function = fields.Nested(ChatFunctionCallSchema, allow_none=True)


class ChatMessageSchema(Open):
    role = fields.String(required=True, validate=validate.OneOf(["system", "developer", "user", "assistant",
                                                                 "tool"]))
    content = Either(fields.String(), fields.List(fields.Nested(ChatContentPartSchema)), allow_none=True)
    name = _string()
    tool_call_id = _string()
    tool_calls = _list(fields.Nested(ChatToolCallSchema))
    refusal = _string()


class ChatFunctionSchema(Open):
    name = _string()
    description = _string()
    parameters = _object()
    strict = _boolean()


class ChatToolSchema(Open):
    type = _string(metadata={"example": "function"})
    function = fields.Nested(ChatFunctionSchema, allow_none=True)


class StreamOptionsSchema(Open):
    include_usage = _boolean()


class ChatRequestSchema(Open):
    """POST /v1/chat/completions (OpenAI Chat Completions)."""

    model = MODEL
    messages = fields.List(fields.Nested(ChatMessageSchema), required=True, validate=validate.Length(min=1))
    max_tokens = _tokens()
    max_completion_tokens = _tokens()
    temperature = _number(0, 2)
    top_p = _number(0, 1)
    presence_penalty = _number(-2, 2)
    frequency_penalty = _number(-2, 2)
    n = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=128))
    seed = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=-MAX_INT64 - 1, max=MAX_INT64))
    top_logprobs = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=20))
    logprobs = _boolean()
    stream = _boolean()
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True)
    stop = Either(fields.String(), fields.List(fields.String()), allow_none=True)
    tools = _list(fields.Nested(ChatToolSchema))
    tool_choice = Either(fields.String(), fields.Dict(), allow_none=True)
    parallel_tool_calls = _boolean()
    response_format = _object()
    reasoning_effort = _string()
    metadata = _object()
    user = _string()
    store = _boolean()


class ChatAnswerMessageSchema(Open):
    role = _string()
    content = _string()
    refusal = _string()
    tool_calls = _list(fields.Nested(ChatToolCallSchema))


class ChatChoiceSchema(Open):
    index = fields.Integer()
    message = fields.Nested(ChatAnswerMessageSchema)
    finish_reason = _string()
    logprobs = _object()


class ChatUsageSchema(Open):
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    prompt_tokens_details = _object()
    completion_tokens_details = _object()


class ChatCompletionSchema(Open):
    """A chat.completion (or, with `stream`, its chat.completion.chunk events)."""

    id = fields.String()
    object = fields.String(metadata={"example": "chat.completion"})
    created = fields.Integer()
    model = fields.String()
    choices = fields.List(fields.Nested(ChatChoiceSchema))
    usage = fields.Nested(ChatUsageSchema, allow_none=True)
    system_fingerprint = _string()
    service_tier = _string()


# ---------------------------------------------------------------- OpenAI Responses
class ResponseContentPartSchema(Open):
    type = fields.String(required=True, metadata={"example": "input_text"})
    text = _string()
    refusal = _string()
    image_url = _string()
    file_id = _string()
    file_data = _string()
    file_url = _string()
    filename = _string()
    detail = _string()


class ResponseInputItemSchema(Open):
    type = _string(metadata={"example": "message"})
    id = _string()
    role = _string()
    content = Either(fields.String(), fields.List(fields.Nested(ResponseContentPartSchema)), allow_none=True)
    status = _string()
    call_id = _string()
    name = _string()
    arguments = _string()
    output = Either(fields.String(), fields.List(fields.Nested(ResponseContentPartSchema)), allow_none=True)
    summary = _list(fields.Dict())
    encrypted_content = _string()


class ResponseToolSchema(Open):
    type = fields.String(required=True, metadata={"example": "function"})
    name = _string()
    description = _string()
    parameters = _object()
    strict = _boolean()


class ConversationRefSchema(Open):
    id = _string()


class TextFormatSchema(Open):
    type = _string()
    name = _string()
    schema = _object()
    strict = _boolean()


class TextConfigSchema(Open):
    format = fields.Nested(TextFormatSchema, allow_none=True)
    verbosity = _string()


class ReasoningConfigSchema(Open):
    effort = _string()
    summary = _string()


class ResponsesRequestSchema(Open):
    """POST /v1/responses (OpenAI Responses)."""

    model = MODEL
    input = Either(fields.String(), fields.List(fields.Nested(ResponseInputItemSchema)), allow_none=True)
    instructions = _string()
    previous_response_id = _string()
    conversation = Either(fields.String(), fields.Nested(ConversationRefSchema), allow_none=True)
    store = _boolean()
    stream = _boolean()
    background = _boolean()
    tools = _list(fields.Nested(ResponseToolSchema))
    tool_choice = Either(fields.String(), fields.Dict(), allow_none=True)
    parallel_tool_calls = _boolean()
    max_output_tokens = _tokens()
    max_tool_calls = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_TOKENS))
    temperature = _number(0, 2)
    top_p = _number(0, 1)
    top_logprobs = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=20))
    text = fields.Nested(TextConfigSchema, allow_none=True)
    reasoning = fields.Nested(ReasoningConfigSchema, allow_none=True)
    include = _list(fields.String())
    metadata = _object(values=fields.String())
    truncation = _string()
    user = _string()
    prompt_cache_key = _string()
    safety_identifier = _string()
    service_tier = _string()


class ResponsesUsageSchema(Open):
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    total_tokens = fields.Integer()
    input_tokens_details = _object()
    output_tokens_details = _object()


class ResponseOutputItemSchema(Open):
    type = fields.String(metadata={"example": "message"})
    id = _string()
    status = _string()
    role = _string()
    content = _list(fields.Dict())
    call_id = _string()
    name = _string()
    arguments = _string()


class ResponseObjectSchema(Open):
    """A Response object (or, with `stream`, its response.* events)."""

    id = fields.String()
    object = fields.String(metadata={"example": "response"})
    created_at = fields.Integer()
    status = _string()
    model = fields.String()
    output = fields.List(fields.Nested(ResponseOutputItemSchema))
    usage = fields.Nested(ResponsesUsageSchema, allow_none=True)
    previous_response_id = _string()
    instructions = fields.Raw(allow_none=True)
    store = _boolean()
    metadata = _object()
    error = _object()
    incomplete_details = _object()


# ---------------------------------------------------------------- Anthropic Messages
class AnthropicSourceSchema(Open):
    type = _string()
    media_type = _string()
    data = _string()
    url = _string()
    file_id = _string()


class AnthropicBlockSchema(Open):
    type = fields.String(required=True, metadata={"example": "text"})
    text = _string()
    source = fields.Nested(AnthropicSourceSchema, allow_none=True)
    id = _string()
    name = _string()
    input = _object()
    tool_use_id = _string()
    content = Either(fields.String(), fields.List(fields.Nested(lambda: AnthropicBlockSchema())), allow_none=True)
    is_error = _boolean()
    thinking = _string()
    signature = _string()
    data = _string()
    title = _string()


class AnthropicMessageSchema(Open):
    role = fields.String(required=True, validate=validate.OneOf(["user", "assistant", "system"]))
    content = Either(fields.String(), fields.List(fields.Nested(AnthropicBlockSchema)), required=True)


class AnthropicTextBlockSchema(Open):
    type = _string(metadata={"example": "text"})
    text = _string()


class AnthropicToolSchema(Open):
    type = _string()
    name = _string()
    description = _string()
    input_schema = _object()


class AnthropicToolChoiceSchema(Open):
    type = _string()
    name = _string()
    disable_parallel_tool_use = _boolean()


class AnthropicMetadataSchema(Open):
    user_id = _string()


class ThinkingSchema(Open):
    type = _string()
    budget_tokens = _tokens()


class OutputConfigSchema(Open):
    effort = _string()


class CountTokensRequestSchema(Open):
    """POST /v1/messages/count_tokens (Anthropic)."""

    model = MODEL
    messages = fields.List(fields.Nested(AnthropicMessageSchema), required=True, validate=validate.Length(min=1))
    system = Either(fields.String(), fields.List(fields.Nested(AnthropicTextBlockSchema)), allow_none=True)
    tools = _list(fields.Nested(AnthropicToolSchema))
    tool_choice = fields.Nested(AnthropicToolChoiceSchema, allow_none=True)
    thinking = fields.Nested(ThinkingSchema, allow_none=True)


class MessagesRequestSchema(CountTokensRequestSchema):
    """POST /v1/messages (Anthropic Messages)."""

    max_tokens = _tokens(required=True)
    temperature = _number(0, 1)
    top_p = _number(0, 1)
    top_k = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_TOKENS))
    stop_sequences = _list(fields.String())
    stream = _boolean()
    metadata = fields.Nested(AnthropicMetadataSchema, allow_none=True)
    output_config = fields.Nested(OutputConfigSchema, allow_none=True)
    service_tier = _string()


class AnthropicUsageSchema(Open):
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cache_creation_input_tokens = fields.Integer(allow_none=True)
    cache_read_input_tokens = fields.Integer(allow_none=True)


class AnthropicAnswerBlockSchema(Open):
    type = fields.String(metadata={"example": "text"})
    text = _string()
    id = _string()
    name = _string()
    input = _object()
    thinking = _string()
    signature = _string()


class AnthropicMessageAnswerSchema(Open):
    """A Message (or, with `stream`, its message_* and content_block_* events)."""

    id = fields.String()
    type = fields.String(metadata={"example": "message"})
    role = fields.String(metadata={"example": "assistant"})
    model = fields.String()
    content = fields.List(fields.Nested(AnthropicAnswerBlockSchema))
    stop_reason = _string()
    stop_sequence = _string()
    usage = fields.Nested(AnthropicUsageSchema)


class CountTokensAnswerSchema(Open):
    input_tokens = fields.Integer(required=True)


REQUEST_SCHEMAS = {"chat": ChatRequestSchema, "responses": ResponsesRequestSchema, "anthropic": MessagesRequestSchema,
                   "count_tokens": CountTokensRequestSchema}
CHECKS = {inbound: compile_checker(schema) for inbound, schema in REQUEST_SCHEMAS.items()}


def check_request(inbound: str, body: dict) -> None:
    """The body's declared fields against their types and bounds (BodyTypeError naming the first bad one)."""
    CHECKS[inbound](body)
