"""A row for every call that reached upstream, even when the process serving it is killed; `onekeyllm audit`;
the money flags of the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT, drop_database, start_server

from service.storage.db import database, init_database
from service.storage.models import ApiKey, BudgetHold, RequestLog

CALLS = 6


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ONEKEYLLM_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def audit(database_url: str) -> subprocess.CompletedProcess:
    return cli(database_url, "audit")


def rows_of(key_id: str) -> list:
    with database.connection_context():
        return list(RequestLog.select().where(RequestLog.key_id == key_id))


@pytest.fixture()
def killed(tmp_path, upstream):
    """A server killed with -9 while CALLS calls (half streamed) wait on a stalled upstream; (database url, key)."""
    server = start_server(tmp_path / "first", name="killed")
    server.create_model("kill-model", input_usd_per_mtok="3", output_usd_per_mtok="15", max_output_tokens=100)
    server.create_account(provider="openai", base_url=upstream.base_url("openai", "stall-30"), api_key="sk-up-kill",
                          models=["kill-model"])
    key = server.create_key(budget="1", name="killed")
    before = upstream.count("stall-30")

    def call(stream: bool) -> None:
        try:
            answer = requests.post(server.v1 + "/chat/completions", timeout=60,
                                   headers={"Authorization": f"Bearer {key['key']}"},
                                   json={"model": "kill-model", "stream": stream, "max_tokens": 50,
                                         "messages": [{"role": "user", "content": "Say hello " * 20}]})
            answer.close()
        except requests.RequestException:
            pass  # the server dies under it

    threads = [threading.Thread(target=call, args=(n % 2 == 0,), daemon=True) for n in range(CALLS)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 15
    while upstream.count("stall-30") - before < CALLS and time.time() < deadline:
        time.sleep(0.05)
    assert upstream.count("stall-30") - before == CALLS
    time.sleep(0.3)  # the streams' first events reach the clients
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    init_database(server.database_url)
    yield server.database_url, key
    if not database.is_closed():
        database.close()
    drop_database(server.database_url)


def test_a_killed_servers_calls_leave_rows_settled_by_the_next_process(killed, tmp_path):
    database_url, key = killed
    assert rows_of(key["id"]) == []  # a row is written once, when its call settles
    with database.connection_context():
        held = list(BudgetHold.select().where(BudgetHold.key_id == key["id"]))
    # each hold says what its call's row will: written before the upstream call
    assert len(held) == CALLS and sorted(hold.stream for hold in held) == [False] * (CALLS // 2) + [True] * (CALLS // 2)
    assert all(hold.endpoint == "/v1/chat/completions" and hold.model == "kill-model" and hold.input_tokens > 0
               and json.loads(hold.prices)["input"] == 3 * 10**9 for hold in held)
    found = audit(database_url)
    assert found.returncode == 1 and found.stdout.count("no longer runs") == CALLS, found.stdout

    successor = start_server(tmp_path / "second", name="successor", database_url=database_url)
    try:
        rows = rows_of(key["id"])
        assert sorted(r.id for r in rows) == sorted(hold.id for hold in held)
        assert all(r.status_code == 499 and r.endpoint == "/v1/chat/completions" and r.model == "kill-model"
                   and r.request_id for r in rows)
        assert sorted(r.stream for r in rows) == sorted(hold.stream for hold in held)
        # charged what was known: each call's input estimate at the input price, never the whole hold
        assert all(r.input_tokens > 0 and r.output_tokens == 0 and r.cost_nano == r.input_tokens * 3000
                   for r in rows)
        with database.connection_context():
            row = ApiKey.get_by_id(key["id"])
            assert BudgetHold.select().count() == 0
        assert row.reserved_nano == 0 and row.used_nano == sum(r.cost_nano for r in rows)
        clean = audit(database_url)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "0 discrepancies" in clean.stdout
    finally:
        successor.stop()


def test_audit_names_every_discrepancy(killed, tmp_path):
    database_url, key = killed
    start_server(tmp_path / "second", name="successor", database_url=database_url).stop()  # settles the rows
    assert audit(database_url).returncode == 0
    [first, *_] = rows_of(key["id"])
    with database.connection_context():
        RequestLog.update(cost_nano=RequestLog.cost_nano + 1).where(RequestLog.id == first.id).execute()
    found = audit(database_url)
    assert found.returncode == 1
    assert f"row {first.id}: charged" in found.stdout  # its tokens cost one nano-dollar less
    assert f"key {key['id']}: used" in found.stdout  # its spend is no longer the sum of its rows


def test_the_cli_sets_the_cap_field_and_cache_write_prices(gateway, upstream):
    model = cli(gateway.database_url, "models", "add", "--id", "cli-cache-model", "--input", "3", "--output", "15",
                "--cache-write", "3.75", "--cache-write-1h", "6")
    assert model.returncode == 0, model.stderr
    shown = json.loads(model.stdout)
    assert (shown["cache_write_usd_per_mtok"], shown["cache_write_1h_usd_per_mtok"]) == ("3.750000000", "6.000000000")
    added = cli(gateway.database_url, "accounts", "add", "--name", "cli-llama", "--provider", "openai",
                "--base-url", upstream.base_url("openai", "cli-llama"), "--models", "cli-cache-model",
                "--max-tokens-field", "max_tokens")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["compat"] == {"max_tokens_field": "max_tokens"}


def test_a_database_of_the_previous_schema_gains_the_money_columns_and_keeps_its_rows(tmp_path):
    from conftest import fresh_database_url

    from service.storage import migrations
    from service.storage.models import Account, CatalogModel

    database_url = fresh_database_url(tmp_path, "schema5")
    init_database(database_url)
    added = {"catalog_model": ("cache_write_nano_per_mtok", "cache_write_1h_nano_per_mtok"), "account": ("compat",),
             "request_log": ("cache_write_tokens", "cache_write_1h_tokens", "overage_nano", "prices")}
    try:
        with database.connection_context():
            money = migrations.MIGRATIONS.index(migrations.m011_money) + 1
            migrations.migrate(target=money - 1)
            for table, columns in added.items():  # as the release before this one made them
                for column in columns:
                    database.execute_sql(f'ALTER TABLE {table} DROP COLUMN "{column}"')
            database.execute_sql("INSERT INTO account (id, name, provider, base_url, api_key, api, models, model_map, "
                                 "weight, enabled, limits, created_at, cooldown_until, healthy, last_headers) VALUES "
                                 "('acct_old', 'old', 'openai', '', '', 'chat', '[]', '{}', 1, true, '{}', 0, 0, true, "
                                 "'{}')")
            database.execute_sql("INSERT INTO request_log (id, key_id, created_at, endpoint, model, stream, status_code,"
                                 " input_tokens, output_tokens, cached_tokens, cost_nano, latency_ms) VALUES "
                                 "('req_old', 'key_old', 1, '/v1/chat/completions', 'm', false, 200, 1, 1, 0, 5, 1)")
            assert migrations.migrate() == (money - 1, len(migrations.MIGRATIONS))
            for table, columns in added.items():
                assert set(columns) <= {c.name for c in database.get_columns(table)}
            old = RequestLog.get_by_id("req_old")
            assert (old.cost_nano, old.overage_nano, old.cache_write_tokens, old.prices) == (5, 0, 0, None)
            assert Account.get_by_id("acct_old").compat == {}
            assert CatalogModel.select().count() == 0
    finally:
        database.close()
        drop_database(database_url)
