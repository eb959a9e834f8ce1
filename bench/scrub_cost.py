"""What scrubbing upstream texts costs (upstreams/scrub.py): per stream event, and per error message.

    .venv/bin/python bench/scrub_cost.py

Prints microseconds per event of an upstream stream read through `UpstreamResponse.events()` (every event
checked for the account's credential, error events scrubbed) against the bare SSE reader, and the cost of
scrubbing one typical error message.
"""
from __future__ import annotations

import io
import json
import time

import urllib3

from service.gateway.sse import read_events
from service.gateway.upstreams.http import UpstreamResponse
from service.gateway.upstreams.scrub import credentials_in, scrub

EVENTS = 2000
ROUNDS = 20
CREDENTIALS = credentials_in({"Authorization": "Bearer sk-proj-" + "Ab3" * 16})


def chat_stream() -> bytes:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-5.4",
             "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}]}
    return b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for _ in range(EVENTS)) + b"data: [DONE]\n\n"


def per_event(read) -> float:
    body = chat_stream()
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        count = sum(1 for _ in read(body))
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def _answer(body: bytes) -> UpstreamResponse:
    return UpstreamResponse(urllib3.HTTPResponse(body=io.BytesIO(body), preload_content=False), CREDENTIALS)


def bare(body: bytes):
    return read_events(_answer(body).iter_bytes())  # the read before scrubbing (main's pipeline)


def scrubbed(body: bytes):
    return _answer(body).events()


def main() -> None:
    plain, checked = per_event(bare), per_event(scrubbed)
    print(f"stream event, read_events(iter_bytes()):{plain:7.2f} us")
    print(f"stream event, events() (scrubbing):     {checked:7.2f} us  (+{checked - plain:.2f} us per event)")
    message = ("Incorrect API key provided: sk-proj-abc...xyz. You can find your API key at "
               "https://platform.openai.com/account/api-keys. Request id req_0123456789abcdef0123.")
    started, n = time.perf_counter(), 20000
    for _ in range(n):
        scrub(message, CREDENTIALS)
    print(f"scrub() of one {len(message)}-character error message: {(time.perf_counter() - started) / n * 1e6:7.2f} us")


if __name__ == "__main__":
    main()
