"""Every request's id, its timing headers, and at its end its access line and metrics.

`x-request-id` is the client's own when it sent a sane one (a trace id, a UUID), else the gateway's; it
goes back on the answer, into the request-log row (the pipeline reads it from the call's trace) and into
the access line. `x-onekeyllm-overhead-ms` is the gateway's own time until the answer's headers, the waits
on upstreams excluded. The line and the metrics are written when the server closes the answer: a stream's
once it ended, with what its settlement noted.
"""
from __future__ import annotations

import time
from typing import Optional

from flask import Flask, Response, g, request
from werkzeug.wsgi import ClosingIterator

from ..ids import new_id
from ..money import usd
from ..observability import metrics
from ..observability.calls import CallTrace
from ..observability.logs import log_access
from .inbound import sane_request_id


def new_trace(sent_request_id: Optional[str]) -> CallTrace:
    """A request's trace, under the client's sane `x-request-id` or a new one; counted in flight until
    `finish_call`."""
    trace = CallTrace(request_id=sent_request_id or new_id("req", nbytes=16))  # a UUID's 128 random bits, in hex
    metrics.INFLIGHT.inc()
    return trace


def current_trace() -> CallTrace:
    """This request's trace (made on first use, also for a request refused before the hooks ran)."""
    trace = g.get("trace")
    if trace is None:
        trace = g.trace = new_trace(sane_request_id(request.headers.get("x-request-id")))
    return trace


def trace_headers(trace: CallTrace) -> list:
    """The answer's `x-request-id` and `x-onekeyllm-overhead-ms`."""
    return [("x-request-id", trace.request_id), ("x-onekeyllm-overhead-ms", f"{trace.overhead_ms():.1f}")]


def finish_call(trace: CallTrace, method: str, route: str, status: int) -> None:
    """Once the answer is closed (a stream's at its end): out of flight, its metrics and its access line."""
    metrics.INFLIGHT.dec()
    metrics.record_request(route, status, trace)
    log_access(_access_fields(trace, method, route, status))


def _access_fields(trace: CallTrace, method: str, route: str, status: int) -> dict:
    entry = trace.entry
    elapsed = time.perf_counter() - trace.started
    upstream = trace.upstream_total()
    first = trace.first_token_seconds()
    fields = {"request_id": trace.request_id, "method": method, "route": route,
              "status": entry.status_code if entry is not None else status, "key_id": trace.key_id,
              "model": entry.model if entry is not None else None,
              "account": entry.account if entry is not None else None,
              "latency_ms": round(elapsed * 1000, 1),
              "upstream_ms": round(upstream * 1000, 1) if upstream is not None else None}
    if entry is not None:
        fields.update(input_tokens=entry.usage.input_tokens, output_tokens=entry.usage.output_tokens,
                      cached_tokens=entry.usage.cached_tokens, cost_usd=usd(trace.charged), stream=entry.stream)
        if first is not None:
            fields["first_token_ms"] = round(first * 1000, 1)
    return fields


def install_access(app: Flask) -> None:
    """Register the hooks: the trace at the start, the headers on the answer, the line and metrics at its end."""
    @app.before_request
    def begin() -> None:
        current_trace()

    @app.after_request
    def finish(response: Response) -> Response:
        trace = current_trace()
        for name, value in trace_headers(trace):
            response.headers[name] = value
        if trace.key_id is None and g.get("api_key") is not None:
            trace.key_id = g.api_key.id
        method, route, status = request.method, request.url_rule.rule if request.url_rule else "unmatched", \
            response.status_code

        def done() -> None:
            finish_call(trace, method, route, status)

        if response.direct_passthrough:  # werkzeug hands such a body to the server as it is: close it ourselves
            response.response = ClosingIterator(response.response, done)
        else:
            response.call_on_close(done)
        return response
