"""The stack's floor: what Flask on gunicorn (gevent) costs before any gateway logic.

A bearer looked up in a dict, the JSON body forwarded to the upstream with urllib3, the answer (or
its stream) handed back: nothing else. bench/run.py serves it as our gateway is served
(`gunicorn -k gevent_pywsgi -w 2 'floor:build()'`) so that the difference is our own work.
"""
from __future__ import annotations

import os

import urllib3
from flask import Flask, Response, request

KEYS = {"Bearer sk-floor-bench": "bench"}


def build() -> Flask:
    """The floor app, forwarding to FLOOR_UPSTREAM (a base URL ending in /v1)."""
    upstream = os.environ["FLOOR_UPSTREAM"].rstrip("/")
    pool = urllib3.PoolManager(maxsize=64, block=False)
    app = Flask(__name__)

    @app.post("/v1/chat/completions")
    def chat():
        if KEYS.get(request.headers.get("Authorization", "")) is None:
            return {"error": {"message": "Invalid API key", "type": "invalid_request_error"}}, 401
        body = request.get_data()
        stream = b'"stream": true' in body or b'"stream":true' in body
        answer = pool.request("POST", upstream + "/chat/completions", body=body, preload_content=not stream,
                              headers={"Content-Type": "application/json", "Authorization": "Bearer sk-upstream"})
        if not stream:
            return Response(answer.data, status=answer.status, content_type="application/json")

        def chunks():
            try:
                yield from answer.stream(64 * 1024, decode_content=False)
            finally:
                answer.release_conn()

        return Response(chunks(), status=answer.status, content_type="text/event-stream")

    return app
