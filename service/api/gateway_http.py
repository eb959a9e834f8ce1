"""The gateway routes' work between HTTP and the pipeline: the body read and checked, the key found, the call
made. Served without Flask (api/gateway_wsgi.py); the Flask views of the same routes are what the OpenAPI
document is made from."""
from __future__ import annotations

from ..accounts.auth import authenticate, credential_of, key_credential, key_digest, takes_x_api_key
from ..api_error import ApiError
from ..gateway.pipeline import Answer, Call, handle
from ..http.body_types import BodyTypeError
from ..http.inbound import Inbound
from ..http.request_guard import NotStrictJson, check_url, strict_json
from ..observability.calls import CallTrace
from ..storage.db import connected
from .gateway_schemas import check_request
from .openapi import GATEWAY_ERRORS, error_ref, json_object_response

FORWARDED = ("anthropic-version", "anthropic-beta")
# The gateway calls: no database connection held for the request (see service.app); each short database
# phase of the pipeline takes one from the pool and gives it back, never across the upstream call.
CONNECTION_PER_PHASE = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/messages"})


def json_body(inbound: str, raw: bytes) -> dict:
    """The request body `raw` as a JSON object whose declared fields have their types and bounds (400
    otherwise, naming the field), whatever the declared content type."""
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


def run(inbound: str, req: Inbound, state, trace: CallTrace) -> Answer:
    """Serve one gateway call in the `inbound` format for the calling key: the pipeline's answer, or ApiError.

    A small body's key is not read here: the pipeline's grant finds and checks it by its hash (see
    pipeline._prepare); it is read first only where something has to be refused, so that a bad key is always
    the answer. A large (or chunked) body is read only once its key is known to be live.
    """
    check_url(req.path, req.query_string)
    credential = key_credential(credential_of(req.header("Authorization"),
                                              req.header("x-api-key") if takes_x_api_key(req.path) else None))
    key_hash = key_digest(credential, state.secrets.pepper)
    key = None
    if key_hash is None or not req.body_is_small():
        key = _authenticate(credential, state)  # 401 with the body unread: the server closes rather than read it
    try:
        body = json_body(inbound, req.body())
    except ApiError:
        _authenticate(credential, state)
        raise
    forward = {name: req.header(name) for name in FORWARDED if req.has_header(name)}
    call = Call(inbound=inbound, endpoint=req.path, body=body, key=key, settings=state.settings,
                forward_headers=forward, query=req.query_string.decode("latin-1"), key_hash=key_hash,
                authenticate=lambda: _authenticate(credential, state), trace=trace)
    try:
        return handle(call)
    finally:
        if call.key is not None:
            trace.key_id = call.key.id  # for the access line of a call refused before it settled


def _authenticate(credential: str, state):
    with connected():
        return authenticate(credential, state.secrets.pepper)


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
