"""Two gateway instances on one database, as two machines would run them: each a gunicorn master with its
gevent workers, the second in its own UTS and PID namespace (`unshare`: another hostname, its own pids), and
the checks the instances must pass together (tests/test_fleet.py directly, tests/test_pgbouncer.py through
PgBouncer).

Loads are bounded (a few dozen calls at most) so that they fit CI's two cores.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import Server, clear_of_window_boundary, free_port, start_server
from test_concurrency_pg import GUNICORN, PRICES, SMALL_POOL, chat, ledger

LEASE_SECONDS = "3"  # shortened so that a test sees a dead instance's holds come back in seconds
# an instance in its own UTS and PID namespace: another hostname, pids that mean nothing to the other one;
# --kill-child: the namespace goes with the `unshare` process, should the test die first
NAMESPACED = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
              'hostname "$0" && exec "$@"']


def children(pid: int) -> list:
    """The child processes of `pid`."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # gone meanwhile
            pass
    return found


@dataclass
class Instance:
    """A gateway instance: a gunicorn master, possibly inside its own namespaces."""

    server: Server
    namespaced: bool

    @property
    def master_pid(self) -> int:
        """The gunicorn master (the namespace's first process when namespaced)."""
        if not self.namespaced:
            return self.server.process.pid
        for _ in range(100):
            found = children(self.server.process.pid)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no process in the namespace")

    def kill_namespace(self) -> None:
        """SIGKILL the namespace's first process: the kernel kills everything in the namespace with it."""
        os.kill(self.master_pid, signal.SIGKILL)
        self.server.process.wait(10)

    def stop(self) -> None:
        """SIGTERM to the master, as a deploy would; SIGKILL if it outstays its graceful timeout."""
        if self.server.process.poll() is not None:
            return
        try:
            os.kill(self.master_pid, signal.SIGTERM)
            self.server.process.wait(40)
        except (OSError, AssertionError, Exception):  # noqa: BLE001 - whatever happened, leave nothing running
            self.server.process.kill()
            self.server.process.wait(10)


def start_instance(tmp: Path, name: str, database_url: str, admin_token: str, *, namespace: str | None = None,
                   workers: int = 2, extra_env: dict | None = None) -> Instance:
    """A gunicorn master with `workers` gevent workers on `database_url`; in its own namespaces if `namespace`
    (the hostname it gets there)."""
    port = free_port()
    command = [*NAMESPACED, namespace, *GUNICORN] if namespace else GUNICORN
    env = {"ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": str(workers),
           "ONEKEYLLM_LEASE_SECONDS": LEASE_SECONDS, **SMALL_POOL, **(extra_env or {})}
    server = start_server(tmp, name=name, command=command, port=port, database_url=database_url,
                          admin_token=admin_token, extra_env=env)
    return Instance(server, namespaced=bool(namespace))


def priced_model(server: Server, upstream, label: str, **account) -> str:
    """A new model with real prices, served by one new account of the fake upstream (scenario `label`)."""
    model = f"fleet-{uuid.uuid4().hex[:8]}"
    server.create_model(model, max_output_tokens=1000, **PRICES)
    server.create_account(provider="openai", base_url=upstream.base_url("openai", label), api_key="sk-up-fleet",
                          models=[model], model_map={model: "gpt-fake-1"}, **account)
    return model


def over_both(pair: tuple, calls: int, one, threads: int | None = None) -> list:
    """`one(server, i)` for i in range(calls), alternately on each instance, all at once; the results."""
    with ThreadPoolExecutor(max_workers=threads or calls) as pool:
        return list(pool.map(lambda i: one(pair[i % 2], i), range(calls)))


class CountdownUpstream(ThreadingHTTPServer):
    """An OpenAI Chat upstream that allows `allowed` requests a minute and says so in its rate-limit headers
    (`x-ratelimit-remaining-requests` counts down to 0); it answers every request it gets, and counts them."""

    daemon_threads = True

    def __init__(self, allowed: int):
        super().__init__(("127.0.0.1", 0), _CountdownHandler)
        self.allowed, self.calls, self.lock = allowed, 0, threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> "CountdownUpstream":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class _CountdownHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        with self.server.lock:
            self.server.calls += 1
            remaining = max(0, self.server.allowed - self.server.calls)
        data = json.dumps({"id": f"chatcmpl-countdown{self.server.calls}", "object": "chat.completion",
                           "created": int(time.time()), "model": body.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "ok"}}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
        self.send_response(200)
        for name, value in {"content-type": "application/json", "content-length": str(len(data)),
                            "x-ratelimit-limit-requests": str(self.server.allowed),
                            "x-ratelimit-remaining-requests": str(remaining),
                            "x-ratelimit-reset-requests": "60s"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


# ---------------------------------------------------------------- checks the tests run on a pair of instances
def check_rpm_is_exact_across_instances(pair: tuple, upstream) -> None:
    a, b = pair
    model = priced_model(a, upstream, f"rpm-{uuid.uuid4().hex[:6]}")
    key = a.create_key(budget="10", name="fleet-rpm", rpm=6)["key"]
    clear_of_window_boundary(60)
    statuses = over_both(pair, 16, lambda server, i: chat(server.url, key, model).status_code)
    assert statuses.count(200) == 6 and statuses.count(429) == 10, statuses


def check_concurrent_calls_never_overspend(pair: tuple, upstream) -> None:
    a, _ = pair
    model = priced_model(a, upstream, "stall-0.2")
    key = a.create_key(budget="0.03", name="fleet-budget")  # a few calls' worth of 40
    statuses = over_both(pair, 40, lambda server, i: chat(server.url, key["key"], model,
                                                          stream=i % 4 == 1).status_code)
    assert set(statuses) <= {200, 402}, statuses
    assert 200 in statuses and 402 in statuses
    money = ledger(a.database_url, key["id"])
    assert money["used"] <= money["budget"] and money["reserved"] == 0
    assert money["used"] == money["logged"] and len(money["rows"]) == statuses.count(200)


def check_an_account_limit_holds_over_both(pair: tuple, upstream) -> None:
    a, _ = pair
    label = f"limited-{uuid.uuid4().hex[:6]}"
    model = priced_model(a, upstream, label, limits={"five_hour_requests": 20})
    key = a.create_key(budget="10", name="fleet-limited")["key"]
    statuses = over_both(pair, 40, lambda server, i: chat(server.url, key, model).status_code, threads=20)
    assert statuses.count(200) == 20 and statuses.count(503) == 20, statuses
    assert upstream.count(label) == 20
