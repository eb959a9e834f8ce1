"""The published OpenAPI document: every operation lists the errors it can answer, in our envelope."""
from __future__ import annotations

import http
from typing import Any, Optional

from apispec import BasePlugin

VALIDATION_STATUS = 400  # bad input is a 400, as in the OpenAI and Anthropic APIs (never flask-smorest's 422)
GATEWAY_ERRORS = (402, 403, 429, 502, 503, 504)


def error_ref(status: int) -> str:
    """The name of the lazily registered component response for an error status (our ErrorSchema)."""
    return http.HTTPStatus(status).name


def json_object_response(description: str, *, stream: bool = False) -> dict:
    """A 200 answer that is any JSON object (and an SSE stream when `stream`): what gateway routes return."""
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object", "additionalProperties": True}}}
    if stream:
        content["text/event-stream"] = {"schema": {
            "type": "object", "description": "each server-sent event: its `event` name and its `data`, a JSON text",
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"}}}}
    return {"description": description, "content": content}


def either_properties(self, field, **kwargs) -> dict:
    """An `Either` field (http/body_types.py) in the document: `oneOf` its shapes (an apispec attribute function)."""
    from ..http.body_types import Either

    if isinstance(field, Either):
        return {"oneOf": [self.field2property(choice) for choice in field.choices]}
    return {}


class ErrorResponsesPlugin(BasePlugin):
    """Documents 400/401/403/404/413 on the operations that can give them (refs to our ErrorSchema); a 422 that
    a plain flask-smorest Blueprint would document becomes the 400 that errors.py answers."""

    def operation_helper(self, path: Optional[str] = None, operations: Optional[dict] = None, **kwargs: Any) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            takes_input = bool(responses.pop(422, None) or responses.pop("422", None)
                               or "requestBody" in operation or "{" in (path or ""))
            codes = []
            if takes_input:
                codes.append(VALIDATION_STATUS)
            if operation.get("security") != []:
                codes.append(401)
            if (path or "").startswith("/v1/admin/"):
                codes.append(403)
            if "{" in (path or ""):
                codes.append(404)
            if "requestBody" in operation:
                codes.append(413)
            for code in codes:
                if code not in responses and str(code) not in responses:
                    responses[code] = error_ref(code)
            if operation.get("parameters") == []:  # a view that documents its multipart body by hand
                del operation["parameters"]
