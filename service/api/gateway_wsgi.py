"""The three gateway routes as plain WSGI in front of Flask: what every call pays for, and nothing else.

`POST /v1/chat/completions`, `/v1/responses` and `/v1/messages` are answered here, before Flask builds a
request context, matches a URL rule, runs its hooks and a view (about 170 µs of CPU per call on the
benchmark machine before any of our work: bench/README.md). Everything else, these paths' other methods
included (CORS preflights, 405s), goes on to Flask. What the Flask hooks add to every answer is added here
by the same functions: the request id and overhead headers, the security and CORS headers, the error
envelope of the route family, the access line and metrics once the answer is closed. The Flask views of
these routes stay, for the OpenAPI document, and answer alike if they are ever reached.
"""
from __future__ import annotations

import time
from http import HTTPStatus
from typing import Callable, Iterable, Optional

from .. import json_codec
from ..gateway.pipeline import Answer
from ..http.access import finish_call, new_trace, trace_headers
from ..http.errors import as_api_error, error_headers, error_payload, is_anthropic_path
from ..http.headers import SECURITY_HEADERS, allowed_origin, http_date
from ..http.inbound import Inbound
from ..observability.calls import CallTrace
from ..storage.db import close_connection
from .gateway_http import run

ROUTES = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/messages": "anthropic"}
JSON_TYPE = ("Content-Type", "application/json")
STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def status_line(status: int) -> str:
    return STATUS_LINES.get(status) or f"{status} Unknown"


def json_bytes(body) -> bytes:
    """A JSON body as the gateway answers it: compact, keys in order, UTF-8, a final newline."""
    return json_codec.dumps(body) + b"\n"


def lean_gateway(flask_wsgi: Callable, state) -> Callable:
    """The WSGI app that serves the gateway routes itself and hands every other request to `flask_wsgi`."""
    settings = state.settings

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        inbound = ROUTES.get(environ.get("PATH_INFO", ""))
        if inbound is None or environ.get("REQUEST_METHOD") != "POST":
            return flask_wsgi(environ, start_response)
        req = Inbound(environ, settings.max_body_bytes)
        trace = new_trace(req.request_id())
        try:
            status, headers, body = _serve(inbound, req, state, trace)
        except BaseException:  # a stop (GreenletExit) before the answer began: nothing to answer, still counted
            finish_call(trace, "POST", req.path, 499)
            raise
        headers += trace_headers(trace)
        headers += SECURITY_HEADERS.items()
        headers.append(("Date", http_date(time.time())))  # the server's own Date, made once a second
        origin = allowed_origin(settings.cors_origins, req.header("Origin") or None)
        if origin:
            headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        start_response(status_line(status), headers)
        return _Closing(body, lambda: finish_call(trace, "POST", req.path, status))

    return app


def _serve(inbound: str, req: Inbound, state, trace: CallTrace) -> tuple:
    """(status, headers, body iterable) of one gateway call, its errors in the route family's envelope."""
    try:
        answer = run(inbound, req, state, trace)
    except Exception as error:  # noqa: BLE001 - every error becomes its answer (as_api_error logs the unexpected)
        api_error = as_api_error(error, req.method, req.path, trace.request_id)
        body = error_payload(api_error.status, api_error.message, type=api_error.type, param=api_error.param,
                             code=api_error.code, anthropic=is_anthropic_path(req.path))
        data = json_bytes(body)
        headers = [JSON_TYPE, ("Content-Length", str(len(data)))]
        headers += error_headers(api_error.status, api_error.headers).items()
        return api_error.status, headers, [data]
    finally:
        close_connection()  # as Flask's teardown: none is held past the answer's start
    return _answer(answer)


def _answer(answer: Answer) -> tuple:
    if answer.stream is not None:
        return answer.status, list(answer.headers.items()), answer.stream
    data = json_bytes(answer.body)
    headers = [JSON_TYPE, ("Content-Length", str(len(data)))]
    headers += answer.headers.items()
    return answer.status, headers, [data]


class _Closing:
    """The answer's body for the server; closing it closes the body (a stream unwinds and settles) and then
    runs `done` (the access line and metrics)."""

    __slots__ = ("_body", "_done")

    def __init__(self, body: Iterable[bytes], done: Callable[[], None]):
        self._body = body
        self._done: Optional[Callable[[], None]] = done

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()


def flask_view(inbound: str):
    """The Flask view's answer for a gateway route (the same call, rendered by Flask's hooks)."""
    from flask import Response, current_app, request

    from ..http.access import current_trace

    state = current_app.extensions["onekeyllm"]
    answer = run(inbound, Inbound(request.environ, state.settings.max_body_bytes), state, current_trace())
    if answer.stream is not None:
        return Response(answer.stream, status=answer.status, headers=answer.headers, direct_passthrough=True)
    return Response(json_bytes(answer.body), status=answer.status, headers=answer.headers,
                    content_type="application/json")
