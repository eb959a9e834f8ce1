"""Several processes on one database: gunicorn workers and a second `onekeyllm serve` share budget and limits;
a worker killed with SIGKILL mid-load loses no answered request and leaves nothing to repair.

The shared-deployment tests need PostgreSQL (ONEKEYLLM_DATABASE_URL=postgresql://…; CI runs the suite on it);
the kill test runs on whichever database the suite runs on.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from conftest import Server, clear_of_window_boundary, free_port, fresh_database_url, is_postgres, start_server

from service.storage.db import make_database

GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
PRICES = {"input_usd_per_mtok": "100", "output_usd_per_mtok": "1000"}
CHAT = "/chat/completions"
needs_postgres = pytest.mark.skipif(not is_postgres(), reason="a shared deployment needs PostgreSQL")


# ---------------------------------------------------------------- processes and the database they share
SMALL_POOL = {"ONEKEYLLM_DB_POOL_SIZE": "8"}  # four processes share one PostgreSQL server with other tests


def start_gunicorn(tmp_path: Path, database_url: str, admin_token: str, workers: int = 3,
                   extra_env: dict | None = None) -> Server:
    port = free_port()
    return start_server(tmp_path, name="gunicorn", command=GUNICORN, port=port, database_url=database_url,
                        admin_token=admin_token, extra_env={"ONEKEYLLM_BIND": f"127.0.0.1:{port}",
                                                            "ONEKEYLLM_WORKERS": str(workers), **SMALL_POOL,
                                                            **(extra_env or {})})


def worker_pids(master: Server, count: int) -> list:
    """The gunicorn master's worker processes, once `count` of them run."""
    for _ in range(300):
        children = []
        for task in Path(f"/proc/{master.process.pid}/task").glob("*"):
            try:
                children += [int(pid) for pid in (task / "children").read_text().split()]
            except OSError:  # the master is gone
                pass
        if len(children) >= count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not run {count} workers:\n{master.log_text()[-2000:]}")


def stop_gunicorn(master: Server) -> None:
    """Stop the master, and its workers even if the master had to be killed."""
    workers = worker_pids(master, 0)
    master.stop()
    for pid in workers:
        try:
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def ledger(database_url: str, key_id: str) -> dict:
    """The key's budget, spend and holds, and its request-log rows, read straight from the database."""
    db = make_database(database_url)
    p = db.param
    with db.connection_context():
        # one statement, one snapshot: a hold given back meanwhile (its row settled, its key charged in one
        # transaction) is either in both figures or in neither
        budget, used, reserved, logged = db.execute_sql(
            f"SELECT budget_nano, used_nano, reserved_nano, (SELECT COALESCE(SUM(cost_nano), 0) FROM request_log "
            f"WHERE key_id = {p}) FROM api_key WHERE id = {p}", (key_id, key_id)).fetchone()
        rows = db.execute_sql(f"SELECT status_code, cost_nano, response_id FROM request_log WHERE key_id = {p}",
                              (key_id,)).fetchall()
    db.close_all()
    return {"budget": budget, "used": used, "reserved": reserved, "rows": rows, "logged": int(logged)}


def priced_model(server: Server, upstream, scenario: str = "ok") -> str:
    model = f"cc-{scenario}-{uuid.uuid4().hex[:6]}"
    server.create_model(model, max_output_tokens=1000, **PRICES)
    server.create_account(provider="openai", base_url=upstream.base_url("openai", scenario), api_key="sk-up-cc",
                          models=[model], model_map={model: "gpt-fake-1"})
    return model


def chat(url: str, key: str, model: str, stream: bool = False) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20,
            "stream": stream}
    return requests.post(url + "/v1" + CHAT, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


# ---------------------------------------------------------------- two processes, one PostgreSQL database
class Mailbox:
    """An aiosmtpd handler counting the mails it is given."""

    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        return "250 Message accepted"


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory, mailbox):
    """gunicorn (3 gevent workers) and a separate `onekeyllm serve`, on one fresh PostgreSQL database."""
    if not is_postgres():
        pytest.skip("a shared deployment needs PostgreSQL")
    tmp = tmp_path_factory.mktemp("shared")
    database_url = fresh_database_url(tmp, "shared")
    token = "sk-admin-shared-" + uuid.uuid4().hex
    env = {"ONEKEYLLM_SMTP_URL": f"smtp://127.0.0.1:{mailbox[1]}", **SMALL_POOL}
    gunicorn = start_gunicorn(tmp, database_url, token, extra_env=env)
    try:
        single = start_server(tmp, name="serve", database_url=database_url, admin_token=token, extra_env=env)
    except Exception:
        stop_gunicorn(gunicorn)
        raise
    yield gunicorn, single
    single.stop()
    stop_gunicorn(gunicorn)


@needs_postgres
def test_both_processes_hammering_one_key_never_spend_past_its_budget(shared, upstream):
    gunicorn, single = shared
    model = priced_model(gunicorn, upstream)
    key = gunicorn.create_key(budget="0.02", name="hammered")  # a few requests' worth

    def one(i: int) -> int:
        return chat((gunicorn, single)[i % 2].url, key["key"], model).status_code

    with ThreadPoolExecutor(max_workers=60) as pool:
        statuses = list(pool.map(one, range(60)))
    assert set(statuses) <= {200, 402}, statuses
    assert 200 in statuses and 402 in statuses
    money = ledger(gunicorn.database_url, key["id"])
    assert money["used"] <= money["budget"]
    assert money["reserved"] == 0
    assert money["used"] == money["logged"]
    assert len(money["rows"]) == statuses.count(200)


@needs_postgres
def test_a_keys_rpm_holds_across_processes(shared, upstream):
    gunicorn, single = shared
    model = priced_model(gunicorn, upstream)
    key = gunicorn.create_key(budget="10", name="rpm", rpm=5)["key"]
    clear_of_window_boundary(60)
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda i: chat((gunicorn, single)[i % 2].url, key, model), range(12)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 5 and statuses.count(429) == 7, statuses
    for limited in (a for a in answers if a.status_code == 429):
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(limited.headers["retry-after"]) <= 60


@needs_postgres
def test_the_login_code_send_limit_holds_across_processes(shared, mailbox):
    gunicorn, single = shared
    box, _ = mailbox
    address = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    sent_before = box.count
    clear_of_window_boundary(600)
    statuses = [requests.post((gunicorn, single)[i % 2].v1 + "/auth/email/send", json={"email": address},
                              timeout=30).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]  # three per address and window, whichever process asks
    assert box.count - sent_before == 3


# ---------------------------------------------------------------- kill -9 a worker mid-load
def test_a_worker_killed_mid_load_loses_no_answered_request(tmp_path, upstream):
    database_url = fresh_database_url(tmp_path, "kill")
    token = "sk-admin-kill-" + uuid.uuid4().hex
    gunicorn = start_gunicorn(tmp_path, database_url, token)
    try:
        model = priced_model(gunicorn, upstream, scenario="stall-0.2")  # every call is in flight for 0.2 s
        key = gunicorn.create_key(budget="5", name="killed")
        victim = worker_pids(gunicorn, 3)[0]
        answered, failed = [], []  # response ids of complete 200s; what the others got

        def one(i: int) -> None:
            stream = i % 2 == 1
            try:
                answer = chat(gunicorn.url, key["key"], model, stream=stream)
            except requests.RequestException as error:  # the killed worker's connections
                failed.append(type(error).__name__)
                return
            if answer.status_code == 200 and (not stream or answer.text.rstrip().endswith("data: [DONE]")):
                first = answer.json() if not stream else json.loads(answer.text.split("data: ", 1)[1].split("\n")[0])
                answered.append(first["id"])
            else:
                failed.append(answer.status_code)

        with ThreadPoolExecutor(max_workers=24) as pool:
            load = [pool.submit(one, i) for i in range(96)]
            while len(answered) + len(failed) < 30 and not load[-1].done():
                time.sleep(0.02)
            os.kill(victim, signal.SIGKILL)  # with a batch of its requests in flight
            [f.result() for f in load]
        assert len(answered) + len(failed) == 96 and len(answered) > 30
        money = ledger(database_url, key["id"])
        logged_ids = {response_id for status, _, response_id in money["rows"] if status == 200}
        assert set(answered) <= logged_ids, "a 200 without its request-log row"
        assert money["used"] == money["logged"] <= money["budget"]
    finally:
        stop_gunicorn(gunicorn)

    again = start_server(tmp_path, name="after-kill", database_url=database_url, admin_token=token,
                         extra_env=SMALL_POOL)
    try:
        answer = chat(again.url, key["key"], model)
        assert answer.status_code == 200, answer.text
        assert "Traceback" not in again.log_text()
        after = ledger(database_url, key["id"])
        assert after["used"] == after["logged"] and after["reserved"] == 0
    finally:
        again.stop()


def test_a_process_outliving_a_killed_one_gives_its_budget_holds_back(tmp_path, upstream):
    survivor = start_server(tmp_path, name="survivor", extra_env=SMALL_POOL)
    victim = start_server(tmp_path, name="victim", database_url=survivor.database_url,
                          admin_token=survivor.admin_token, extra_env=SMALL_POOL)
    try:
        stalled = priced_model(survivor, upstream, scenario="stall-5")
        key = survivor.create_key(budget="1", name="held")  # the stalled stream holds all of it
        body = {"model": stalled, "messages": [{"role": "user", "content": "Say hello"}], "stream": True}
        with requests.post(victim.v1 + CHAT, json=body, headers={"Authorization": f"Bearer {key['key']}"},
                           stream=True, timeout=30) as answer:
            assert answer.status_code == 200
            next(answer.iter_lines())
            assert ledger(survivor.database_url, key["id"])["reserved"] > 0
            victim.process.kill()
            victim.process.wait()
        answer = chat(survivor.url, key["key"], priced_model(survivor, upstream))
        assert answer.status_code == 200, answer.text  # not a 402: the dead process's hold was given back
        money = ledger(survivor.database_url, key["id"])
        assert money["reserved"] == 0 and money["used"] == money["logged"] <= money["budget"]
    finally:
        victim.stop()
        survivor.stop()
