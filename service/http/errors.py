"""Every error answer, in the envelope of the route family that was called."""
from __future__ import annotations

import logging
from typing import Optional

import peewee as pw
from flask import Flask, Response, jsonify, request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from ..api_error import ApiError
from .access import current_trace

log = logging.getLogger("onekeyllm")

OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    409: "conflict_error", 413: "request_too_large", 415: "invalid_request_error",
    422: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
    502: "upstream_error", 503: "service_unavailable", 504: "timeout_error",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    409: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error",
    422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
    502: "api_error", 503: "overloaded_error", 504: "api_error", 529: "overloaded_error",
}


def is_anthropic_path(path: str) -> bool:
    return path.startswith("/v1/messages")


def wants_anthropic_envelope() -> bool:
    """The Messages routes, and the model catalog asked in the Anthropic shape (`anthropic-version`)."""
    return is_anthropic_path(request.path) or (
        request.path.startswith("/v1/models") and "anthropic-version" in request.headers)


def error_payload(status: int, message: str, *, type: Optional[str] = None, param: Optional[str] = None,
                  code: Optional[str] = None, anthropic: bool = False) -> dict:
    """The error body in the OpenAI or the Anthropic envelope."""
    if anthropic:
        return {"type": "error", "error": {"type": type if type in ANTHROPIC_TYPES.values()
                                           else ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    return {"error": {"message": message, "type": type or OPENAI_TYPES.get(status, "api_error"),
                      "param": param, "code": code}}


def error_headers(status: int, headers: Optional[dict]) -> dict:
    """The headers of an error answer: its own, and `x-should-retry: false` on a 402 (the SDKs retry none)."""
    extra = {"x-should-retry": "false"} if status == 402 else {}
    extra.update(headers or {})
    return extra


def render_error(status: int, message: str, *, type: Optional[str] = None, param: Optional[str] = None,
                 code: Optional[str] = None, headers: Optional[dict] = None) -> Response:
    """A JSON error response for the current request's route family."""
    body = error_payload(status, message, type=type, param=param, code=code,
                         anthropic=wants_anthropic_envelope())
    response = jsonify(body)
    response.status_code = status
    for name, value in error_headers(status, headers).items():
        response.headers[name] = value
    return response


DATABASE_UNAVAILABLE = (pw.OperationalError, pw.InterfaceError, MaxConnectionsExceeded)


def as_api_error(error: BaseException, method: str, path: str, request_id: str) -> ApiError:
    """The answer to an exception no route turned into one (logged where it is the gateway's own fault):
    a body nested too deeply is a 400, a database that refused or dropped us a retryable 503, anything else
    a 500 without internals, under the request's id."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, RecursionError):
        return ApiError(400, "The request body is nested too deeply.")
    if isinstance(error, DATABASE_UNAVAILABLE):
        log.warning("database unavailable on %s %s: %s", method, path, type(error).__name__)
        return ApiError(503, "The database is unavailable; try again shortly.", headers={"retry-after": "1"})
    if is_nul_in_text(error):
        return ApiError(400, "Text in the request must not contain NUL (\\u0000) characters.")
    log.error("unhandled error %s on %s %s", request_id, method, path, exc_info=(type(error), error,
                                                                                   error.__traceback__))
    return ApiError(500, f"Internal error (request id {request_id}).", headers={"x-request-id": request_id})


def _validation_message(messages) -> tuple[str, Optional[str]]:
    """Flatten webargs/marshmallow messages into one sentence and the first field name."""
    flat: list[tuple[str, str]] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, path + [str(key)] if key not in ("json", "query", "form", "files", "_schema") else path)
        elif isinstance(node, list) and node and all(isinstance(x, str) for x in node):
            flat.append((".".join(path), " ".join(node)))
        elif isinstance(node, list):
            for value in node:
                walk(value, path)
        else:
            flat.append((".".join(path), str(node)))

    walk(messages, [])
    if not flat:
        return "Invalid request.", None
    text = "; ".join(f"{field}: {msg}" if field else msg for field, msg in flat[:5])
    return text, flat[0][0] or None


def handle_api_error(error: ApiError) -> Response:
    return render_error(error.status, error.message, type=error.type, param=error.param,
                        code=error.code, headers=error.headers)


def handle_http_exception(error: HTTPException) -> Response:
    """Flask's and flask-smorest's own errors (404, 405, 413, 422 validation…)."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    message, param = error.description or error.name, None
    if "messages" in data or "errors" in data:
        message, param = _validation_message(data.get("messages") or data.get("errors"))
        status = 400
    elif "message" in data:
        message = data["message"]
    if status == 413:
        message = "Request body too large."
    if status == 404 and not data:
        message = f"Unknown path: {request.method} {request.path}"
    if status == 405:
        message = f"Method {request.method} is not allowed on {request.path}."
    headers = dict(data.get("headers") or {})
    if status == 500:
        return handle_unexpected(error)
    return render_error(status, message, param=param, headers=headers)


def is_nul_in_text(error: BaseException) -> bool:
    """PostgreSQL's driver refusing a NUL character in a text value (SQLite stores it): the client sent it."""
    return isinstance(error, ValueError) and "NUL (0x00)" in str(error)


def handle_unexpected(error: BaseException) -> Response:
    """Anything else: logged with a request id, answered 500 without internals (as_api_error)."""
    return handle_api_error(as_api_error(error, request.method, request.path, current_trace().request_id))


def register_error_handlers(app: Flask) -> None:
    """The one place that turns exceptions into answers."""
    app.register_error_handler(ApiError, handle_api_error)
    for kind in (RecursionError, *DATABASE_UNAVAILABLE):
        app.register_error_handler(kind, handle_unexpected)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
