"""The gateway's added latency: Chat requests through `onekeyllm serve` vs. straight to the fake upstream.

Starts the fake upstream (tests/fake_upstream.py) and a gateway on a temporary SQLite database,
configures them through the admin API, then sends a few hundred sequential requests each way and
prints p50 / p99 of the whole request (non-streamed) and of the first event and the whole stream
(streamed). The difference between the two columns is what the gateway adds.

    .venv/bin/python bench/latency.py [--requests 300]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, start_server  # noqa: E402

PROMPT = "Say hello to the benchmark"


def start_fake_upstream(tmp: Path) -> tuple[subprocess.Popen, str]:
    """The fake provider in its own process (so it does not share this process's GIL with the client)."""
    port = free_port()
    log = open(tmp / "fake-upstream.log", "wb")
    # TCP_NODELAY on the fake's sockets: its headers and body go out in separate writes, and Nagle's
    # algorithm against the client's delayed ACK would add ~40 ms to every request, hiding what we measure
    script = ("import sys; sys.argv = ['fake_upstream', '--port', %r]; import fake_upstream; "
              "fake_upstream._Handler.disable_nagle_algorithm = True; fake_upstream.main()" % str(port))
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT / "tests", stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            requests.get(url + "/v1/models", timeout=1)
            return process, url
        except requests.RequestException:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the fake upstream did not start")


def percentile(values: list, p: float) -> float:
    """The p-th percentile (nearest rank) in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


def timed(call: Callable[[], tuple], count: int, warmup: int = 20) -> tuple[list, list]:
    """Run `call` warmup + count times; (first-event seconds, total seconds) of the counted runs."""
    firsts, totals = [], []
    for i in range(warmup + count):
        start = time.perf_counter()
        first = call()
        total = time.perf_counter() - start
        if i >= warmup:
            firsts.append(first - start)
            totals.append(total)
    return firsts, totals


def plain(session, url: str, body: dict, headers: dict) -> Callable[[], float]:
    """A non-streamed request; 'first event' is the whole answer."""
    def call() -> float:
        answer = session.post(url, json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        answer.json()
        return time.perf_counter()
    return call


def streamed(session, url: str, body: dict, headers: dict) -> Callable[[], float]:
    """A streamed request: time of the first data line, then read to the end."""
    def call() -> float:
        first = None
        with session.post(url, json={**body, "stream": True}, headers=headers, timeout=30, stream=True) as answer:
            answer.raise_for_status()
            for line in answer.iter_lines():
                if first is None and line.startswith(b"data:"):
                    first = time.perf_counter()
        return first or time.perf_counter()
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per case")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="onekeyllm-bench-"))
    fake, fake_url = start_fake_upstream(tmp)
    gateway = start_server(tmp, name="bench", database_url=f"sqlite:///{tmp / 'bench.db'}")
    try:
        gateway.create_model("bench-chat", max_output_tokens=256)
        gateway.create_model("bench-claude", max_output_tokens=256)
        gateway.create_account(name="bench-openai", provider="openai", api="chat", base_url=fake_url + "/v1",
                               api_key="sk-bench", models=["bench-chat"], model_map={"bench-chat": "gpt-fake-1"})
        gateway.create_account(name="bench-anthropic", provider="anthropic", base_url=fake_url, api_key="sk-bench",
                               models=["bench-claude"], model_map={"bench-claude": "claude-fake-1"})
        key = gateway.create_key(budget="1000", name="bench")["key"]

        ours = {"Authorization": f"Bearer {key}"}
        chat = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
        messages = {**chat, "model": "claude-fake-1"}
        cases = [
            ("Chat -> openai chat (passthrough)",
             (fake_url + "/v1/chat/completions", {**chat, "model": "gpt-fake-1"}, {"Authorization": "Bearer sk-bench"}),
             (gateway.v1 + "/chat/completions", {**chat, "model": "bench-chat"}, ours)),
            ("Chat -> anthropic (translated)",
             (fake_url + "/v1/messages", messages, {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"}),
             (gateway.v1 + "/chat/completions", {**chat, "model": "bench-claude"}, ours)),
        ]
        print(f"{args.requests} sequential requests per row, after 20 warm-up requests; milliseconds\n")
        header = f"{'case':58} {'direct p50':>10} {'direct p99':>10} {'gateway p50':>11} {'gateway p99':>11} " \
                 f"{'added p50':>9} {'added p99':>9}"
        print(header)
        print("-" * len(header), end="")
        # a Session keeps its connection alive, as the SDKs do; `requests.post` opens a new one each time
        for connection, session in (("keep-alive", requests.Session()), ("new connection", requests)):
            print(f"\n{connection}:")
            for name, direct, through in cases:
                for make, modes in ((plain, ["non-streamed"]),
                                    (streamed, ["streamed, first event", "streamed, whole"])):
                    direct_times = timed(make(session, *direct), args.requests)
                    gateway_times = timed(make(session, *through), args.requests)
                    for mode in modes:
                        index = 0 if mode.endswith("first event") else 1
                        d50, d99 = percentile(direct_times[index], 50), percentile(direct_times[index], 99)
                        g50, g99 = percentile(gateway_times[index], 50), percentile(gateway_times[index], 99)
                        print(f"{name + ', ' + mode:58} {d50:10.2f} {d99:10.2f} {g50:11.2f} {g99:11.2f} "
                              f"{g50 - d50:9.2f} {g99 - d99:9.2f}")
    finally:
        gateway.stop()
        fake.terminate()
        fake.wait(5)


if __name__ == "__main__":
    main()
