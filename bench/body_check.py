"""What the request-validation layer costs per call, in-process: strict JSON parsing against `json.loads`,
the compiled field checks (api/gateway_schemas.py) against marshmallow's own `load` of the same schemas, and
the codec's parse beside them for scale.

    .venv/bin/python bench/body_check.py
    .venv/bin/python bench/body_check.py --turns 40 --repeat 2000
    .venv/bin/python bench/body_check.py --key-check      # + the key read before a body over 64 KiB (SQLite)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.api.gateway_schemas import REQUEST_SCHEMAS, check_request  # noqa: E402
from service.gateway.codecs import anthropic, openai_chat, openai_responses  # noqa: E402
from service.http.request_guard import strict_json  # noqa: E402

CODECS = {"chat": openai_chat.parse_request, "responses": openai_responses.parse_request,
          "anthropic": anthropic.parse_request}
TOOL = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def bodies(turns: int) -> dict:
    """A request of each format with `turns` user/assistant/tool rounds (an agent's conversation)."""
    chat = [{"role": "system", "content": "You are terse."}]
    items: list = []
    blocks: list = []
    for i in range(turns):
        chat += [{"role": "user", "content": f"question {i} about the weather 🌦"},
                 {"role": "assistant", "content": None, "tool_calls": [{"id": f"call_{i}", "type": "function",
                  "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                 {"role": "tool", "tool_call_id": f"call_{i}", "content": "sunny, 21C"}]
        items += [{"role": "user", "content": [{"type": "input_text", "text": f"question {i} 🌦"}]},
                  {"type": "function_call", "call_id": f"call_{i}", "name": "weather", "arguments": "{}"},
                  {"type": "function_call_output", "call_id": f"call_{i}", "output": "sunny, 21C"}]
        blocks += [{"role": "user", "content": [{"type": "text", "text": f"question {i} 🌦"}]},
                   {"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{i}", "name": "weather",
                                                      "input": {"city": "Paris"}}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{i}",
                                                 "content": "sunny, 21C"}]}]
    blocks.append({"role": "user", "content": "and tomorrow?"})
    return {
        "chat": {"model": "gpt-bench", "max_tokens": 256, "temperature": 0.2, "messages": chat,
                 "tools": [{"type": "function", "function": {"name": "weather", "parameters": TOOL}}]},
        "responses": {"model": "gpt-bench", "max_output_tokens": 256, "instructions": "You are terse.",
                      "input": items, "tools": [{"type": "function", "name": "weather", "parameters": TOOL}]},
        "anthropic": {"model": "claude-bench", "max_tokens": 256, "system": "You are terse.", "messages": blocks,
                      "tools": [{"name": "weather", "input_schema": TOOL}]},
    }


def per_call(function, repeat: int) -> float:
    """CPU microseconds per call (process time: the machine may be shared): the best of 7 runs of `repeat` calls."""
    return min(timeit.repeat(function, number=repeat, repeat=7, timer=time.process_time)) / repeat * 1e6


def measure(inbound: str, raw: bytes, schema, repeat: int) -> list:
    """The per-call figures of one body, in the table's order."""
    parsed = strict_json(raw)
    check_request(inbound, parsed)
    schema.load(parsed)
    parse = CODECS[inbound]
    return [per_call(lambda: json.loads(raw), repeat), per_call(lambda: strict_json(raw), repeat),
            per_call(lambda: check_request(inbound, parsed), repeat),
            per_call(lambda: schema.load(parsed), max(1, repeat // 10)),
            per_call(lambda: parse(json.loads(raw)), max(1, repeat // 10))]


def key_check_cost(repeat: int) -> None:
    """CPU per call of the key read a body over 64 KiB waits for (api/gateway_http.py), on a temporary SQLite
    database, beside the JSON parse of such a body: what the common, small body does not pay."""
    import os
    import tempfile

    os.environ["ONEKEYLLM_DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/cost.db"
    from service import create_app
    from service.accounts.registry import create_key
    from service.api.gateway_http import _authenticate
    from service.storage.db import connected

    app = create_app()
    with app.test_request_context("/v1/chat/completions", method="POST"):
        with connected():
            _, plaintext = create_key(app.extensions["onekeyllm"].secrets.pepper, {"name": "bench", "budget_usd": "1"})
        body = json.dumps({"model": "gpt-bench", "messages": [{"role": "user", "content": "a " * 33_000}]}).encode()
        print(f"\nkey read before a large body (SQLite): {per_call(lambda: _authenticate(plaintext), repeat):,.1f} "
              f"CPU µs per call (pool check-out included); strict_json of a {len(body):,}-byte body: "
              f"{per_call(lambda: strict_json(body), repeat):,.1f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1000)
    parser.add_argument("--turns", type=int, action="append", help="conversation rounds (default: 0, 10, 40)")
    parser.add_argument("--key-check", action="store_true", help="also the key read before a body over 64 KiB")
    args = parser.parse_args()
    schemas = {inbound: REQUEST_SCHEMAS[inbound]() for inbound in CODECS}
    print("CPU µs per call (best of 7); ensure_ascii bodies, as the SDKs send them (emoji as surrogate pairs)\n")
    print("| format | rounds | body bytes | json.loads | strict_json | field checks | marshmallow load "
          "| codec parse |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for turns in args.turns or [0, 10, 40]:
        for inbound, body in bodies(turns).items():
            raw = json.dumps(body).encode()
            figures = measure(inbound, raw, schemas[inbound], args.repeat)
            print(f"| {inbound} | {turns} | {len(raw):,} | " + " | ".join(f"{f:,.1f}" for f in figures) + " |")
    if args.key_check:
        key_check_cost(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
