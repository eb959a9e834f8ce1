"""One gateway, many processes (SPEC §5): two instances on one database — gunicorn masters, the second in its
own UTS and PID namespace as another machine would be — behave as one gateway; a killed instance's holds come
back; a stopped one settles what it was serving.

The pair needs PostgreSQL (several machines share one); the stop tests run on whichever database the suite
runs on.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid

import pytest
import requests
from conftest import fresh_database_url, is_postgres, start_server
from instances import (
    LEASE_SECONDS,
    CountdownUpstream,
    check_an_account_limit_holds_over_both,
    check_concurrent_calls_never_overspend,
    check_rpm_is_exact_across_instances,
    priced_model,
    start_instance,
)
from test_concurrency_pg import CHAT, chat, ledger

needs_postgres = pytest.mark.skipif(not is_postgres(), reason="instances on several machines share PostgreSQL")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Instance A and instance B (in its own namespaces) on one fresh PostgreSQL database."""
    if not is_postgres():
        pytest.skip("instances on several machines share PostgreSQL")
    tmp = tmp_path_factory.mktemp("fleet")
    database_url = fresh_database_url(tmp, "fleet")
    token = "sk-admin-fleet-" + uuid.uuid4().hex
    a = start_instance(tmp, "a", database_url, token)
    try:
        b = start_instance(tmp, "b", database_url, token, namespace="fleet-b")
    except Exception:
        a.stop()
        raise
    yield a, b
    b.stop()
    a.stop()


def servers(pair) -> tuple:
    return pair[0].server, pair[1].server


def test_the_second_instance_runs_in_its_own_namespaces(pair):
    a, b = pair
    assert os.readlink(f"/proc/{b.master_pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{b.master_pid}/ns/uts") != os.readlink("/proc/self/ns/uts")


@needs_postgres
def test_a_keys_rpm_is_exact_across_instances(pair, upstream):
    check_rpm_is_exact_across_instances(servers(pair), upstream)


@needs_postgres
def test_an_admin_change_on_a_holds_at_bs_next_request(pair, upstream):
    a, b = servers(pair)
    model = priced_model(a, upstream, "ok")
    key = a.create_key(budget="10", name="fleet-admin")
    assert chat(b.url, key["key"], model).status_code == 200
    assert a.admin("PATCH", f"/keys/{key['id']}", json={"disabled": True}).status_code == 200
    assert chat(b.url, key["key"], model).status_code == 401
    other = priced_model(a, upstream, "ok")  # a model added on A is served by B at once
    assert a.admin("PATCH", f"/keys/{key['id']}", json={"disabled": False}).status_code == 200
    assert chat(b.url, key["key"], other).status_code == 200


@needs_postgres
def test_forty_concurrent_calls_over_both_never_overspend(pair, upstream):
    check_concurrent_calls_never_overspend(servers(pair), upstream)


@needs_postgres
def test_after_a_cooled_a_failing_account_bs_calls_do_not_reach_it(pair, upstream):
    a, b = servers(pair)
    failing = "http500"
    model = priced_model(a, upstream, failing, weight=1000)  # tried first whenever it is not cooling down
    a.create_account(provider="openai", base_url=upstream.base_url("openai", "ok"), api_key="sk-up-fleet",
                     models=[model], model_map={model: "gpt-fake-1"}, weight=1)
    key = a.create_key(budget="10", name="fleet-cooldown")["key"]
    before = upstream.count(failing)
    assert chat(a.url, key, model).status_code == 200  # failed over, the failing account cooled down
    assert upstream.count(failing) == before + 1
    statuses = [chat(b.url, key, model).status_code for _ in range(8)]
    assert statuses == [200] * 8
    assert upstream.count(failing) == before + 1, "B called an account A had cooled down"


@needs_postgres
def test_an_upstreams_spent_rate_limit_seen_by_one_instance_steers_every_process(pair):
    a, b = servers(pair)
    model = f"fleet-{uuid.uuid4().hex[:8]}"
    a.create_model(model, input_usd_per_mtok="1", output_usd_per_mtok="1")
    with CountdownUpstream(allowed=5) as limited:
        a.create_account(provider="openai", base_url=limited.url, api_key="sk-up-fleet", models=[model])
        key = a.create_key(budget="10", name="fleet-headers")["key"]
        statuses = [chat((a, b)[i % 2].url, key, model).status_code for i in range(12)]
        # four worker processes: none calls the account again once any of them was told "0 remaining"
        assert statuses == [200] * 5 + [503] * 7, statuses
        assert limited.calls == 5


@needs_postgres
def test_an_account_limit_of_20_requests_gives_at_most_20_over_both(pair, upstream):
    check_an_account_limit_holds_over_both(servers(pair), upstream)


@needs_postgres
def test_killing_an_instances_namespace_mid_call_gives_its_holds_back(pair, upstream, tmp_path):
    a = pair[0].server
    victim = start_instance(tmp_path, "victim", a.database_url, a.admin_token, namespace="fleet-victim")
    try:
        model = priced_model(a, upstream, "stall-30")
        key = a.create_key(budget="1", name="fleet-killed")  # the stalled stream holds all of it
        body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}], "stream": True}
        with requests.post(victim.server.v1 + CHAT, json=body, headers={"Authorization": f"Bearer {key['key']}"},
                           stream=True, timeout=30) as answer:
            assert answer.status_code == 200
            next(answer.iter_lines())
            assert ledger(a.database_url, key["id"])["reserved"] > 0
            killed = time.monotonic()
            victim.kill_namespace()
        while ledger(a.database_url, key["id"])["reserved"] and time.monotonic() - killed < 60:
            time.sleep(0.2)
        waited = time.monotonic() - killed
        money = ledger(a.database_url, key["id"])
        assert money["reserved"] == 0, "the killed instance's hold is still held after 60 s"
        assert waited < 4 * float(LEASE_SECONDS)  # one lease period and a heartbeat, not a day
        rows = requests.get(a.v1 + "/usage/requests", headers={"Authorization": f"Bearer {key['key']}"},
                            timeout=10).json()["data"]
        assert [row["status_code"] for row in rows] == [499], rows  # its in-flight row, settled by another process
        assert chat(a.url, key["key"], priced_model(a, upstream, "ok")).status_code == 200
    finally:
        victim.stop()


# ---------------------------------------------------------------- SIGTERM
GRACEFUL = 6.0
SERVE = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]


def start_stoppable(tmp_path, kind: str):
    env = {"ONEKEYLLM_GRACEFUL_TIMEOUT": str(int(GRACEFUL)), "ONEKEYLLM_LEASE_SECONDS": LEASE_SECONDS}
    if kind == "serve":
        return start_server(tmp_path, name="stopped", command=SERVE, extra_env=env)
    database_url = fresh_database_url(tmp_path, "stopped")
    instance = start_instance(tmp_path, "stopped", database_url, "sk-admin-stop-" + uuid.uuid4().hex,
                              extra_env={**env, "ONEKEYLLM_WORKER_CLASS": kind})
    return instance.server


@pytest.mark.parametrize("kind", ["serve", "gevent_pywsgi", "gevent"])
def test_sigterm_mid_call_ends_it_with_a_499_row_and_gives_its_hold_back(tmp_path, upstream, kind):
    server = start_stoppable(tmp_path, kind)
    try:
        stalled = priced_model(server, upstream, "stall-30")
        slow = priced_model(server, upstream, "slow-30")
        key = server.create_key(budget="5", name="fleet-stopped")
        headers = {"Authorization": f"Bearer {key['key']}"}
        idle = requests.Session()  # a client keeping an idle connection open must not hold the stop up
        assert idle.get(server.v1 + "/ping", timeout=10).status_code == 200
        done = requests.get(server.v1 + "/models", timeout=10)
        assert done.status_code == 200
        stream = requests.post(server.v1 + CHAT, headers=headers, stream=True, timeout=30, json={
            "model": stalled, "messages": [{"role": "user", "content": "Say hello"}], "stream": True})
        assert stream.status_code == 200
        next(stream.iter_lines())
        outcome: dict = {}

        def waiting_call():
            try:
                outcome["status"] = chat(server.url, key["key"], slow).status_code
            except requests.RequestException as error:
                outcome["status"] = type(error).__name__

        caller = threading.Thread(target=waiting_call)
        caller.start()
        deadline = time.monotonic() + 10
        while ledger(server.database_url, key["id"])["reserved"] == 0 or len(_holds(server)) < 2:
            assert time.monotonic() < deadline, "the two calls never held their budget"
            time.sleep(0.05)
        stopping = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        server.process.wait(GRACEFUL + 10)
        took = time.monotonic() - stopping
        caller.join(10)
        stream.close()
        assert took < GRACEFUL + 1, f"the stop took {took:.1f} s for a graceful timeout of {GRACEFUL} s"
        money = ledger(server.database_url, key["id"])
        assert money["reserved"] == 0 and _holds(server) == []
        assert sorted(status for status, _, _ in money["rows"]) == [499, 499], money["rows"]
        assert money["used"] == money["logged"]
        assert "Traceback" not in server.log_text()
    finally:
        server.stop()


def _holds(server) -> list:
    from service.storage.db import make_database

    db = make_database(server.database_url)
    with db.connection_context():
        rows = db.execute_sql("SELECT id, owner FROM budget_hold").fetchall()
    db.close_all()
    return rows


def test_a_call_that_finishes_within_the_graceful_timeout_is_answered(tmp_path, upstream):
    server = start_stoppable(tmp_path, "gevent_pywsgi")
    try:
        model = priced_model(server, upstream, "slow-2")
        key = server.create_key(budget="5", name="fleet-finished")
        idle = requests.Session()  # an idle kept-alive connection: the stop does not wait for it
        assert idle.get(server.v1 + "/ping", timeout=10).status_code == 200
        outcome: dict = {}
        caller = threading.Thread(target=lambda: outcome.update(answer=chat(server.url, key["key"], model)))
        caller.start()
        while not _holds(server):
            time.sleep(0.05)
        os.kill(server.process.pid, signal.SIGTERM)
        caller.join(GRACEFUL + 5)
        assert outcome["answer"].status_code == 200
        assert json.loads(outcome["answer"].text)["choices"]
        server.process.wait(GRACEFUL - 2)  # once its one call is answered, not at the graceful timeout
        money = ledger(server.database_url, key["id"])
        assert [status for status, _, _ in money["rows"]] == [200] and money["reserved"] == 0
    finally:
        server.stop()
