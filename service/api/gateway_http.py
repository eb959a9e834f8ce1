"""The HTTP edge of the gateway routes: JSON bodies in, pipeline answers out."""
from __future__ import annotations

from flask import Response, current_app, jsonify, request

from ..accounts.auth import authenticate, key_credential, key_digest
from ..api_error import ApiError
from ..gateway.pipeline import Answer, Call, handle
from ..http.access import current_trace
from ..http.body_types import BodyTypeError
from ..http.request_guard import NotStrictJson, body_is_small, request_body, strict_json
from ..storage.db import connected
from .gateway_schemas import check_request
from .openapi import GATEWAY_ERRORS, error_ref, json_object_response

FORWARDED = ("anthropic-version", "anthropic-beta")
# The gateway calls: no database connection held for the request (see service.app); each short database
# phase of the pipeline takes one from the pool and gives it back, never across the upstream call.
CONNECTION_PER_PHASE = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/messages"})


def json_body(inbound: str) -> dict:
    """The request body as a JSON object whose declared fields have their types and bounds (400 otherwise,
    naming the field), whatever the declared content type."""
    raw = request_body()
    if not raw:
        raise ApiError(400, "The request body is empty: send a JSON object.")
    try:
        body = strict_json(raw)
    except NotStrictJson as error:
        raise ApiError(400, error.message, param=error.param) from None
    except (ValueError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    try:
        check_request(inbound, body)
    except BodyTypeError as error:
        raise ApiError(400, error.message, param=error.param) from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply.") from None
    return body


def to_response(answer: Answer) -> Response:
    """A Flask response for a pipeline answer (streamed bodies are passed through unbuffered)."""
    if answer.stream is not None:
        return Response(answer.stream, status=answer.status, headers=answer.headers, direct_passthrough=True)
    response = jsonify(answer.body)
    response.status_code = answer.status
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def run(inbound: str) -> Response:
    """Serve one gateway call in the `inbound` format for the calling key.

    A small body's key is not read here: the pipeline's grant finds and checks it by its hash (see
    pipeline._prepare); it is read first only where something has to be refused, so that a bad key is always
    the answer. A large (or chunked) body is read only once its key is known to be live.
    """
    credential = key_credential()
    key_hash = key_digest(credential)
    key = None
    if key_hash is None or not body_is_small():
        key = _authenticate(credential)  # 401 with the body unread: the server closes rather than read it
    try:
        body = json_body(inbound)
    except ApiError:
        _authenticate(credential)
        raise
    forward = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    call = Call(inbound=inbound, endpoint=request.path, body=body, key=key,
                settings=current_app.extensions["onekeyllm"].settings, forward_headers=forward,
                query=request.query_string.decode("latin-1"), key_hash=key_hash,
                authenticate=lambda: _authenticate(credential), trace=current_trace())
    try:
        return to_response(handle(call))
    finally:
        if call.key is not None:
            call.trace.key_id = call.key.id  # for the access line of a call refused before it settled


def _authenticate(credential: str):
    with connected():
        return authenticate(credential)


def request_body_doc(request_schema: type, answer_schema: type, *, stream: bool = True) -> dict:
    """The OpenAPI requestBody and answers of a gateway route, typed by its schemas (extra fields allowed)."""
    answer = {"application/json": {"schema": answer_schema}}
    if stream:
        answer["text/event-stream"] = json_object_response("", stream=True)["content"]["text/event-stream"]
    description = "The answer in the route's format (SSE when `stream` is true)" if stream else "The answer"
    responses = {"200": {"description": description, "content": answer}}
    responses.update({str(code): error_ref(code) for code in GATEWAY_ERRORS})
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": request_schema}}},
            "responses": responses}
