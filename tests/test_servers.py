"""Serving as documented: `onekeyllm serve`, gunicorn, the CLI, first start and schema upgrades."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import openai
import requests
from conftest import ROOT, free_port, fresh_database_url, server_env, start_server

ECHO_CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "hello gateway"}]}


def cli(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the `onekeyllm` console script against a database."""
    script = Path(sys.executable).parent / "onekeyllm"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "service.cli"]
    return subprocess.run(command + list(args), cwd=ROOT, env=server_env(database_url, "", tmp_path),
                          capture_output=True, text=True, timeout=60)


def test_first_start_prints_the_admin_token_once_and_stores_only_its_hash(tmp_path):
    server = start_server(tmp_path, name="first", admin_token="")
    try:
        printed = re.findall(r"Admin token \(shown once, store it now\): (\S+)", server.log_text())
        assert len(printed) == 1
        token = printed[0]
        answer = requests.get(server.v1 + "/admin/keys", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 200
        database_url = server.database_url
    finally:
        server.stop()
    again = start_server(tmp_path, name="first-again", admin_token="", database_url=database_url)
    try:
        assert "Admin token" not in again.log_text()
        answer = requests.get(again.v1 + "/admin/keys", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert answer.status_code == 200
    finally:
        again.stop()


def test_gunicorn_serves_the_app_with_gevent_workers(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    server = start_server(tmp_path, name="gunicorn", command=command, port=port,
                          extra_env={"ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": "2"})
    try:
        key = server.create_key(name="through-gunicorn")["key"]
        client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)
        for _ in range(6):  # several connections, so both workers answer
            answer = client.chat.completions.create(**ECHO_CHAT)
            assert answer.choices[0].message.content == "Echo: hello gateway"
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(**ECHO_CHAT, stream=True) if chunk.choices)
        assert streamed == "Echo: hello gateway"
        assert "gevent" in server.log_text().lower()
    finally:
        server.stop()


def test_cli_creates_lists_and_revokes_keys_straight_on_the_database(tmp_path, gateway):
    created = cli(gateway.database_url, tmp_path, "keys", "create", "--name", "from-cli", "--budget", "10")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["budget_usd"] == "10.000000000" and key["key"].startswith("sk-lazytech-")
    answer = requests.post(gateway.v1 + "/chat/completions", json=ECHO_CHAT,
                           headers={"Authorization": f"Bearer {key['key']}"}, timeout=10)
    assert answer.status_code == 200
    listed = cli(gateway.database_url, tmp_path, "keys", "list")
    assert key["id"] in listed.stdout and key["key"] not in listed.stdout
    assert cli(gateway.database_url, tmp_path, "keys", "revoke", key["id"]).returncode == 0
    answer = requests.post(gateway.v1 + "/chat/completions", json=ECHO_CHAT,
                           headers={"Authorization": f"Bearer {key['key']}"}, timeout=10)
    assert answer.status_code == 401


def test_cli_adds_accounts_and_models(tmp_path, gateway, upstream):
    added = cli(gateway.database_url, tmp_path, "accounts", "add", "--name", "cli-account", "--provider", "openai",
                "--base-url", upstream.base_url("openai"), "--api-key", "sk-cli-secret-5555", "--models", "cli-model")
    assert added.returncode == 0, added.stderr
    assert "sk-cli-secret-5555" not in added.stdout
    model = cli(gateway.database_url, tmp_path, "models", "add", "--id", "cli-model", "--input", "1.5", "--output", "2")
    assert model.returncode != 0 or json.loads(model.stdout)["input_usd_per_mtok"] == "1.500000000"
    ids = [m["id"] for m in requests.get(gateway.v1 + "/models", timeout=5).json()["data"]]
    assert "cli-model" in ids
    bad = cli(gateway.database_url, tmp_path, "keys", "create", "--budget", "lots")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_accounts_from_the_environment_are_registered_on_first_start(tmp_path, upstream):
    server = start_server(tmp_path, name="env-accounts", extra_env={
        "OPENAI_API_KEY": "sk-env-openai-1111", "OPENAI_BASE_URL": upstream.base_url("openai"),
        "ANTHROPIC_API_KEY": "sk-env-anthropic-2222", "ANTHROPIC_BASE_URL": upstream.base_url("anthropic")})
    try:
        accounts = {a["name"]: a for a in server.admin("GET", "/accounts").json()["data"]}
        assert set(accounts) == {"openai", "anthropic"}  # no offline account when a provider is configured
        assert "gpt-5.4" in accounts["openai"]["models"]
        model = server.admin("GET", "/models/gpt-5.4").json()
        assert model["input_usd_per_mtok"] == "1.250000000"
        key = server.create_key(name="env")["key"]
        answer = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0).chat.completions.create(
            model="gpt-5.4", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "Hello from fake chat: hi"
        assert "sk-env-openai-1111" not in server.log_text()
    finally:
        server.stop()


def test_an_older_schema_is_upgraded_in_place_and_keeps_its_rows(tmp_path):
    from service.accounts.auth import hash_secret
    from service.storage import migrations
    from service.storage.db import database, init_database
    from service.storage.models import ApiKey, Setting

    database_url = fresh_database_url(tmp_path, "old")
    init_database(database_url)
    pepper = "ab" * 32
    plaintext = "sk-lazytech-" + "o" * 43
    with database.connection_context():
        assert migrations.migrate(target=1) == (0, 1)  # the first release's schema
        Setting.create(key="key_pepper", value=pepper)
        ApiKey.create(id="key_old", name="from v1", key_hash=hash_secret(bytes.fromhex(pepper), plaintext),
                      last4=plaintext[-4:], budget_nano=3_000_000_000)
        assert not database.table_exists("request_log")
    database.close()
    database.obj.close_all()

    server = start_server(tmp_path, name="upgraded", database_url=database_url)
    try:
        kept = server.admin("GET", "/keys/key_old").json()
        assert kept["name"] == "from v1" and kept["budget_usd"] == "3.000000000"
        answer = requests.post(server.v1 + "/chat/completions", json=ECHO_CHAT,
                               headers={"Authorization": f"Bearer {plaintext}"}, timeout=10)
        assert answer.status_code == 200
    finally:
        server.stop()
    init_database(database_url)
    with database.connection_context():
        assert migrations.schema_version() == len(migrations.MIGRATIONS)
        assert database.table_exists("request_log")
    database.obj.close_all()


def test_the_redundant_indexes_of_earlier_releases_are_dropped(tmp_path):
    from service.storage import migrations
    from service.storage.db import database, init_database

    init_database(fresh_database_url(tmp_path, "indexes"))
    try:
        with database.connection_context():
            assert migrations.migrate(target=4) == (0, 4)
            # as releases up to schema 4 made them
            database.execute_sql("CREATE INDEX IF NOT EXISTS request_log_key_id ON request_log (key_id)")
            database.execute_sql("CREATE INDEX IF NOT EXISTS budget_hold_key_id ON budget_hold (key_id)")
            assert migrations.migrate() == (4, len(migrations.MIGRATIONS))
            request_log = {index.name for index in database.get_indexes("request_log")}
            budget_hold = {index.name for index in database.get_indexes("budget_hold")}
        assert "request_log_key_id" not in request_log and "request_log_key_id_created_at" in request_log
        assert "budget_hold_key_id" not in budget_hold
    finally:
        database.obj.close_all()


def test_in_flight_rows_of_an_older_schema_move_into_their_holds_and_still_settle(tmp_path):
    """Schema 13 keeps a call's pending row in its hold: the upgrade moves each live hold's in-flight row into
    it; a hold an older process writes afterwards (no pending columns, its in-flight row beside it) still settles
    that row as abandoned."""
    from service.gateway import holds
    from service.storage import migrations
    from service.storage.db import database, init_database
    from service.storage.models import IN_FLIGHT, ApiKey, BudgetHold, RequestLog

    def in_flight(row_id: str, created_at: float) -> None:
        RequestLog.create(id=row_id, key_id="key_u", created_at=created_at, endpoint="/v1/messages", model="m",
                          stream=True, status_code=IN_FLIGHT, input_tokens=40, prices='{"input":"2000000000"}',
                          request_id=f"rid_{row_id}")

    init_database(fresh_database_url(tmp_path, "pendingmove"))
    try:
        with database.connection_context():
            assert migrations.migrate(target=12) == (0, 12)
            ApiKey.create(id="key_u", name="u", key_hash="u" * 8, last4="abcd", reserved_nano=2_000_000)
            now = time.time()
            BudgetHold.create(id="req_moved", key_id="key_u", amount_nano=1_000_000, owner="gone", created_at=now)
            in_flight("req_moved", now - 1)
            RequestLog.create(id="req_done", key_id="key_u", created_at=now, endpoint="/v1/messages", model="m",
                              status_code=200, cost_nano=5)
            assert migrations.migrate() == (12, len(migrations.MIGRATIONS))
            moved = BudgetHold.get_by_id("req_moved")
            assert (moved.endpoint, moved.model, moved.stream, moved.input_tokens, moved.request_id) == (
                "/v1/messages", "m", True, 40, "rid_req_moved")
            assert sorted(row.id for row in RequestLog.select()) == ["req_done"]

            # an older process still running writes its hold the old way
            BudgetHold.create(id="req_old", key_id="key_u", amount_nano=1_000_000, owner="gone", created_at=now)
            in_flight("req_old", now - 2)
            assert holds.settle_abandoned("req_moved") == 1_000_000
            assert holds.settle_abandoned("req_old") == 1_000_000
            for row_id in ("req_moved", "req_old"):
                row = RequestLog.get_by_id(row_id)
                assert (row.status_code, row.endpoint, row.stream, row.input_tokens, row.cost_nano,
                        row.request_id) == (499, "/v1/messages", True, 40, 80_000, f"rid_{row_id}")
            key = ApiKey.get_by_id("key_u")
            assert (key.reserved_nano, key.used_nano) == (0, 160_000)
            assert BudgetHold.select().count() == 0
    finally:
        database.obj.close_all()


def test_admin_token_rotation_applies_at_the_next_start(tmp_path):
    server = start_server(tmp_path, name="rotate", admin_token="")
    old = re.findall(r"Admin token \(shown once, store it now\): (\S+)", server.log_text())[0]
    server.stop()
    rotated = cli(server.database_url, tmp_path, "admin-token", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = re.findall(r"New admin token .*: (\S+)", rotated.stdout)[0]
    again = start_server(tmp_path, name="rotate-again", admin_token="", database_url=server.database_url)
    try:
        ask = lambda token: requests.get(again.v1 + "/admin/keys", timeout=5,  # noqa: E731
                                         headers={"Authorization": f"Bearer {token}"}).status_code
        assert ask(new) == 200 and ask(old) == 401
    finally:
        again.stop()


def test_a_write_waiting_for_another_process_lets_the_worker_serve_others(tmp_path):
    """SQLite: while another process holds the write lock, a request that must write waits for it, and the
    same worker goes on answering everything else (its wait yields; SQLite's busy handler would block it)."""
    import sqlite3
    import threading

    database_url = "sqlite:///" + str(tmp_path / "locked.db")
    server = start_server(tmp_path, name="locked", database_url=database_url)
    try:
        key = server.create_key(budget="5", name="waits")["key"]
        body = {"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}
        chat = server.v1 + "/chat/completions"
        assert requests.post(chat, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=10).ok
        other = sqlite3.connect(str(tmp_path / "locked.db"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        answers: list = []
        waiting = threading.Thread(target=lambda: answers.append(requests.post(
            chat, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)))
        waiting.start()
        try:
            waiting.join(1.0)
            assert not answers  # its grant waits for the lock
            for _ in range(3):  # the worker answers meanwhile
                assert requests.get(server.v1 + "/ping", timeout=5).status_code == 200
                assert requests.get(server.v1 + "/models", headers={"Authorization": f"Bearer {key}"},
                                    timeout=5).status_code == 200
            assert not answers
        finally:
            other.execute("ROLLBACK")
            other.close()
        waiting.join(30)
        assert [a.status_code for a in answers] == [200]
    finally:
        server.stop()


def test_sqlite_checkpoints_its_wal_outside_the_requests(gateway):
    """SQLite's own checkpoint would run inside the commit of whichever request crosses 1,000 pages of WAL;
    a served SQLite database is checkpointed by a thread of the server instead (PostgreSQL needs none)."""
    import time

    first = gateway.admin("GET", "/diagnostics").json()["wal_checkpoints"]
    time.sleep(2.5)
    later = gateway.admin("GET", "/diagnostics").json()["wal_checkpoints"]
    if gateway.database_url.startswith("sqlite"):
        assert later >= first + 1, (first, later)
    else:
        assert first == later == 0
