"""Upstream faults, one by one and in bulk: a clear answer, a request-log row, a cooled account, nothing leaked.

Every fault gets its own account and its own key on a gateway with short timeouts (connect 0.3 s, read 1 s):
the refused, unresolvable and never-accepting upstreams are local stand-ins (a closed loopback port, a name
under `.invalid`, a loopback listener whose backlog is full); the rest are scenarios of the fake upstream.
The leak check counts the gateway's open sockets, threads and RSS in /proc before and after 200 mixed faulty
requests (three inbound formats, both upstream kinds, plain, streamed and hung-up streams, 20 at a time).
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product
from typing import Callable, Optional

import pytest
import requests
from conftest import free_port, start_server

PATHS = {"chat": "/chat/completions", "responses": "/responses", "messages": "/messages"}
READ_TIMEOUT, CONNECT_TIMEOUT = 1, 0.3


@dataclass(frozen=True)
class Fault:
    """One way an upstream fails, and what the client sees: a status before any byte, or an in-stream error."""

    name: str
    plain_status: int
    stream_status: int  # 200: the stream began, then ended with the format's error event
    cooled: bool  # a retryable kind: the account is cooled down
    scenario: Optional[str] = None  # a fake-upstream scenario; None: a local stand-in (see `base_url_of`)


FAULTS = [
    Fault("connection_refused", 503, 503, True),
    Fault("dns_failure", 503, 503, True),
    Fault("connect_timeout", 504, 504, True),
    Fault("read_timeout", 504, 504, True, "slow-3"),
    Fault("server_error", 503, 503, True, "http500"),
    Fault("overloaded", 503, 503, True, "http529"),
    Fault("rate_limited", 429, 429, True, "http429"),
    Fault("non_json_200", 502, 200, False, "garbage"),
    Fault("cut_mid_event", 503, 200, True, "cut"),
    Fault("stall_mid_stream", 504, 200, True, "stall-3"),
]


# ---------------------------------------------------------------- local stand-ins for unreachable upstreams
@pytest.fixture(scope="module")
def black_hole():
    """A loopback port that never completes a connection: a listener whose accept backlog is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.2)
    try:
        probe.connect(("127.0.0.1", port))
        pytest.skip("this kernel completes connections beyond a full backlog: no connect timeout to provoke")
    except (TimeoutError, socket.timeout):
        pass
    finally:
        probe.close()
    yield port
    for sock in fillers + [listener]:
        sock.close()


@pytest.fixture(scope="module")
def refused_port() -> int:
    return free_port()  # bound and closed again: nothing listens there


@pytest.fixture(scope="module")
def base_url_of(upstream, black_hole, refused_port) -> Callable[[Fault, str], str]:
    """The SDK base URL of an account that fails with `fault` (provider "openai" or "anthropic")."""
    local = {"connection_refused": f"http://127.0.0.1:{refused_port}",
             "dns_failure": "http://nonexistent.invalid",
             "connect_timeout": f"http://127.0.0.1:{black_hole}"}

    def base_url(fault: Fault, provider: str) -> str:
        if fault.scenario:
            return upstream.base_url(provider, fault.scenario)
        return local[fault.name] + ("/v1" if provider == "openai" else "")

    return base_url


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """A gateway of our own with short upstream timeouts, so timeouts cost a second."""
    server = start_server(tmp_path_factory.mktemp("upstream-faults"), name="faults", extra_env={
        "ONEKEYLLM_UPSTREAM_TIMEOUT": str(READ_TIMEOUT), "ONEKEYLLM_UPSTREAM_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
        "ONEKEYLLM_KEEPALIVE_SECONDS": "0.3"})
    yield server
    server.stop()


def failing_model(server, base_url_of, fault: Fault, provider: str = "openai") -> tuple:
    """A fresh priced model served by one account that fails with `fault`; (model, account)."""
    model = f"uf-{fault.name}-{uuid.uuid4().hex[:6]}"
    server.create_model(model, max_output_tokens=64, input_usd_per_mtok="1", output_usd_per_mtok="2")
    account = server.create_account(provider=provider, base_url=base_url_of(fault, provider), api_key="sk-up-uf",
                                    models=[model])
    return model, account


def body_for(inbound: str, model: str, stream: bool) -> dict:
    if inbound == "responses":
        return {"model": model, "input": "Hello there", "max_output_tokens": 40, "stream": stream}
    return {"model": model, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 40,
            "stream": stream}


def post(server, key: str, inbound: str, body: dict, **kwargs) -> requests.Response:
    return requests.post(server.v1 + PATHS[inbound], json=body, headers={"Authorization": f"Bearer {key}"},
                         timeout=30, **kwargs)


def request_rows(server, key: str, count: int = 1) -> list:
    """The key's request-log rows from GET /v1/usage/requests, once `count` are there (a stream's row ends it)."""
    for _ in range(100):
        rows = requests.get(server.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"},
                            timeout=10).json()["data"]
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    return rows


def last_event(inbound: str, text: str) -> tuple:
    """The last (event name, data) of an SSE body, skipping chat's `[DONE]`."""
    events, name = [], None
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            events.append((name, line[5:].strip()))
            name = None
    events = [e for e in events if e[1] != "[DONE]"]
    assert events, text
    return events[-1]


def assert_error_envelope(inbound: str, answer: requests.Response) -> None:
    body = answer.json()
    if inbound == "messages":
        assert body["type"] == "error" and body["error"]["message"]
    else:
        assert body["error"]["message"] and "Traceback" not in answer.text


def assert_ends_with_error_event(inbound: str, text: str) -> None:
    name, data = last_event(inbound, text)
    payload = json.loads(data)
    if inbound == "responses":
        assert name == "response.failed" and payload["response"]["error"]["message"]
    elif inbound == "messages":
        assert name == "error" and payload["error"]["message"]
    else:
        assert payload["error"]["message"]


# ---------------------------------------------------------------- one fault at a time
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_each_upstream_fault_is_answered_logged_and_cooled(fault, stream, impatient, base_url_of):
    inbound = "messages" if stream else "chat"  # streams also cross formats: Messages in, Chat upstream
    model, account = failing_model(impatient, base_url_of, fault)
    key = impatient.create_key(budget="1", name=f"uf-{fault.name}")["key"]
    started = time.time()
    answer = post(impatient, key, inbound, body_for(inbound, model, stream))
    expected = fault.stream_status if stream else fault.plain_status
    assert answer.status_code == expected, answer.text
    if expected == 200:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert_ends_with_error_event(inbound, answer.text)
    else:
        assert_error_envelope(inbound, answer)
    if expected == 429:
        assert float(answer.headers["retry-after"]) >= 1
    [row] = request_rows(impatient, key)
    assert row["status_code"] == (502 if expected == 200 else expected)
    assert row["model"] == model and row["account"] == account["name"] and row["stream"] is stream
    state = impatient.admin("GET", f"/accounts/{account['id']}").json()
    if fault.cooled:
        assert state["cooldown_until"] and state["cooldown_until"] >= started + 1, state
        assert state["last_error"]


@pytest.mark.parametrize("inbound", ["chat", "responses"])
def test_a_stall_mid_stream_ends_each_format_with_its_error_event(inbound, impatient, base_url_of):
    fault = next(f for f in FAULTS if f.name == "stall_mid_stream")
    model, _ = failing_model(impatient, base_url_of, fault, provider="anthropic")
    key = impatient.create_key(budget="1", name="uf-stall")["key"]
    answer = post(impatient, key, inbound, body_for(inbound, model, stream=True))
    assert answer.status_code == 200
    assert ": keep-alive" in answer.text.splitlines(), "the pause is bridged with comments until the timeout"
    assert_ends_with_error_event(inbound, answer.text)
    [row] = request_rows(impatient, key)
    assert row["status_code"] == 502


# ---------------------------------------------------------------- nothing left behind
def socket_states(pid: int) -> dict:
    """The process's sockets: {"total": n, "close_wait": n, "established": n} from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states = {"total": len(inodes), "close_wait": 0, "established": 0}
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                if fields[3] == "08":
                    states["close_wait"] += 1
                elif fields[3] == "01":
                    states["established"] += 1
    return states


def status_value(pid: int, name: str) -> int:
    """A number from /proc/<pid>/status (Threads, VmRSS in kB)."""
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def own_threads(server, pid: int) -> int:
    """The server's threads but those of gevent's hub pool (names looked up; at most 10 threads, kept)."""
    resolver = server.admin("GET", "/diagnostics").json()["pool_threads"]
    return status_value(pid, "Threads") - resolver


def settle_down(pid: int, limit: int, seconds: float = 5.0) -> dict:
    """Socket states once at most `limit` sockets are open (pooled connections get a moment to be returned)."""
    deadline = time.time() + seconds
    while True:
        states = socket_states(pid)
        if (states["total"] <= limit and not states["close_wait"]) or time.time() > deadline:
            return states
        time.sleep(0.1)


def live_greenlets(server, seconds: float = 5.0) -> int:
    """The server's live greenlets once idle (the admin diagnostics route), waiting up to `seconds` to drop."""
    deadline = time.time() + seconds
    while True:
        count = server.admin("GET", "/diagnostics").json()["greenlets"]
        if time.time() > deadline:
            return count
        time.sleep(0.2)
        again = server.admin("GET", "/diagnostics").json()["greenlets"]
        if again >= count:
            return again
        count = again


def test_two_hundred_faulty_requests_leave_no_socket_thread_greenlet_or_memory_behind(impatient, base_url_of):
    pid = impatient.process.pid
    models = [failing_model(impatient, base_url_of, fault, provider)[0]
              for fault, provider in product(FAULTS, ["openai", "anthropic"])]
    key = impatient.create_key(budget="100", name="uf-leaks")["key"]
    started_with = own_threads(impatient, pid)
    # (model, inbound, mode): every fault through every format, plain, streamed and hung up after the first line
    mix = list(product(models, ["chat", "messages", "responses"], ["plain", "stream", "hangup"]))

    def one(i: int) -> int:
        model, inbound, mode = mix[(i * 7) % len(mix)]
        body = body_for(inbound, model, mode != "plain")
        if mode == "hangup":
            body["max_tokens" if inbound != "responses" else "max_output_tokens"] = 64
            with post(impatient, key, inbound, body, stream=True) as answer:
                if answer.status_code == 200:
                    next(answer.iter_lines())
                return answer.status_code
        return post(impatient, key, inbound, body).status_code

    def run(count: int) -> list:
        with ThreadPoolExecutor(max_workers=20) as pool:
            return list(pool.map(one, range(count)))

    warm = run(len(mix))  # every pool and worker thread the mix needs exists from here on
    assert set(warm) <= {200, 429, 502, 503, 504}, sorted(set(warm))
    before = settle_down(pid, 0, seconds=1)
    # only names are looked up in gevent's (bounded) pool of threads, not numeric hosts: service/http/resolver.py
    assert own_threads(impatient, pid) == started_with, "a burst of new connections grew the worker's threads"
    rss = status_value(pid, "VmRSS")
    greenlets = live_greenlets(impatient)

    statuses = run(200)
    assert set(statuses) <= {200, 429, 502, 503, 504}, sorted(set(statuses))
    assert {200, 429, 502, 503, 504} <= set(statuses)

    # pooled keep-alive connections to the upstream may be reused or replaced, but not grow with the load
    after = settle_down(pid, before["total"] + 5)
    assert after["close_wait"] == 0, f"sockets the upstream closed and the gateway kept: {after}"
    assert after["total"] <= before["total"] + 5, f"open sockets grew from {before} to {after}"
    assert own_threads(impatient, pid) == started_with
    assert impatient.admin("GET", "/diagnostics").json()["pool_threads"] <= 10
    assert live_greenlets(impatient) <= greenlets + 2, "greenlets left behind by faulty requests"
    grown_mb = (status_value(pid, "VmRSS") - rss) / 1024
    assert grown_mb < 40, f"RSS grew by {grown_mb:.0f} MB over 200 faulty requests"
    assert impatient.process.poll() is None
    assert "Traceback" not in impatient.log_text()


def chat_calls(server, upstream, scenario: str, streams: tuple, pause: float = 0.0) -> tuple:
    """Chat calls (streamed or not, in turn, `pause` seconds apart) through a new account at the fake upstream's
    `scenario`, each answered 200 in full; (the key, the upstream's record of each call)."""
    model = f"uf-{scenario}-{uuid.uuid4().hex[:6]}"
    server.create_model(model, max_output_tokens=64, input_usd_per_mtok="1", output_usd_per_mtok="2")
    server.create_account(provider="openai", base_url=upstream.base_url("openai", scenario), api_key="sk-up-calls",
                          models=[model])
    key = server.create_key("5")["key"]
    seen = len(upstream.requests)
    for stream in streams:
        answer = post(server, key, "chat", body_for("chat", model, stream))
        assert answer.status_code == 200 and ("[DONE]" in answer.text) == stream, answer.text
        time.sleep(pause)
    return key, [r for r in upstream.requests[seen:] if r.scenario == scenario]


def test_a_pooled_connection_the_upstream_closed_while_idle_is_not_reused(impatient, upstream):
    """An upstream's keep-alive timeout closes the gateway's idle pooled connection: the next call sees it
    closed before it sends (upstreams/connections.py) and opens a new one, instead of failing on the old."""
    # 0.6 s apart: past the upstream's idle close (0.2 s), the pooled connection is closed by the next call
    key, calls = chat_calls(impatient, upstream, "closes_idle", (False, True, False), pause=0.6)
    assert len(calls) == 3, "each call reached the upstream once: none failed and was tried again"
    assert len({r.peer for r in calls}) == 3, "each call came on a new connection"
    rows = request_rows(impatient, key, 3)
    assert sorted(row["status_code"] for row in rows) == [200, 200, 200]


def test_a_stream_read_to_its_end_gives_its_connection_back_to_the_pool(impatient, upstream):
    _, calls = chat_calls(impatient, upstream, "reuse_after_stream", (True, True, False))
    assert len(calls) == 3 and len({r.peer for r in calls}) == 1, "one kept-alive connection for all three"
