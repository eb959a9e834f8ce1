"""A provider that plays back recorded answers byte for byte (Anthropic Messages, OpenAI Responses, OpenAI Chat).

A recording is a pair of files under ``tests/recordings/<format>/``: ``<name>.json`` (the answer to a
request without ``stream``) and ``<name>.sse`` (the answer to a streamed one), sent exactly as they
are on disk; a recording may have only one of the two. The base URL names the recording::

    replay = ReplayUpstream().start()
    anthropic.Anthropic(base_url=replay.base_url("anthropic", "web_search"), api_key="x")
    openai.OpenAI(base_url=replay.base_url("responses", "custom_tool_call"), api_key="x")

``/r/<format>/<name>`` is the prefix (``/v1`` appended for the OpenAI formats, as their SDKs expect);
the path after it must be the format's own (``/v1/messages``, ``/v1/responses``, ``/v1/chat/completions``).
SSE files are sent in chunks of one event each, with chunked transfer encoding, as providers do.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parent / "recordings"
PATHS = {"anthropic": "/v1/messages", "responses": "/v1/responses", "chat": "/v1/chat/completions"}


@dataclass
class Received:
    """A request the replay upstream answered."""

    fmt: str
    name: str
    body: Any


def recording(fmt: str, name: str, stream: bool) -> bytes:
    """The recorded bytes of one answer."""
    return (RECORDINGS / fmt / f"{name}.{'sse' if stream else 'json'}").read_bytes()


def recordings(fmt: str) -> list[str]:
    """The names of the recordings of a format (either form)."""
    return sorted({p.stem for p in (RECORDINGS / fmt).iterdir() if p.suffix in (".json", ".sse")})


def sse_payloads(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of each event of an SSE body, as the SDKs read it (comments and ids skipped)."""
    events = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        if data:
            events.append((name, "\n".join(data)))
    return events


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        parts = self.path.split("?")[0].split("/")  # "", "r", fmt, name, "v1", …
        fmt, name, rest = (parts[2], parts[3], "/" + "/".join(parts[4:])) if len(parts) > 4 else ("", "", "")
        if fmt not in PATHS or rest != PATHS[fmt]:
            return self._send(404, "application/json", json.dumps({"error": {"message": f"no route {self.path}"}}).encode())
        self.server.replay.received.append(Received(fmt, name, body))
        stream = isinstance(body, dict) and body.get("stream") is True
        try:
            data = recording(fmt, name, stream)
        except FileNotFoundError:
            return self._send(404, "application/json", json.dumps({"error": {"message": f"no recording {name}"}}).encode())
        if not stream:
            return self._send(200, "application/json", data)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in data.split(b"\n\n"):
            if piece.strip():
                self._chunk(piece + b"\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replay: "ReplayUpstream") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replay = replay


class ReplayUpstream:
    """The replay server on a loopback port."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "ReplayUpstream":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def base_url(self, fmt: str, name: str) -> str:
        """The SDK base URL that plays `name` of format `fmt` ("anthropic", "responses" or "chat")."""
        return f"{self.url}/r/{fmt}/{name}" + ("" if fmt == "anthropic" else "/v1")

    def last(self, fmt: str, name: str) -> Received:
        """The last request answered with this recording."""
        return next(r for r in reversed(self.received) if (r.fmt, r.name) == (fmt, name))
