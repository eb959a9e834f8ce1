"""A fast fake LLM provider for benchmarks: OpenAI Chat / Responses and Anthropic Messages on a loopback port.

It answers from precomputed bytes so that it costs as little as possible per request
(one recv, one json.loads of the body, one dict look-up, one sendall): what the
gateway adds is then what a benchmark measures. Bodies are realistic and
deterministic (fixed ids and text, usage from the model's fixed reply); streams use
chunked transfer encoding, one chunk per SSE event, written in one send.

Routes (under an optional pacing prefix ``/paced/<chunks>/<seconds>``, which streams
that many content pieces that many seconds apart, for "many slow open streams"):

- ``POST /v1/chat/completions`` (``stream``, ``stream_options.include_usage``)
- ``POST /v1/responses`` (``stream``)
- ``POST /v1/messages`` (``stream``)
- ``GET /v1/models``, ``GET /health``

Run: ``python bench/fast_upstream.py --port 9100 --chunks 20``.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Optional

import gevent
from gevent.server import StreamServer

MAX_HEADER = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
CACHE_LIMIT = 4096
WORDS = ("The quick brown fox jumps over the lazy dog while the gateway counts every token it forwards, "
         "bills each request to the cent and keeps a log row per call, as it should").split()

Event = tuple[Optional[str], object]  # (SSE `event:` name or None, JSON payload or raw string)


def _pieces(n: int) -> list[str]:
    """n deterministic text pieces of one or two words, the first without a leading space."""
    return [("" if i == 0 else " ") + WORDS[i % len(WORDS)] for i in range(n)]


def _sse(name: Optional[str], data: object) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()


class Replies:
    """Builds (once per shape) the bodies of every route; input tokens come from the request size."""

    def __init__(self, chunks: int):
        self.pieces = _pieces(chunks)
        self.text = "".join(self.pieces)
        self.output_tokens = len(self.pieces)
        self.created = 1_750_000_000

    # ----- OpenAI Chat Completions
    def chat_usage(self, input_tokens: int) -> dict:
        return {"prompt_tokens": input_tokens, "completion_tokens": self.output_tokens,
                "total_tokens": input_tokens + self.output_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}

    def chat(self, model: str, input_tokens: int) -> dict:
        return {"id": "chatcmpl-fastupstream0001", "object": "chat.completion", "created": self.created,
                "model": model, "system_fingerprint": "fp_bench",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text, "refusal": None,
                                                     "annotations": []},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": self.chat_usage(input_tokens), "service_tier": "default"}

    def chat_events(self, model: str, input_tokens: int, include_usage: bool) -> list[Event]:
        base = {"id": "chatcmpl-fastupstream0001", "object": "chat.completion.chunk", "created": self.created,
                "model": model, "system_fingerprint": "fp_bench", "service_tier": "default"}
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict, finish: Optional[str] = None) -> Event:
            return None, {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": p}) for p in self.pieces]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append((None, {**base, "choices": [], "usage": self.chat_usage(input_tokens)}))
        return events + [(None, "[DONE]")]

    # ----- OpenAI Responses
    def response(self, model: str, input_tokens: int, done: bool) -> dict:
        message = {"id": "msg_fastupstream0001", "type": "message", "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}]}
        return {"id": "resp_fastupstream0001", "object": "response", "created_at": self.created,
                "status": "completed" if done else "in_progress", "background": False, "error": None,
                "incomplete_details": None, "instructions": None, "max_output_tokens": None, "metadata": {},
                "model": model, "output": [message] if done else [], "parallel_tool_calls": True,
                "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
                "service_tier": "default", "store": True, "temperature": 1.0,
                "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
                "top_p": 1.0, "truncation": "disabled", "user": None,
                "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": self.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": input_tokens + self.output_tokens} if done else None}

    def response_events(self, model: str, input_tokens: int) -> list[Event]:
        events: list[Event] = []

        def emit(type_: str, **fields) -> None:
            events.append((type_, {"type": type_, "sequence_number": len(events), **fields}))

        start, final = self.response(model, input_tokens, False), self.response(model, input_tokens, True)
        item = final["output"][0]
        where = {"item_id": item["id"], "output_index": 0}
        emit("response.created", response=start)
        emit("response.in_progress", response=start)
        emit("response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
        emit("response.content_part.added", **where, content_index=0,
             part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        for piece in self.pieces:
            emit("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
        emit("response.output_text.done", **where, content_index=0, text=self.text, logprobs=[])
        emit("response.content_part.done", **where, content_index=0, part=item["content"][0])
        emit("response.output_item.done", output_index=0, item=item)
        emit("response.completed", response=final)
        return events

    # ----- Anthropic Messages
    def message(self, model: str, input_tokens: int) -> dict:
        return {"id": "msg_01FastUpstream0000000001", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": self.text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": self.output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                          "service_tier": "standard"}}

    def message_events(self, model: str, input_tokens: int) -> list[Event]:
        def ev(type_: str, **fields) -> Event:
            return type_, {"type": type_, **fields}

        start = {**self.message(model, input_tokens), "content": [], "stop_reason": None}
        start["usage"] = {**start["usage"], "output_tokens": 1}
        events = [ev("message_start", message=start),
                  ev("content_block_start", index=0, content_block={"type": "text", "text": ""}), ev("ping")]
        events += [ev("content_block_delta", index=0, delta={"type": "text_delta", "text": p}) for p in self.pieces]
        events += [ev("content_block_stop", index=0),
                   ev("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                      usage={"output_tokens": self.output_tokens}),
                   ev("message_stop")]
        return events


def _is_piece(data: object) -> bool:
    """Whether an event carries a piece of the reply's text (what pacing spaces out)."""
    if not isinstance(data, dict):
        return False
    if data.get("type") in ("response.output_text.delta", "content_block_delta"):
        return True
    choices = data.get("choices")
    return bool(choices) and bool(choices[0].get("delta", {}).get("content"))


def _rate_limit_headers(anthropic: bool) -> bytes:
    if not anthropic:
        return (b"x-ratelimit-limit-requests: 10000\r\nx-ratelimit-remaining-requests: 9999\r\n"
                b"x-ratelimit-limit-tokens: 30000000\r\nx-ratelimit-remaining-tokens: 29999000\r\n"
                b"x-ratelimit-reset-requests: 6ms\r\nx-ratelimit-reset-tokens: 2ms\r\n"
                b"x-request-id: req_fastupstream\r\n")
    soon = (datetime.now(timezone.utc) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"anthropic-ratelimit-requests-limit: 4000\r\nanthropic-ratelimit-requests-remaining: 3999\r\n"
            f"anthropic-ratelimit-requests-reset: {soon}\r\nanthropic-ratelimit-tokens-limit: 2000000\r\n"
            f"anthropic-ratelimit-tokens-remaining: 1999000\r\nanthropic-ratelimit-tokens-reset: {soon}\r\n"
            f"request-id: req_fastupstream\r\n").encode()


def _json_answer(status: int, body: dict, extra: bytes = b"") -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}.get(status, b"Error")
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
            % (status, reason, len(data), extra)) + data


def _stream_head(extra: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n%s\r\n" % extra)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


NOT_FOUND = _json_answer(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                         "param": None, "code": None}})


class FastUpstream:
    """The server: parses just enough HTTP/1.1, caches every answer by its shape."""

    def __init__(self, chunks: int):
        self.replies = Replies(chunks)
        self.cache: dict = {}
        self.openai_headers = _rate_limit_headers(False)
        self.anthropic_headers = _rate_limit_headers(True)
        self.served = 0

    # ----- answers
    @staticmethod
    def _events(r: Replies, route: str, model: str, input_tokens: int, include_usage: bool) -> list[Event]:
        if route == "/v1/chat/completions":
            return r.chat_events(model, input_tokens, include_usage)
        if route == "/v1/responses":
            return r.response_events(model, input_tokens)
        return r.message_events(model, input_tokens)

    def answer(self, route: str, body: dict, input_tokens: int) -> tuple[bytes, Optional[list]]:
        """(head or whole answer, SSE events or None) for a POST, cached by its shape."""
        model = body.get("model") if isinstance(body.get("model"), str) else "unknown"
        stream = body.get("stream") is True
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        shape = (route, model, stream, include_usage, input_tokens)
        cached = self.cache.get(shape)
        if cached is not None:
            return cached
        extra = self.anthropic_headers if route == "/v1/messages" else self.openai_headers
        r = self.replies
        if stream:
            events = self._events(r, route, model, input_tokens, include_usage)
            cached = (_stream_head(extra), [_chunk(_sse(*e)) for e in events])
        elif route == "/v1/chat/completions":
            cached = (_json_answer(200, r.chat(model, input_tokens), extra), None)
        elif route == "/v1/responses":
            cached = (_json_answer(200, r.response(model, input_tokens, True), extra), None)
        else:
            cached = (_json_answer(200, r.message(model, input_tokens), extra), None)
        if len(self.cache) >= CACHE_LIMIT:
            self.cache.clear()
        self.cache[shape] = cached
        return cached

    def _get(self, route: str) -> bytes:
        if route == "/health":
            return _json_answer(200, {"status": "ok", "served": self.served})
        if route == "/v1/models":
            return _json_answer(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": self.replies.created, "owned_by": "bench"}
                for m in ("gpt-bench", "claude-bench")]})
        return NOT_FOUND

    # ----- the connection loop
    def handle(self, sock, address) -> None:
        """Serve one keep-alive connection until the client closes it."""
        buf = b""
        try:
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    if len(buf) > MAX_HEADER:
                        return
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                    end = buf.find(b"\r\n\r\n")
                head = buf[:end]
                lower = head.lower()
                line_end = head.find(b"\r\n")
                method, _, rest = head[: line_end if line_end >= 0 else len(head)].partition(b" ")
                target = rest.rpartition(b" ")[0].decode("latin-1")
                length = 0
                at = lower.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = lower.find(b"\r\n", at + 2)
                    length = int(lower[at + 17: stop if stop >= 0 else len(lower)])
                if length > MAX_BODY:
                    return
                if b"\r\ntransfer-encoding: chunked" in lower:
                    body_bytes, buf = self._read_chunked(sock, buf[end + 4:])
                else:
                    buf = buf[end + 4:]
                    while len(buf) < length:
                        data = sock.recv(max(65536, length - len(buf)))
                        if not data:
                            return
                        buf += data
                    body_bytes, buf = buf[:length], buf[length:]
                keep_alive = b"\r\nconnection: close" not in lower
                self.served += 1
                if not self._respond(sock, method, target, body_bytes):
                    return
                if not keep_alive:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            sock.close()

    def _read_chunked(self, sock, buf: bytes) -> tuple[bytes, bytes]:
        body = b""
        while True:
            line_end = buf.find(b"\r\n")
            while line_end < 0:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed in a chunk header")
                buf += data
                line_end = buf.find(b"\r\n")
            size = int(buf[:line_end].split(b";")[0], 16)
            while len(buf) < line_end + 2 + size + 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed in a chunk")
                buf += data
            body += buf[line_end + 2: line_end + 2 + size]
            buf = buf[line_end + 2 + size + 2:]
            if size == 0:
                return body, buf
            if len(body) > MAX_BODY:
                raise ConnectionError("body too large")

    def _respond(self, sock, method: bytes, target: str, body_bytes: bytes) -> bool:
        """Write one answer; False when the connection must close."""
        route = target.split("?", 1)[0]
        pace = None
        if route.startswith("/paced/"):
            _, _, chunks, seconds, tail = route.split("/", 4)
            pace = (int(chunks), float(seconds))
            route = "/" + tail
        if method == b"GET":
            sock.sendall(self._get(route))
            return True
        if method != b"POST" or route not in ("/v1/chat/completions", "/v1/responses", "/v1/messages"):
            sock.sendall(NOT_FOUND)
            return True
        try:
            body = json.loads(body_bytes)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            sock.sendall(_json_answer(400, {"error": {"message": "invalid JSON body", "type": "invalid_request_error",
                                                      "param": None, "code": None}}))
            return True
        input_tokens = max(1, len(body_bytes) // 4)
        if pace:
            return self._paced(sock, route, body, input_tokens, *pace)
        head, events = self.answer(route, body, input_tokens)
        if events is None:
            sock.sendall(head)
        else:
            sock.sendall(head + b"".join(events) + b"0\r\n\r\n")
        return True

    def _paced(self, sock, route: str, body: dict, input_tokens: int, chunks: int, seconds: float) -> bool:
        """A slow answer: `chunks` content pieces, `seconds` apart (a non-stream waits the whole time)."""
        replies = Replies(chunks)
        extra = self.anthropic_headers if route == "/v1/messages" else self.openai_headers
        model = str(body.get("model"))
        if body.get("stream") is not True:
            gevent.sleep(chunks * seconds)
            whole = {"/v1/chat/completions": lambda: replies.chat(model, input_tokens),
                     "/v1/responses": lambda: replies.response(model, input_tokens, True),
                     "/v1/messages": lambda: replies.message(model, input_tokens)}[route]()
            sock.sendall(_json_answer(200, whole, extra))
            return True
        options = body.get("stream_options")
        events = self._events(replies, route, model, input_tokens,
                              isinstance(options, dict) and options.get("include_usage") is True)
        sock.sendall(_stream_head(extra))
        for name, data in events:
            sock.sendall(_chunk(_sse(name, data)))
            if _is_piece(data):
                gevent.sleep(seconds)
        sock.sendall(b"0\r\n\r\n")
        return True


def serve(host: str, port: int, chunks: int, backlog: int = 4096) -> StreamServer:
    """Start the server (not blocking); returns it."""
    upstream = FastUpstream(chunks)
    server = StreamServer((host, port), upstream.handle, backlog=backlog)
    server.max_accept = 1000
    server.start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--chunks", type=int, default=20, help="content pieces per answer (stream events)")
    args = parser.parse_args()
    server = serve(args.host, args.port, args.chunks)
    print(f"fast upstream on http://{args.host}:{server.server_port} ({args.chunks} chunks)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
