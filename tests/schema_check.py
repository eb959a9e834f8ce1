"""Checks our JSON against the official SDKs' types: it validates, and no field the official schema requires is missing.

`problems(Type, data)` validates the raw JSON with pydantic (`TypeAdapter`, so the SDKs' stream-event unions
work too), then walks the validated object beside the raw JSON: every field its model marks required
(`model_fields[…].is_required()`) must be a key of the raw object, at every depth. Where OpenAI's published
OpenAPI spec requires a field (present, possibly null) that the SDK's generated model leaves optional,
`SPEC_REQUIRED` names it.
"""
from __future__ import annotations

import json
import typing
from typing import Any

import pydantic
from openai.types.responses import FunctionTool, Response, ResponseFunctionCallArgumentsDoneEvent
from openai.types.shared import ErrorObject
from replay_upstream import sse_payloads

# OpenAI's OpenAPI spec: `required` entries that the openai SDK types as optional.
SPEC_REQUIRED: dict[type, tuple[str, ...]] = {
    FunctionTool: ("strict", "parameters"),
    ResponseFunctionCallArgumentsDoneEvent: ("name",),
    Response: ("error", "incomplete_details", "instructions", "metadata", "temperature", "top_p"),
    ErrorObject: ("type", "message"),
}
# OpenAI's OpenAPI spec: fields typed as a non-nullable integer or string, which must be absent rather than null.
NOT_NULLABLE: dict[str, tuple[str, ...]] = {"FileObject": ("expires_at", "status_details")}


def problems(kind: Any, data: Any) -> list[str]:
    """What is wrong with `data` as the official type `kind` (empty: it conforms)."""
    kind = _union_member(kind, data)
    try:
        value = pydantic.TypeAdapter(kind).validate_python(data)
    except pydantic.ValidationError as error:
        return [f"does not validate: {error}"]
    found: list[str] = []
    _walk(value, data, "$", found)
    return found


def assert_conforms(kind: Any, data: Any, what: str = "") -> None:
    """Fail with every problem of `data` as `kind`."""
    found = problems(kind, data)
    assert not found, f"{what or getattr(kind, '__name__', kind)}: {found}\n{json.dumps(data)[:2000]}"


def _union_member(kind: Any, data: Any) -> Any:
    """The member of a union of event types whose `type` literal is the data's (a short error, not 60 of them)."""
    members = typing.get_args(typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Annotated else kind)
    for member in members:
        field = getattr(member, "model_fields", {}).get("type")
        if field is not None and isinstance(data, dict) and data.get("type") in typing.get_args(field.annotation):
            return member
    return kind


def _walk(value: Any, raw: Any, path: str, found: list) -> None:
    if isinstance(value, pydantic.BaseModel) and isinstance(raw, dict):
        model = type(value)
        required = {name for name, info in model.model_fields.items() if info.is_required()}
        required |= set(SPEC_REQUIRED.get(model, ()))
        for name, info in model.model_fields.items():
            key = info.alias or name
            if name in required and key not in raw:
                found.append(f"{path}: required field `{key}` is missing ({model.__name__})")
            if key in NOT_NULLABLE.get(model.__name__, ()) and key in raw and raw[key] is None:
                found.append(f"{path}.{key}: null where the schema allows no null ({model.__name__})")
            if key in raw:
                _walk(getattr(value, name, None), raw[key], f"{path}.{key}", found)
    elif isinstance(value, list) and isinstance(raw, list):
        for i, (item, raw_item) in enumerate(zip(value, raw)):
            _walk(item, raw_item, f"{path}[{i}]", found)
    elif isinstance(value, dict) and isinstance(raw, dict):
        for key, item in value.items():
            if key in raw:
                _walk(item, raw[key], f"{path}.{key}", found)


def sse_events(response) -> list[tuple[str | None, str]]:
    """The (event name, data) pairs of a `requests` streamed answer, read as the SDKs read SSE."""
    return sse_payloads(response.content)
