"""The gateway routes are served before Flask (api/gateway_wsgi.py): their answers carry what every other
route's answers carry — request id, overhead, security and CORS headers, the error envelope of the route
family, an access line — and their other methods still reach Flask."""
from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from urllib.parse import urlparse

import requests
from conftest import start_server

CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "edge"}]}
MESSAGES = {"model": "echo-1", "max_tokens": 16, "messages": [{"role": "user", "content": "edge"}]}


@contextmanager
def served(tmp_path, name: str, **env: str):
    """A gateway of its own, started with `env`, and a key on it; stopped after the block."""
    server = start_server(tmp_path, name=name, extra_env=env)
    try:
        yield server, server.create_key(name=name)["key"]
    finally:
        server.stop()


def post(server, path: str, body, headers=None) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.v1 + path, data=data, timeout=30,
                         headers={"Content-Type": "application/json", **(headers or {})})


def test_answers_carry_the_edge_headers_and_the_clients_request_id(gateway):
    key = gateway.create_key(name="edge")["key"]
    for path, body in (("/chat/completions", CHAT), ("/responses", {"model": "echo-1", "input": "edge"}),
                       ("/messages", MESSAGES)):
        answer = post(gateway, path, body, {"Authorization": f"Bearer {key}", "x-request-id": "trace-42.a"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "trace-42.a"
        assert float(answer.headers["x-onekeyllm-overhead-ms"]) >= 0
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Content-Type"] == "application/json"
        assert int(answer.headers["Content-Length"]) == len(answer.content)
        assert "Access-Control-Allow-Origin" not in answer.headers  # CORS is off unless configured
        date = answer.headers["Date"]  # one, as the server adds it elsewhere (requests joins repeated ones)
        assert date.count("GMT") == 1 and abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5, date
    streamed = requests.post(gateway.v1 + "/chat/completions", json={**CHAT, "stream": True}, timeout=30,
                             headers={"Authorization": f"Bearer {key}"})
    assert streamed.status_code == 200 and streamed.headers["Date"].count("GMT") == 1
    insane = post(gateway, "/chat/completions", CHAT, {"Authorization": f"Bearer {key}", "x-request-id": "a b"})
    assert insane.headers["x-request-id"].startswith("req_") and len(insane.headers["x-request-id"]) == 36
    assert '"route": "/v1/responses"' in gateway.log_text() or "route=/v1/responses" in gateway.log_text()


def test_errors_are_in_the_route_familys_envelope(gateway):
    missing = post(gateway, "/chat/completions", CHAT)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert missing.headers["x-request-id"] and missing.headers["X-Content-Type-Options"] == "nosniff"
    anthropic = post(gateway, "/messages", MESSAGES, {"x-api-key": "sk-lazytech-unknown"})
    assert anthropic.status_code == 401
    assert anthropic.json() == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": "Invalid API key."}}
    key = gateway.create_key(name="edge-errors")["key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert post(gateway, "/chat/completions", b"{not json", auth).json()["error"]["message"] == \
        "The request body is not valid JSON."
    nul = requests.post(gateway.v1 + "/chat/completions?api-version=a%00b", json=CHAT, headers=auth, timeout=30)
    assert nul.status_code == 400 and nul.json()["error"]["param"] == "api-version"
    broke = post(gateway, "/chat/completions", {"model": "echo-1", "messages": "x" * 5}, auth)
    assert broke.status_code == 400 and broke.json()["error"]["param"].startswith("messages")
    poor = gateway.create_key(budget="0.000000001", name="edge-poor")["key"]
    refused = post(gateway, "/chat/completions", CHAT, {"Authorization": f"Bearer {poor}"})
    assert refused.status_code == 402 and refused.headers["x-should-retry"] == "false"


def test_a_body_declared_past_the_limit_is_refused_unread(tmp_path):
    with served(tmp_path, "edge-limit", ONEKEYLLM_MAX_BODY_BYTES="100000") as (server, key):
        target = urlparse(server.url)
        with socket.create_connection((target.hostname, target.port), timeout=10) as conn:
            conn.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n".encode())
            answer = b""
            while b"request_too_large" not in answer:  # the head and the body may come in two pieces
                piece = conn.recv(65536)
                if not piece:
                    break
                answer += piece
        text = answer.decode("latin-1")
        assert text.startswith("HTTP/1.1 413"), text
        assert '"type":"request_too_large"' in text


def test_a_chunked_body_past_the_limit_is_refused(tmp_path):
    with served(tmp_path, "edge-chunked", ONEKEYLLM_MAX_BODY_BYTES="70000") as (server, key):
        body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 80000}]}).encode()
        answer = requests.post(server.v1 + "/chat/completions", data=iter([body[:40000], body[40000:]]),
                               headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                               timeout=30)
        assert answer.status_code == 413 and answer.json()["error"]["type"] == "request_too_large"
        small = requests.post(server.v1 + "/chat/completions", data=iter([json.dumps(CHAT).encode()]),
                              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                              timeout=30)
        assert small.status_code == 200, small.text  # a chunked body within the limit is read whole


def test_cors_headers_when_configured_and_other_methods_reach_flask(tmp_path):
    with served(tmp_path, "edge-cors", ONEKEYLLM_CORS_ORIGINS="https://app.example") as (server, key):
        auth = {"Authorization": f"Bearer {key}"}
        allowed = post(server, "/chat/completions", CHAT, {**auth, "Origin": "https://app.example"})
        assert allowed.status_code == 200
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert allowed.headers["Vary"] == "Origin"
        other = post(server, "/chat/completions", CHAT, {**auth, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        preflight = requests.options(server.v1 + "/chat/completions", timeout=10, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        wrong = requests.get(server.v1 + "/chat/completions", headers=auth, timeout=10)
        assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
