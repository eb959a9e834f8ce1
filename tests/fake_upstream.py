"""A fake LLM provider: OpenAI Chat / Responses and Anthropic Messages on a loopback port, with faults.

In tests::

    with FakeUpstream() as fake:
        client = openai.OpenAI(base_url=fake.base_url("openai", "http429"), api_key="x")

As a script: ``python tests/fake_upstream.py --port 9999``.

The scenario is the ``/s/<scenario>`` segment of the base URL (none means "ok"); names that are not
faults behave like "ok", so they can label accounts for ``count()``. Scenarios:

- ``ok``, ``parallel_tools`` (two tool calls instead of one);
- ``http<code>`` (e.g. http400, http401, http429, http500, http503, http529): that status in the
  provider's error envelope (429 with ``retry-after: 1``);
- ``garbage``: 200 with a JSON content type and ``<html>not json``; streams carry non-JSON data lines;
- ``cut``: streams send 3 events, then half an event, then drop the connection mid-chunk;
  non-streams declare a Content-Length larger than the half body they send;
- ``midstream_error``: streams send 3 events, then the provider's in-stream error;
- ``nousage``: no usage anywhere (Anthropic, whose format requires it, gets zeros);
- ``slow-<s>``: sleep before answering; ``stall-<s>``: streams pause after 2 events (non-streams: slow);
  ``wait-<s>``: streams send their headers, then pause before the first event (a model's time to first token);
  ``gzip-wait-<s>``: the same, the stream gzip-compressed (each event flushed), though identity was asked for;
- ``hangup``: close the connection without answering;
- ``closes_idle``: answer as ``ok``, then close the kept-alive connection after ``IDLE_CLOSE`` seconds
  without a next request (what servers' keep-alive timeouts do);
- ``runaway``: ignores every output limit and answers ``RUNAWAY_WORDS`` words, streamed one per event
  (``RUNAWAY_PAUSE`` apart); ``max_tokens_only``: honours ``max_tokens`` only, as llama.cpp's server and
  other OpenAI-compatible servers do (a ``max_completion_tokens`` alone makes it run away);
- any scenario given a usage with ``FakeUpstream.report_usage(scenario, {...})`` reports those figures
  (in the route's own usage shape, merged over its own) instead of what it counted.

SSE bodies use chunked transfer encoding, so connections stay alive and truncation is detectable.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Event = tuple[str | None, Any]  # (SSE `event:` name or None, JSON payload or raw string)

OPENAI_MODELS = ["gpt-fake-1", "gpt-fake-mini"]
RUNAWAY_WORDS = 3000
RUNAWAY_PAUSE = 0.002  # seconds between a runaway stream's events
IDLE_CLOSE = 0.2  # seconds a ``closes_idle`` connection is kept open for a next request
ANTHROPIC_MODELS = ["claude-fake-1", "claude-fake-haiku"]

# status -> (OpenAI error type, Anthropic error type, message)
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request_error", "fake upstream rejected the request"),
    401: ("invalid_request_error", "authentication_error", "invalid api key"),
    402: ("insufficient_quota", "billing_error", "payment required"),
    403: ("permission_error", "permission_error", "permission denied"),
    404: ("invalid_request_error", "not_found_error", "not found"),
    413: ("invalid_request_error", "request_too_large", "request too large"),
    429: ("requests", "rate_limit_error", "rate limit reached"),
    500: ("server_error", "api_error", "internal server error"),
    503: ("server_error", "api_error", "service unavailable"),
    529: ("server_error", "overloaded_error", "overloaded"),
}
_OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str  # without the /s/<scenario> prefix and the query string
    scenario: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None
    raw: bytes
    query: str = ""
    peer: str = ""  # the client's "host:port", to tell connections apart
    events_sent: int = 0  # SSE events written
    aborted: bool = False  # the client closed the connection before the answer ended


@dataclass
class ToolCall:
    """A tool call the fake decided to make."""

    n: int
    name: str
    args: dict[str, Any]

    @property
    def arguments(self) -> str:
        """The arguments as the JSON string of OpenAI formats."""
        return json.dumps(self.args)


@dataclass
class Reply:
    """What the fake model answers, independent of the wire format."""

    pieces: list[str] = field(default_factory=list)  # text, one piece per word
    tool_calls: list[ToolCall] = field(default_factory=list)
    truncated: bool = False
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def text(self) -> str:
        """The whole reply text."""
        return "".join(self.pieces)

    def finish(self, fmt: str) -> str:
        """The stop / finish reason in the given format ("chat" or "anthropic")."""
        kind = "tools" if self.tool_calls else "length" if self.truncated else "stop"
        return {"chat": {"tools": "tool_calls", "length": "length", "stop": "stop"},
                "anthropic": {"tools": "tool_use", "length": "max_tokens", "stop": "end_turn"}}[fmt][kind]


# ---------------------------------------------------------------------------------------------- the fake model

def _words(text: str) -> int:
    """Number of whitespace-separated words."""
    return len(text.split())


def _text_of(content: Any) -> str:
    """The text of a content value: a string, or the `text` of the parts that have one."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def _arg_pieces(arguments: str) -> list[str]:
    """Split a JSON argument string into three partial-JSON pieces."""
    k = max(1, len(arguments) // 3)
    return [p for p in (arguments[:k], arguments[k:2 * k], arguments[2 * k:]) if p]


def _plan(fmt: str, scenario: str, texts: list[str], last_user: str, tools: list[str],
          results: list[str] | None, limit: Any) -> Reply:
    """Decide the reply: tool calls, a tool-result echo, or the greeting; count usage."""
    input_tokens = sum(_words(t) for t in texts) + 3
    if tools and results is None:
        calls = [ToolCall(1, tools[0], {"city": "Paris"})]
        if scenario == "parallel_tools":
            calls.append(ToolCall(2, tools[0], {"city": "Rome"}))
        return Reply(tool_calls=calls, input_tokens=input_tokens, output_tokens=10 * len(calls))
    text = f"Tool said: {'; '.join(results)}" if results is not None else f"Hello from fake {fmt}: {last_user}"
    if scenario == "runaway" or (scenario == "max_tokens_only" and limit is None):
        text, limit = "word " * RUNAWAY_WORDS, None
    pieces = re.findall(r"\S+\s*", text.strip())
    truncated = isinstance(limit, int) and 0 <= limit < len(pieces)
    if truncated:
        pieces = pieces[:limit]
        if pieces:
            pieces[-1] = pieces[-1].rstrip()
    return Reply(pieces, [], truncated, input_tokens, len(pieces))


def _trailing_results(items: list[Any], is_result: Callable[[dict], bool], text: Callable[[dict], str]) -> list[str] | None:
    """Texts of the tool results at the end of the input, or None if the input does not end with one."""
    results: list[str] = []
    for item in reversed(items):
        if not (isinstance(item, dict) and is_result(item)):
            break
        results.insert(0, text(item))
    return results or None


def _chat_plan(body: dict, scenario: str) -> Reply:
    """Plan the reply to a Chat Completions request."""
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last_user = next((_text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
    results = _trailing_results(msgs, lambda m: m.get("role") == "tool", lambda m: _text_of(m.get("content")))
    tools = [(t.get("function") or t).get("name") for t in body.get("tools") or []]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if scenario == "max_tokens_only":
        limit = body.get("max_tokens")
    return _plan("chat", scenario, [_text_of(m.get("content")) for m in msgs], last_user, [t for t in tools if t],
                 results, limit)


def _responses_plan(body: dict, scenario: str) -> Reply:
    """Plan the reply to a Responses request."""
    raw = body.get("input") or []
    items = [{"role": "user", "content": raw}] if isinstance(raw, str) else [i for i in raw if isinstance(i, dict)]
    is_output = lambda i: i.get("type") == "function_call_output"  # noqa: E731
    texts = [_text_of(body.get("instructions"))]
    texts += [_text_of(i.get("output")) if is_output(i) else _text_of(i.get("content"))
              for i in items if is_output(i) or i.get("type", "message") == "message"]
    last_user = next((_text_of(i.get("content")) for i in reversed(items)
                      if i.get("role") == "user" and i.get("type", "message") == "message"), "")
    results = _trailing_results(items, is_output, lambda i: _text_of(i.get("output")))
    tools = [t["name"] for t in body.get("tools") or [] if t.get("type", "function") == "function" and t.get("name")]
    return _plan("responses", scenario, texts, last_user, tools, results, body.get("max_output_tokens"))


def _anthropic_texts(body: dict) -> list[str]:
    """All texts of an Anthropic request: system, text blocks and tool results."""
    texts = [_text_of(body.get("system"))]
    for m in body.get("messages") or []:
        content = m.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": _text_of(content)}]
        for b in blocks:
            if isinstance(b, dict):
                texts.append(_text_of(b.get("content")) if b.get("type") == "tool_result" else _text_of(b))
    return texts


def _anthropic_plan(body: dict, scenario: str) -> Reply:
    """Plan the reply to an Anthropic Messages request."""
    msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last_user = next((_text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
    results = None
    if msgs and msgs[-1].get("role") == "user" and isinstance(msgs[-1].get("content"), list):
        blocks = [b for b in msgs[-1]["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        results = [_text_of(b.get("content")) for b in blocks] or None
    tools = [t["name"] for t in body.get("tools") or [] if t.get("name")]
    return _plan("anthropic", scenario, _anthropic_texts(body), last_user, tools, results, body.get("max_tokens"))


# ---------------------------------------------------------------------------------------------- wire formats

def _chat_usage(r: Reply) -> dict:
    """Chat Completions usage."""
    return {"prompt_tokens": r.input_tokens, "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}


def _chat_body(model: str, r: Reply, cid: str, usage: bool) -> dict:
    """A non-streamed chat.completion."""
    message: dict[str, Any] = {"role": "assistant", "content": None if r.tool_calls else r.text, "refusal": None}
    if r.tool_calls:
        message["tool_calls"] = [{"id": f"call_fake{c.n}", "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}} for c in r.tool_calls]
    body = {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": None, "choices": [{"index": 0, "message": message, "logprobs": None,
                                                     "finish_reason": r.finish("chat")}]}
    return {**body, "usage": _chat_usage(r)} if usage else body


def _chat_events(model: str, r: Reply, cid: str, include_usage: bool) -> list[Event]:
    """The chunks of a streamed chat completion, ending with [DONE]."""
    base: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model, "system_fingerprint": None}
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict, finish: str | None = None) -> Event:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": None if r.tool_calls else "", "refusal": None})]
    events += [chunk({"content": p}) for p in r.pieces]
    for i, c in enumerate(r.tool_calls):
        events.append(chunk({"tool_calls": [{"index": i, "id": f"call_fake{c.n}", "type": "function",
                                             "function": {"name": c.name, "arguments": ""}}]}))
        events += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in _arg_pieces(c.arguments)]
    events.append(chunk({}, r.finish("chat")))
    if include_usage:
        events.append((None, {**base, "choices": [], "usage": _chat_usage(r)}))
    return events + [(None, "[DONE]")]


def _responses_items(r: Reply, n: int, done: bool) -> list[dict]:
    """Responses output items, in progress (empty) or done."""
    status = "completed" if done else "in_progress"
    if r.tool_calls:
        return [{"id": f"fc_fake{c.n}", "type": "function_call", "call_id": f"call_fake{c.n}", "name": c.name,
                 "arguments": c.arguments if done else "", "status": status} for c in r.tool_calls]
    part = {"type": "output_text", "text": r.text, "annotations": [], "logprobs": []}
    return [{"id": f"msg_fake{n}", "type": "message", "role": "assistant",
             "status": "incomplete" if done and r.truncated else status, "content": [part] if done else []}]


def _response_obj(body: dict, r: Reply, n: int, done: bool, usage: bool) -> dict:
    """A Responses `response` object, in progress or final."""
    status = ("incomplete" if r.truncated else "completed") if done else "in_progress"
    conversation = body.get("conversation")
    return {
        "id": f"resp_fake{n}", "object": "response", "created_at": int(time.time()), "status": status,
        "background": False, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {}, "model": body.get("model"),
        "output": _responses_items(r, n, True) if done else [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "conversation": {"id": conversation} if isinstance(conversation, str) else conversation,
        "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0), "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"), "user": body.get("user"),
        "usage": {"input_tokens": r.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": r.output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": r.input_tokens + r.output_tokens} if done and usage else None,
    }


def _responses_events(body: dict, r: Reply, n: int, usage: bool) -> list[Event]:
    """The full event sequence of a streamed response, with sequence numbers."""
    events: list[Event] = []

    def emit(type_: str, **fields: Any) -> None:
        events.append((type_, {"type": type_, "sequence_number": len(events), **fields}))

    start = _response_obj(body, r, n, False, usage)
    emit("response.created", response=start)
    emit("response.in_progress", response=start)
    for idx, (pending, item) in enumerate(zip(_responses_items(r, n, False), _responses_items(r, n, True))):
        emit("response.output_item.added", output_index=idx, item=pending)
        where = {"item_id": item["id"], "output_index": idx}
        if item["type"] == "message":
            emit("response.content_part.added", **where, content_index=0,
                 part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            for piece in r.pieces:
                emit("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", **where, content_index=0, text=r.text, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=item["content"][0])
        else:
            for piece in _arg_pieces(item["arguments"]):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, name=item["name"], arguments=item["arguments"])
        emit("response.output_item.done", output_index=idx, item=item)
    final = _response_obj(body, r, n, True, usage)
    emit(f"response.{final['status']}", response=final)
    return events


def _anthropic_usage(input_tokens: int, output_tokens: int) -> dict:
    """Anthropic usage."""
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


def _anthropic_blocks(r: Reply) -> list[dict]:
    """The content blocks of an Anthropic reply."""
    if r.tool_calls:
        return [{"type": "tool_use", "id": f"toolu_fake{c.n}", "name": c.name, "input": c.args} for c in r.tool_calls]
    return [{"type": "text", "text": r.text, "citations": None}]


def _anthropic_body(model: str, r: Reply, mid: str, usage: bool) -> dict:
    """A non-streamed Anthropic message."""
    return {"id": mid, "type": "message", "role": "assistant", "model": model, "content": _anthropic_blocks(r),
            "stop_reason": r.finish("anthropic"), "stop_sequence": None,
            "usage": _anthropic_usage(r.input_tokens if usage else 0, r.output_tokens if usage else 0)}


def _anthropic_events(model: str, r: Reply, mid: str, usage: bool) -> list[Event]:
    """The events of a streamed Anthropic message, each with its `event:` name."""
    def ev(type_: str, **fields: Any) -> Event:
        return type_, {"type": type_, **fields}

    message = {**_anthropic_body(model, r, mid, usage), "content": [], "stop_reason": None,
               "usage": _anthropic_usage(r.input_tokens if usage else 0, 0)}
    events = [ev("message_start", message=message), ev("ping")]
    for i, block in enumerate(_anthropic_blocks(r)):
        if block["type"] == "tool_use":
            events.append(ev("content_block_start", index=i, content_block={**block, "input": {}}))
            events += [ev("content_block_delta", index=i, delta={"type": "input_json_delta", "partial_json": p})
                       for p in _arg_pieces(json.dumps(block["input"]))]
        else:
            events.append(ev("content_block_start", index=i, content_block={"type": "text", "text": ""}))
            events += [ev("content_block_delta", index=i, delta={"type": "text_delta", "text": p}) for p in r.pieces]
        events.append(ev("content_block_stop", index=i))
    events.append(ev("message_delta", delta={"stop_reason": r.finish("anthropic"), "stop_sequence": None},
                     usage={"output_tokens": r.output_tokens if usage else 0}))
    return events + [ev("message_stop")]


def _stream_error(provider: str, path: str, n: int) -> Event:
    """The in-stream failure event a provider sends."""
    if provider == "anthropic":
        return "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    if path == "/v1/responses":
        failed = {"id": f"resp_fake{n}", "object": "response", "status": "failed", "output": [],
                  "error": {"code": "server_error", "message": "fake upstream stream error"}}
        return "response.failed", {"type": "response.failed", "sequence_number": 3, "response": failed}
    return None, {"error": {"message": "fake upstream stream error", "type": "server_error", "param": None, "code": None}}


def _validate(path: str, body: dict) -> str | None:
    """The 400 message the real provider would give for a malformed request, or None."""
    if path == "/v1/messages" and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    prev: set[Any] = set()
    messages = body.get("messages") if path != "/v1/responses" else None
    for m in [m for m in messages or [] if isinstance(m, dict)]:
        content = m.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        if m.get("role") == "tool" and m.get("tool_call_id") not in prev:
            return "messages with role 'tool' must be a response to a preceding message with 'tool_calls'"
        for b in blocks:
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in prev:
                return f"unexpected `tool_use_id` found in `tool_result` blocks: {b.get('tool_use_id')}"
        if m.get("role") == "assistant":
            prev = {c.get("id") for c in m.get("tool_calls") or []}
            prev |= {b.get("id") for b in blocks if b.get("type") == "tool_use"}
    return None


def _sse(name: str | None, data: Any, garbage: bool = False) -> bytes:
    """Encode one SSE event."""
    text = data if isinstance(data, str) else json.dumps(data)
    if garbage and text != "[DONE]":
        text = "<html>not json"
    return ((f"event: {name}\n" if name else "") + f"data: {text}\n\n").encode()


def _seconds(scenario: str, prefix: str) -> float:
    """The number of seconds in a `slow-2.5` / `stall-2.5` scenario, else 0."""
    m = re.fullmatch(re.escape(prefix) + r"(\d+(?:\.\d+)?)", scenario)
    return float(m.group(1)) if m else 0.0


def _rfc3339(seconds_from_now: float) -> str:
    """A UTC timestamp in RFC 3339."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------- the server

class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; one `_handle` per request."""

    protocol_version = "HTTP/1.1"
    server: "_Server"
    scenario = "ok"
    provider = "openai"
    route = ""
    n = 0

    def do_GET(self) -> None:  # noqa: N802
        """Handle GET."""
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        """Handle POST."""
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Log only when running as a script with --verbose."""
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> bytes:
        """Read the request body (Content-Length or chunked)."""
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _handle(self) -> None:
        """Record the request, apply the scenario, then route it."""
        path, _, query = self.path.partition("?")
        m = re.match(r"^/s/([^/]+)(/.*)$", path)
        self.scenario, path = (m.group(1), m.group(2)) if m else ("ok", path)
        self.route = path
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.n = self.server.fake._record(Recorded(self.command, path, self.scenario, headers, body, raw, query,
                                                       "%s:%s" % self.client_address[:2]))
        is_anthropic = path.startswith("/v1/messages") or (path.startswith("/v1/models") and "anthropic-version" in headers)
        self.provider = "anthropic" if is_anthropic else "openai"
        try:
            self._dispatch(path, headers, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        if self.scenario == "closes_idle":  # the wait for the next request times out: the connection is closed
            self.connection.settimeout(IDLE_CLOSE)

    def _dispatch(self, path: str, headers: dict[str, str], body: Any) -> None:
        """Apply faults and auth, then answer the route."""
        if self.scenario == "hangup":
            self.close_connection = True
            return
        streaming = isinstance(body, dict) and bool(body.get("stream"))
        time.sleep(_seconds(self.scenario, "slow-") or (0 if streaming else _seconds(self.scenario, "stall-")))
        bearer = bool(re.match(r"Bearer \S", headers.get("authorization", "")))
        if self.provider == "anthropic" and not (headers.get("x-api-key") or bearer):
            return self._error(401, "x-api-key header is required")
        if self.provider == "anthropic" and not headers.get("anthropic-version"):
            return self._error(400, "anthropic-version: header is required")
        if self.provider == "openai" and not bearer:
            return self._error(401, "You didn't provide an API key.")
        if m := re.fullmatch(r"http(\d{3})", self.scenario):
            return self._error(int(m.group(1)))
        if self.command == "GET" and path == "/v1/models":
            return self._models()
        if self.command == "GET" and path.startswith("/v1/models/"):
            return self._send_json(200, self._model(path.removeprefix("/v1/models/")))
        routes = {"/v1/chat/completions": self._chat, "/v1/responses": self._responses,
                  "/v1/messages": self._messages, "/v1/messages/count_tokens": self._count_tokens}
        if self.command != "POST" or path not in routes:
            return self._error(404, f"no route {self.command} {path}")
        if not isinstance(body, dict) or not body.get("model"):
            return self._error(400, "the body must be a JSON object with a model")
        if problem := _validate(path, body):
            return self._error(400, problem)
        routes[path](body)

    # ----- routes

    def _chat(self, body: dict) -> None:
        """POST /v1/chat/completions."""
        r, model, usage = _chat_plan(body, self.scenario), body["model"], self.scenario != "nousage"
        if body.get("stream"):
            include = usage and bool((body.get("stream_options") or {}).get("include_usage"))
            return self._send_stream(self._reported(_chat_events(model, r, f"chatcmpl-fake{self.n}", include)))
        self._send_json(200, self._reported(_chat_body(model, r, f"chatcmpl-fake{self.n}", usage)))

    def _responses(self, body: dict) -> None:
        """POST /v1/responses."""
        r, usage = _responses_plan(body, self.scenario), self.scenario != "nousage"
        if body.get("stream"):
            return self._send_stream(self._reported(_responses_events(body, r, self.n, usage)))
        self._send_json(200, self._reported(_response_obj(body, r, self.n, True, usage)))

    def _messages(self, body: dict) -> None:
        """POST /v1/messages."""
        r, model, usage = _anthropic_plan(body, self.scenario), body["model"], self.scenario != "nousage"
        if body.get("stream"):
            return self._send_stream(self._reported(_anthropic_events(model, r, f"msg_fake{self.n}", usage)))
        self._send_json(200, self._reported(_anthropic_body(model, r, f"msg_fake{self.n}", usage)))

    def _reported(self, answer: Any) -> Any:
        """The answer (a body, or a stream's events) with the usage a test chose for this scenario, if any."""
        chosen = self.server.fake.reported_usage.get(self.scenario)
        if not chosen:
            return answer
        for payload in ([data for _, data in answer] if isinstance(answer, list) else [answer]):
            for holder in (payload, payload.get("message"), payload.get("response")) if isinstance(payload, dict) else ():
                if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
                    holder["usage"].update(json.loads(json.dumps(chosen)))
        return answer

    def _count_tokens(self, body: dict) -> None:
        """POST /v1/messages/count_tokens."""
        self._send_json(200, {"input_tokens": sum(_words(t) for t in _anthropic_texts(body)) + 3})

    def _model(self, model_id: str) -> dict:
        """One model in the provider's shape."""
        if self.provider == "anthropic":
            return {"type": "model", "id": model_id, "display_name": model_id.replace("-", " ").title(),
                    "created_at": "2025-01-01T00:00:00Z"}
        return {"id": model_id, "object": "model", "created": 1735689600, "owned_by": "fake-upstream"}

    def _models(self) -> None:
        """GET /v1/models."""
        if self.provider == "anthropic":
            data = [self._model(m) for m in ANTHROPIC_MODELS]
            body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        else:
            body = {"object": "list", "data": [self._model(m) for m in OPENAI_MODELS]}
        self._send_json(200, body)

    # ----- output

    def _base_headers(self, success: bool) -> dict[str, str]:
        """Request ids always, rate-limit headers on success."""
        headers = {"request-id": f"req_fake{self.n}", "x-request-id": f"req_fake{self.n}"}
        if success and self.provider == "openai":
            headers.update({"x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "999",
                            "x-ratelimit-limit-tokens": "100000", "x-ratelimit-remaining-tokens": "99000",
                            "x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"})
        elif success:
            headers.update({"anthropic-ratelimit-requests-limit": "1000",
                            "anthropic-ratelimit-requests-remaining": "999",
                            "anthropic-ratelimit-requests-reset": _rfc3339(1),
                            "anthropic-ratelimit-tokens-limit": "100000",
                            "anthropic-ratelimit-tokens-remaining": "99000",
                            "anthropic-ratelimit-tokens-reset": _rfc3339(360)})
        return headers

    def _head(self, status: int, headers: dict[str, str]) -> None:
        """Send the status line and headers."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _error(self, status: int, message: str | None = None) -> None:
        """An error in the provider's own envelope."""
        oa_type, an_type, default = _ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                                         "api_error" if status >= 500 else "invalid_request_error",
                                                         f"fake upstream error {status}"))
        message = message or default
        if self.provider == "anthropic":
            body: dict = {"type": "error", "error": {"type": an_type, "message": message}}
        else:
            body = {"error": {"message": message, "type": oa_type, "param": None, "code": _OPENAI_CODES.get(status)}}
        self._send_json(status, body, {"retry-after": "1"} if status == 429 else {})

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None) -> None:
        """A JSON response with Content-Length (garbage / cut on success when the scenario says so)."""
        data = json.dumps(obj).encode()
        if status == 200 and self.scenario == "garbage":
            data = b"<html>not json"
        headers = {"content-type": "application/json", **self._base_headers(status == 200), **(extra or {})}
        if status == 200 and self.scenario == "cut":
            self._head(status, {**headers, "content-length": str(len(data) + 100)})
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        self._head(status, {**headers, "content-length": str(len(data))})
        self.wfile.write(data)

    def _chunk(self, data: bytes, declared: int | None = None) -> None:
        """Write one chunk of a chunked body (declared > len(data) writes a broken chunk)."""
        self.wfile.write(b"%x\r\n" % (declared if declared is not None else len(data)) + data
                         + (b"" if declared is not None else b"\r\n"))
        self.wfile.flush()

    def _send_stream(self, events: list[Event]) -> None:
        """An SSE body, chunked; stall, cut, garbage, midstream_error and gzip are applied here."""
        compressed = self.scenario.startswith("gzip-")
        self._head(200, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                         "transfer-encoding": "chunked", **self._base_headers(True),
                         **({"content-encoding": "gzip"} if compressed else {})})
        stall, garbage = _seconds(self.scenario, "stall-"), self.scenario == "garbage"
        record = self.server.fake.requests[self.n - 1]
        self.wfile.flush()
        time.sleep(_seconds(self.scenario.removeprefix("gzip-"), "wait-"))
        if compressed:
            gzipped = zlib.compressobj(wbits=31)
            for name, data in events:
                self._chunk(gzipped.compress(_sse(name, data)) + gzipped.flush(zlib.Z_SYNC_FLUSH))
                record.events_sent += 1
            self._chunk(gzipped.flush())
            self._chunk(b"")
            return
        for i, (name, data) in enumerate(events):
            if self.scenario in ("runaway", "max_tokens_only") and i:
                time.sleep(RUNAWAY_PAUSE)
            if i == 2 and stall:
                time.sleep(stall)
            if i == 3 and self.scenario == "cut":
                event = _sse(name, data)
                self._chunk(event[: len(event) // 2], declared=len(event))
                self.close_connection = True
                return
            if i == 3 and self.scenario == "midstream_error":
                self._chunk(_sse(*_stream_error(self.provider, self.route, self.n)))
                break
            try:
                self._chunk(_sse(name, data, garbage))
            except (BrokenPipeError, ConnectionResetError):
                record.aborted = True
                raise
            record.events_sent += 1
        self._chunk(b"")


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its FakeUpstream."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # socketserver's 5 overflows when 40 calls connect at once on a loaded machine

    def __init__(self, address: tuple[str, int], fake: "FakeUpstream", verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.fake, self.verbose = fake, verbose

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that drop their connections."""
        if self.verbose or not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeUpstream:
    """A fake OpenAI + Anthropic upstream on a loopback port; records every request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        self._server = _Server((host, port), self, verbose)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.requests: list[Recorded] = []
        self.reported_usage: dict[str, dict] = {}  # scenario -> the usage figures it reports (report_usage)
        self.url = f"http://{host}:{self._server.server_address[1]}"

    def start(self) -> "FakeUpstream":
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-upstream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "FakeUpstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def base_url(self, provider: str, scenario: str = "ok") -> str:
        """The SDK base URL for a provider ("openai" includes /v1, "anthropic" does not) and scenario."""
        if provider not in ("openai", "anthropic"):
            raise ValueError(f"unknown provider {provider!r}")
        return f"{self.url}/s/{scenario}" + ("/v1" if provider == "openai" else "")

    def report_usage(self, scenario: str, usage: dict) -> None:
        """Make `scenario` report these usage figures (in the route's own shape), whatever it answers."""
        self.reported_usage[scenario] = usage

    def _record(self, rec: Recorded) -> int:
        """Append a request; returns its 1-based number."""
        with self._lock:
            self.requests.append(rec)
            return len(self.requests)

    def last(self, path_suffix: str | None = None, scenario: str | None = None) -> Recorded:
        """The most recent request whose path ends with path_suffix and whose scenario matches."""
        with self._lock:
            for rec in reversed(self.requests):
                if (path_suffix is None or rec.path.endswith(path_suffix)) and scenario in (None, rec.scenario):
                    return rec
        raise LookupError(f"no request matching path_suffix={path_suffix!r} scenario={scenario!r}")

    def count(self, scenario: str | None = None) -> int:
        """Number of requests received for a scenario (all when None)."""
        with self._lock:
            return sum(1 for r in self.requests if scenario in (None, r.scenario))

    def clear(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()


def main() -> None:
    """Run the fake as a script."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    fake = FakeUpstream(args.host, args.port, verbose=args.verbose)
    print(f"fake upstream on {fake.url}  (openai: {fake.base_url('openai')}, anthropic: {fake.base_url('anthropic')})",
          flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake._server.server_close()


if __name__ == "__main__":
    main()
