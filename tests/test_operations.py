"""What operators rely on: readiness, Prometheus metrics over every worker, request ids, JSON log lines."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import anthropic
import openai
import pytest
import requests
from conftest import drop_database, free_port, fresh_database_url, is_postgres, start_server
from loopback_tcp import LoopbackListener
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
METRICS_TOKEN = "metrics-scrape-token-0123456789"
UPSTREAM_SECRET = "sk-upstream-operations-secret-7777"


def samples(text: str, name: str) -> list:
    """The samples called `name` of a scrape: [(labels, value)]."""
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def total(text: str, name: str, **labels) -> float:
    return sum(value for sample_labels, value in samples(text, name)
               if all(sample_labels.get(k) == v for k, v in labels.items()))


def scrape(server, token: str) -> str:
    answer = requests.get(server.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/plain")
    return answer.text


def chat(server, key: str, **headers) -> requests.Response:
    return requests.post(server.v1 + "/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key}",
                         "Connection": "close", **headers},
                         json={"model": "echo-1", "messages": [{"role": "user", "content": "count me"}]})


# ---------------------------------------------------------------- readiness
class ClosableProxy(LoopbackListener):
    """A TCP proxy to PostgreSQL that can be shut: the database then refuses the gateway's connections."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        super().__init__()

    def take(self, connection) -> None:
        upstream = socket.create_connection(self.target)
        self.kept += [connection, upstream]
        for source, sink in ((connection, upstream), (upstream, connection)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def health(server) -> tuple:
    answer = requests.get(server.v1 + "/health", timeout=60)
    return answer.status_code, answer.json()


def test_health_is_ready_without_a_bearer(gateway):
    assert health(gateway) == (200, {"status": "ok", "database": "ok", "files": "ok"})


@pytest.mark.skipif(not is_postgres(), reason="PostgreSQL: the database behind a proxy that is shut")
def test_health_is_503_when_postgresql_refuses_connections(tmp_path):
    direct = fresh_database_url(tmp_path, "health")
    parsed = urlparse(direct)
    proxy = ClosableProxy(parsed.port or 5432)
    through = urlunparse(parsed._replace(netloc=f"{parsed.username}@127.0.0.1:{proxy.port}"))
    server = start_server(tmp_path, name="health-pg", database_url=through)
    try:
        assert health(server) == (200, {"status": "ok", "database": "ok", "files": "ok"})
        proxy.close()
        assert health(server) == (503, {"status": "unavailable", "database": "unavailable", "files": "ok"})
        assert requests.get(server.v1 + "/ping", timeout=10).status_code == 200, "liveness touches nothing"
    finally:
        server.stop()
        drop_database(direct)


@pytest.mark.skipif(is_postgres(), reason="SQLite: the database file taken away")
def test_health_is_503_when_the_sqlite_file_is_gone(tmp_path):
    server = start_server(tmp_path, name="health-sqlite")
    path = Path(server.database_url.removeprefix("sqlite:///"))
    try:
        assert health(server) == (200, {"status": "ok", "database": "ok", "files": "ok"})
        path.rename(path.with_suffix(".away"))
        assert health(server) == (503, {"status": "unavailable", "database": "unavailable", "files": "ok"})
        path.with_suffix(".away").rename(path)
        assert health(server)[0] == 200
    finally:
        server.stop()


def test_health_is_503_when_the_file_store_is_unusable(tmp_path):
    (tmp_path / "plain-file").write_text("not a directory")
    server = start_server(tmp_path, name="health-files",
                          extra_env={"ONEKEYLLM_FILES_URL": str(tmp_path / "plain-file" / "repo")})
    try:
        assert health(server) == (503, {"status": "unavailable", "database": "ok", "files": "unavailable"})
    finally:
        server.stop()


def test_files_url_set_to_a_local_path_keeps_the_files_there(tmp_path):
    server = start_server(tmp_path, name="files-url", extra_env={"ONEKEYLLM_FILES_URL": str(tmp_path / "elsewhere")})
    try:
        key = server.create_key(budget="1", name="files-url")
        client = openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0)
        uploaded = client.files.create(file=("a.txt", b"here"), purpose="user_data")
        assert (tmp_path / "elsewhere" / key["id"] / ".uploads" / uploaded.id).read_bytes() == b"here"
        assert not (tmp_path / "files").exists()
    finally:
        server.stop()


# ---------------------------------------------------------------- metrics
@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics-gunicorn")
    port = free_port()
    server = start_server(tmp, name="metrics", command=GUNICORN, port=port, extra_env={
        "ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": "2", "ONEKEYLLM_METRICS_TOKEN": METRICS_TOKEN,
        "ONEKEYLLM_LOG_FORMAT": "json"})
    yield server
    server.stop()
    drop_database(server.database_url)
    assert not server.leaked_secrets(), f"secrets in the server log: {server.leaked_secrets()}"


def worker_pids(master) -> list:
    children = []
    for task in Path(f"/proc/{master.process.pid}/task").glob("*"):
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


def metrics_dir(pid: int) -> Path:
    """The instance's multiprocess directory, found in the files the process has mapped (its own samples)."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if "/onekeyllm-metrics-" in line and line.rstrip().endswith(".db"):
            return Path(line.split()[-1]).parent
    raise AssertionError(f"process {pid} maps no metrics file")


def worker_calls(directory: Path, pid: int, tmp: Path) -> float:
    """The chat calls one worker counted, read from its own counter file alone."""
    own = tmp / str(pid)
    own.mkdir(exist_ok=True)
    source = directory / f"counter_{pid}.db"
    if source.exists():
        shutil.copy(source, own / source.name)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(own))
    return sum(sample.value for family in registry.collect() for sample in family.samples
               if sample.name == "onekeyllm_requests_total" and sample.labels["route"] == "/v1/chat/completions")


def test_metrics_need_the_metrics_token_or_the_admin_bearer(two_workers):
    key = two_workers.create_key(budget="1", name="not-for-metrics")["key"]
    url = two_workers.url + "/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong-token"}, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 403
    scrape(two_workers, METRICS_TOKEN)
    scrape(two_workers, two_workers.admin_token)


def test_metrics_count_every_request_of_both_workers(two_workers, tmp_path):
    key = two_workers.create_key(budget="10", name="counted")["key"]
    before = total(scrape(two_workers, METRICS_TOKEN), "onekeyllm_requests_total", route="/v1/chat/completions")
    workers = worker_pids(two_workers)
    assert len(workers) == 2
    directory = metrics_dir(workers[0])
    calls = 0
    # each call on a new connection: which worker accepts it is the kernel's race, and one idle worker can win
    # every race of a batch; more batches until both have served some
    for _ in range(20):
        with ThreadPoolExecutor(8) as pool:
            assert all(a.status_code == 200 for a in pool.map(lambda _: chat(two_workers, key), range(48)))
        calls += 48
        per_worker = [worker_calls(directory, pid, tmp_path) for pid in workers]
        if all(per_worker):
            break
    text = scrape(two_workers, METRICS_TOKEN)
    assert total(text, "onekeyllm_requests_total", route="/v1/chat/completions") - before == calls
    assert all(per_worker) and sum(per_worker) - before == calls, f"calls per worker: {per_worker}"
    assert total(text, "onekeyllm_requests_total", route="/v1/chat/completions", model="echo-1",
                 account="local", status="200") >= calls
    assert total(text, "onekeyllm_tokens_total", model="echo-1", kind="output") > 0
    assert samples(text, "onekeyllm_inflight_requests")


def test_metrics_show_tokens_cost_upstream_time_first_tokens_and_cooling(gateway, upstream):
    gateway.create_model("metrics-gpt", input_usd_per_mtok="1", output_usd_per_mtok="2", max_output_tokens=64)
    good = gateway.create_account(provider="openai", base_url=upstream.base_url("openai", "metrics-ok"),
                                  api_key=UPSTREAM_SECRET, models=["metrics-gpt"], weight=1)
    key = gateway.create_key(budget="5", name="metrics")["key"]
    client = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    client.chat.completions.create(model="metrics-gpt", messages=[{"role": "user", "content": "hello there"}])
    for _ in client.chat.completions.create(model="metrics-gpt", stream=True,
                                            messages=[{"role": "user", "content": "stream it"}]):
        pass
    gateway.create_model("metrics-broken", max_output_tokens=64)
    broken = gateway.create_account(provider="openai", base_url=upstream.base_url("openai", "http503"),
                                    api_key=UPSTREAM_SECRET, models=["metrics-broken"])
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="metrics-broken", messages=[{"role": "user", "content": "fail"}])
    text = scrape(gateway, gateway.admin_token)
    assert total(text, "onekeyllm_requests_total", route="/v1/chat/completions", model="metrics-gpt",
                 account=good["name"], status="200") == 2
    assert total(text, "onekeyllm_tokens_total", model="metrics-gpt", kind="input") > 0
    assert total(text, "onekeyllm_tokens_total", model="metrics-gpt", kind="output") > 0
    assert total(text, "onekeyllm_cost_usd_total", model="metrics-gpt") > 0
    assert total(text, "onekeyllm_upstream_seconds_count", account=good["name"]) == 2
    assert total(text, "onekeyllm_time_to_first_token_seconds_count", model="metrics-gpt") == 1
    assert total(text, "onekeyllm_account_cooling", account=broken["name"]) == 1
    assert total(text, "onekeyllm_account_cooling", account=good["name"]) == 0


# ---------------------------------------------------------------- request ids
def test_every_gateway_answer_carries_a_request_id_and_the_gateway_overhead(gateway, upstream):
    key = gateway.create_key(budget="5", name="request-ids")["key"]
    oai = openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)
    ant = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    message = [{"role": "user", "content": "hi"}]
    answers = {
        "chat": oai.chat.completions.with_raw_response.create(model="echo-1", messages=message,
                                                              extra_headers={"x-request-id": "client-trace-1"}),
        "responses": oai.responses.with_raw_response.create(model="echo-1", input="hi",
                                                            extra_headers={"x-request-id": "client-trace-2"}),
        "messages": ant.messages.with_raw_response.create(model="echo-1", max_tokens=32, messages=message,
                                                          extra_headers={"x-request-id": "client-trace-3"}),
    }
    for number, (route, raw) in enumerate(answers.items(), start=1):
        assert raw.headers["x-request-id"] == f"client-trace-{number}", route
        assert float(raw.headers["x-onekeyllm-overhead-ms"]) >= 0, route
    with oai.chat.completions.with_streaming_response.create(model="echo-1", messages=message, stream=True) as s:
        streamed_id = s.headers["x-request-id"]
        assert float(s.headers["x-onekeyllm-overhead-ms"]) >= 0
        list(s.iter_lines())
    assert streamed_id.startswith("req_")
    insane = chat(gateway, key, **{"x-request-id": "has spaces and ; semicolons"})
    generated = chat(gateway, key)
    assert insane.headers["x-request-id"].startswith("req_")
    assert generated.headers["x-request-id"].startswith("req_")
    assert insane.headers["x-request-id"] != generated.headers["x-request-id"]
    refused = requests.post(gateway.v1 + "/messages", json={}, headers={"x-api-key": "sk-lazytech-unknown"},
                            timeout=10)
    assert refused.status_code == 401 and refused.headers["x-request-id"].startswith("req_")
    assert "x-onekeyllm-overhead-ms" in refused.headers

    rows = requests.get(gateway.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()["data"]
    expected = {"client-trace-1", "client-trace-2", "client-trace-3", streamed_id,
                insane.headers["x-request-id"], generated.headers["x-request-id"]}
    assert {row["request_id"] for row in rows} == expected
    admin_rows = gateway.admin("GET", "/usage", params={"limit": 100}).json()["data"]
    assert expected <= {row["request_id"] for row in admin_rows}


# ---------------------------------------------------------------- logs
def json_lines(server) -> list:
    """Every log line of the server, parsed (the CLI's one-line note of the database it opened is no log line)."""
    lines = [line for line in server.log_text().splitlines()
             if line.strip() and not line.startswith("onekeyllm: database ")]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line[:300]}") from None
    return parsed


def check_json_access_lines(server, upstream) -> None:
    server.create_model("logs-gpt", input_usd_per_mtok="1", output_usd_per_mtok="2", max_output_tokens=64)
    account = server.create_account(provider="openai", base_url=upstream.base_url("openai", "logs"),
                                    api_key=UPSTREAM_SECRET, models=["logs-gpt"])
    key = server.create_key(budget="5", name="logs")
    client = openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0)
    request_id = f"log-check-{uuid.uuid4().hex[:8]}"
    client.chat.completions.create(model="logs-gpt", messages=[{"role": "user", "content": "log me"}],
                                   extra_headers={"x-request-id": request_id})
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.v1, api_key=key["key"] + "x", max_retries=0).chat.completions.create(
            model="logs-gpt", messages=[{"role": "user", "content": "refused"}])
    requests.get(server.v1 + "/ping", timeout=10)
    deadline = time.time() + 10  # access lines are written once each answer is closed, after its last byte
    while True:
        access = [line for line in json_lines(server) if line.get("logger") == "onekeyllm.access"]
        if any(a["route"] == "/v1/ping" for a in access) or time.time() > deadline:
            break
        time.sleep(0.05)
    mine = [line for line in access if line.get("request_id") == request_id]
    assert len(mine) == 1, mine
    line = mine[0]
    assert (line["key_id"], line["route"], line["model"], line["account"], line["status"]) == (
        key["id"], "/v1/chat/completions", "logs-gpt", account["name"], 200)
    assert line["input_tokens"] > 0 and line["output_tokens"] > 0
    assert float(line["cost_usd"]) > 0 and line["latency_ms"] >= line["upstream_ms"] > 0
    assert any(a["route"] == "/v1/ping" for a in access)
    assert any(a["route"] == "/v1/chat/completions" and a["status"] == 401 for a in access)
    text = server.log_text()
    assert key["key"] not in text and UPSTREAM_SECRET not in text and server.admin_token not in text


def test_json_logs_under_onekeyllm_serve(tmp_path, upstream):
    server = start_server(tmp_path, name="json-serve", extra_env={"ONEKEYLLM_LOG_FORMAT": "json"})
    try:
        check_json_access_lines(server, upstream)
    finally:
        server.stop()


def test_json_logs_under_gunicorn(two_workers, upstream):
    check_json_access_lines(two_workers, upstream)
    assert any(line["logger"].startswith("gunicorn") for line in json_lines(two_workers))


def test_text_logs_stay_the_default_with_the_request_id(gateway):
    answer = chat(gateway, gateway.create_key(budget="1", name="text-log")["key"], **{"x-request-id": "text-log-1"})
    assert answer.status_code == 200
    # the access line is written once the answer is closed, after its last byte: the client may read the log first
    deadline = time.time() + 10
    while True:
        lines = [line for line in gateway.log_text().splitlines() if "request_id=text-log-1" in line]
        if lines or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1 and "onekeyllm.access" in lines[0] and not lines[0].startswith("{")


def test_the_metrics_directory_is_made_per_instance(two_workers, tmp_path):
    other = start_server(tmp_path, name="metrics-serve")
    try:
        assert metrics_dir(other.process.pid) != metrics_dir(worker_pids(two_workers)[0])
        assert metrics_dir(other.process.pid).name.startswith("onekeyllm-metrics-")
        assert os.path.isdir(metrics_dir(other.process.pid))
    finally:
        other.stop()


def test_a_dead_workers_inflight_gauge_is_dropped_and_its_counts_kept(two_workers):
    workers = worker_pids(two_workers)
    directory = metrics_dir(workers[0])
    victim = workers[-1]
    assert (directory / f"gauge_livesum_{victim}.db").exists()
    counted = (directory / f"counter_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    for _ in range(100):
        if victim not in worker_pids(two_workers) and len(worker_pids(two_workers)) == 2 \
                and not (directory / f"gauge_livesum_{victim}.db").exists():
            break
        time.sleep(0.1)
    assert not (directory / f"gauge_livesum_{victim}.db").exists(), "the dead worker's live gauge is gone"
    assert (directory / f"counter_{victim}.db").exists() == counted, "its counts stay in the totals"
    assert total(scrape(two_workers, METRICS_TOKEN), "onekeyllm_inflight_requests") >= 1  # the scrape itself
