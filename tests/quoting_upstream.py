"""A misbehaving provider for the scrubbing tests: its errors quote the credential it was sent.

Base URL `http://127.0.0.1:<port>/s/<scenario>` (plus `/v1` for OpenAI accounts, as their SDK expects).
Every answer quotes what came in `Authorization` / `x-api-key`, and a key of someone else's:

- `e400`: 400 in the provider's JSON error envelope;
- `e500`: 500 with a plain-text body (retryable: the gateway fails over, cools the account down, keeps the text);
- `stream`: 200 SSE with one text delta, then the provider's in-stream error event;
- `/models` (the capacity probe): 401 in the JSON envelope;
- `probe503`: the probe gets a 503 (retryable), while chat calls get an ordinary answer.

Every request is recorded in `calls` as (scenario, path).
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOMEONE_ELSES_KEY = "sk-ant-api03-" + "Zq8xW3vN5tR7yP2kL9mJ4hG6fD1sA0cB" * 2


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def do_GET(self):  # noqa: N802
        self._answer()

    def do_POST(self):  # noqa: N802
        self._answer()

    def _quote(self) -> str:
        sent = self.headers.get("Authorization") or f"x-api-key: {self.headers.get('x-api-key')}"
        return f"we were sent {sent!r} (header x-api-key={self.headers.get('x-api-key')}); also saw {SOMEONE_ELSES_KEY}"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        _, _, scenario, *rest = self.path.split("?")[0].split("/")
        path = "/" + "/".join(rest)
        self.server.calls.append((scenario, path))
        anthropic = "x-api-key" in {k.lower() for k in self.headers}
        if path.endswith("/models"):
            if scenario == "probe503":
                return self._json(503, {"error": {"type": "server_error", "message": "busy", "code": None}})
            return self._json(401, self._envelope("authentication_error", anthropic))
        if scenario == "probe503":
            return self._json(200, {"id": "chatcmpl-ok", "object": "chat.completion", "created": 1, "model": "m",
                                    "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                        "role": "assistant", "content": "fine"}}],
                                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        if scenario == "e400":
            return self._json(400, self._envelope("invalid_request_error", anthropic))
        if scenario == "e500":
            return self._send(500, "text/plain", f"internal failure: {self._quote()}".encode())
        return self._stream(path, anthropic)

    def _envelope(self, kind: str, anthropic: bool) -> dict:
        error = {"type": kind, "message": f"Rejected: {self._quote()}"}
        return {"type": "error", "error": error} if anthropic else {"error": {**error, "code": None, "param": None}}

    def _stream(self, path: str, anthropic: bool) -> None:
        message = f"Stream broke: {self._quote()}"
        if anthropic:
            start = {"type": "message_start", "message": {
                "id": "msg_q1", "type": "message", "role": "assistant", "model": "claude-quoted", "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 0}}}
            events = [("message_start", start),
                      ("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}}),
                      ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": "Hello"}}),
                      ("error", {"type": "error", "error": {"type": "api_error", "message": message}})]
        elif path.endswith("/responses"):
            events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": {
                "id": "resp_q1", "object": "response", "status": "in_progress", "model": "gpt-quoted", "output": []}}),
                      ("error", {"type": "error", "sequence_number": 1, "code": "server_error",
                                 "message": message, "param": None})]
        else:
            chunk = {"id": "chatcmpl-q1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-quoted",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
                                  "finish_reason": None}]}
            events = [(None, chunk), (None, {"error": {"message": message, "type": "server_error"}})]
        body = b"".join((f"event: {name}\n" if name else "").encode() + f"data: {json.dumps(data)}\n\n".encode()
                        for name, data in events)
        self._send(200, "text/event-stream", body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, "application/json", json.dumps(payload).encode())

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuotingUpstream:
    """The server, on a free loopback port, in a thread."""

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.calls = []
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def base_url(self, scenario: str, openai: bool) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/s/{scenario}" + ("/v1" if openai else "")

    @property
    def calls(self) -> list:
        return self.server.calls

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
