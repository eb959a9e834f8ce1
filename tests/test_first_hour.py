"""The first hour of an operator: the CLI on the server's database from any folder, serve and gunicorn as
documented, and one clear line (never a traceback) for a missing database or a busy port."""
from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import BASE_DATABASE_URL, ROOT, free_port, is_postgres, server_env, start_server, wait_until_up

ECHO_CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "hello gateway"}]}
ONEKEYLLM = Path(sys.executable).parent / "onekeyllm"


def run_cli(folder: Path, *args: str, database_url: str | None = None, timeout: float = 60,
            extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """The installed `onekeyllm` script run in `folder`, as an operator would: ONEKEYLLM_DATABASE_URL only when given."""
    env = server_env("", "", folder, extra_env)
    env.pop("ONEKEYLLM_DATABASE_URL")
    env.pop("PYTHONPATH")  # the installed package, not the checkout
    if database_url:
        env["ONEKEYLLM_DATABASE_URL"] = database_url
    return subprocess.run([str(ONEKEYLLM), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def answer(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess, needle: str) -> str:
    """The command failed with one line saying `needle`, and no traceback."""
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if needle in line]
    assert len(lines) == 1, output
    return lines[0]


def chat(gateway, key: str) -> requests.Response:
    return requests.post(gateway.v1 + "/chat/completions", json=ECHO_CHAT, timeout=10,
                         headers={"Authorization": f"Bearer {key}"})


# ---------------------------------------------------------------- the CLI and the server's database
def test_the_cli_in_another_folder_refuses_to_make_an_empty_database(tmp_path):
    listed = run_cli(tmp_path, "keys", "list")
    line = one_line_error(listed, "no database at")
    assert str(tmp_path / "onekeyllm.db") in line and "ONEKEYLLM_DATABASE_URL" in line and "onekeyllm init" in line
    assert "database sqlite:///" in listed.stderr  # which database it looked for
    assert not (tmp_path / "onekeyllm.db").exists()
    created = run_cli(tmp_path, "keys", "create", "--name", "lost", "--budget", "5")
    one_line_error(created, "no database at")
    assert not (tmp_path / "onekeyllm.db").exists()


def test_the_cli_refuses_a_database_without_the_schema(tmp_path):
    (tmp_path / "other.db").write_bytes(b"")
    done = run_cli(tmp_path, "keys", "list", database_url=f"sqlite:///{tmp_path / 'other.db'}")
    one_line_error(done, "has no OneKeyLLM schema")


def test_the_cli_in_another_folder_works_on_the_running_servers_database(tmp_path, gateway):
    url = gateway.database_url
    created = run_cli(tmp_path, "keys", "create", "--name", "from-elsewhere", "--budget", "2",
                      "--expires-at", "2031-12-31", database_url=url)
    key = answer(created)
    assert "onekeyllm: database " in created.stderr and "ONEKEYLLM_DATABASE_URL" in created.stderr
    assert key["expires_at"] == 1956441600 and key["budget_usd"] == "2.000000000"
    assert chat(gateway, key["key"]).status_code == 200
    raised = answer(run_cli(tmp_path, "keys", "update", key["id"], "--budget", "25", "--rpm", "60",
                            "--expires-at", "1956614400", database_url=url))
    assert raised["budget_usd"] == "25.000000000" and raised["rpm"] == 60 and raised["expires_at"] == 1956614400
    assert gateway.admin("GET", f"/keys/{key['id']}").json()["budget_usd"] == "25.000000000"
    answer(run_cli(tmp_path, "keys", "update", key["id"], "--disable", database_url=url))
    assert chat(gateway, key["key"]).status_code == 401
    answer(run_cli(tmp_path, "keys", "update", key["id"], "--enable", database_url=url))
    assert chat(gateway, key["key"]).status_code == 200
    listed = answer(run_cli(tmp_path, "keys", "list", database_url=url))
    assert key["id"] in {k["id"] for k in listed} and key["key"] not in json.dumps(listed)
    answer(run_cli(tmp_path, "keys", "revoke", key["id"], database_url=url))
    assert chat(gateway, key["key"]).status_code == 401
    assert not (tmp_path / "onekeyllm.db").exists()


def test_the_cli_manages_accounts_and_models_like_the_admin_api(tmp_path, gateway, upstream):
    url = gateway.database_url
    name = f"cli-{uuid.uuid4().hex[:6]}"
    model = f"cli-model-{uuid.uuid4().hex[:6]}"
    added = answer(run_cli(tmp_path, "accounts", "add", "--name", name, "--provider", "openai", "--base-url",
                           upstream.base_url("openai"), "--api-key", "sk-cli-secret-7777", "--models", model,
                           database_url=url))
    assert "sk-cli-secret-7777" not in json.dumps(added)
    assert gateway.admin("GET", f"/models/{model}").status_code == 200  # the account's models get catalog rows
    updated = answer(run_cli(tmp_path, "models", "update", model, "--input", "3.5", "--output", "7",
                             database_url=url))
    assert updated["input_usd_per_mtok"] == "3.500000000"
    assert gateway.admin("GET", f"/models/{model}").json()["output_usd_per_mtok"] == "7.000000000"
    assert answer(run_cli(tmp_path, "accounts", "update", name, "--weight", "3", database_url=url))["weight"] == 3
    assert answer(run_cli(tmp_path, "accounts", "disable", name, database_url=url))["enabled"] is False
    key = gateway.create_key(name="cli-models")["key"]
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    ask = lambda: requests.post(gateway.v1 + "/chat/completions", json=body, timeout=10,  # noqa: E731
                                headers={"Authorization": f"Bearer {key}"})
    assert ask().status_code == 400  # no enabled account serves it
    assert answer(run_cli(tmp_path, "accounts", "enable", name, database_url=url))["enabled"] is True
    assert ask().status_code == 200
    assert answer(run_cli(tmp_path, "accounts", "remove", name, database_url=url))["deleted"] is True
    assert gateway.admin("GET", f"/accounts/{name}").status_code == 404
    assert answer(run_cli(tmp_path, "models", "remove", model, database_url=url))["deleted"] is True
    bad = run_cli(tmp_path, "models", "update", model, "--input", "x", database_url=url)
    assert "--input: " in one_line_error(bad, "--input")


def test_usage_export_takes_iso_dates_and_writes_csv_or_json(tmp_path, gateway):
    key = gateway.create_key(name="exported")
    assert chat(gateway, key["key"]).status_code == 200
    url = gateway.database_url
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    lines = run_cli(tmp_path, "usage", "export", "--since", since, "--key", key["id"], "--format", "json",
                    database_url=url)
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [row["key_name"] for row in rows] == ["exported"] and rows[0]["model"] == "echo-1"
    table = run_cli(tmp_path, "usage", "export", "--until", str(int(time.time()) + 60), "--key", key["id"],
                    database_url=url)
    parsed = list(csv.DictReader(io.StringIO(table.stdout)))
    assert [row["id"] for row in parsed] == [rows[0]["id"]]
    future = run_cli(tmp_path, "usage", "export", "--since", "2099-01-01", "--format", "json", database_url=url)
    assert future.returncode == 0 and future.stdout == ""
    one_line_error(run_cli(tmp_path, "usage", "export", "--since", "last tuesday", database_url=url), "--since")


def test_keys_create_needs_a_name_and_a_budget(tmp_path, gateway):
    before = len(gateway.admin("GET", "/keys", params={"limit": 100}).json()["data"])
    done = run_cli(tmp_path, "keys", "create", database_url=gateway.database_url)
    assert done.returncode == 2 and "--name" in done.stderr and "--budget" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(gateway.admin("GET", "/keys", params={"limit": 100}).json()["data"]) == before
    unlimited = answer(run_cli(tmp_path, "keys", "create", "--name", "ci-bot", "--budget", "none",
                               database_url=gateway.database_url))
    assert unlimited["budget_usd"] is None  # said explicitly


def test_every_command_and_flag_has_help_and_the_version_is_printed(tmp_path):
    import argparse

    from service import __version__
    from service.cli import build_parser

    assert run_cli(tmp_path, "--version").stdout.strip() == f"onekeyllm {__version__}"

    def check(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, child in action.choices.items():
                    assert helps.get(name), f"`{path} {name}` has no help"
                    check(child, f"{path} {name}")
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                assert action.help, f"`{path}` {action.option_strings or action.dest} has no help"

    check(build_parser(), "onekeyllm")
    for command in ("keys", "accounts", "models", "usage", "serve", "init", "admin-token"):
        shown = run_cli(tmp_path, command, "--help")
        assert shown.returncode == 0 and "usage: onekeyllm" in shown.stdout


# ---------------------------------------------------------------- serve
def test_serve_listens_on_onekeyllm_bind_and_port_overrides_it(tmp_path):
    port = free_port()
    server = start_server(tmp_path, name="bind", port=port, extra_env={"ONEKEYLLM_BIND": f"127.0.0.1:{port}"},
                          command=[sys.executable, "-m", "service.cli", "serve"])
    try:
        assert requests.get(server.v1 + "/ping", timeout=5).ok
    finally:
        server.stop()
    other = free_port()
    server = start_server(tmp_path, name="bind-override", port=other,
                          extra_env={"ONEKEYLLM_BIND": f"127.0.0.1:{free_port()}"},
                          command=[sys.executable, "-m", "service.cli", "serve", "--port", "{port}"])
    try:
        assert requests.get(server.v1 + "/ping", timeout=5).ok
    finally:
        server.stop()


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli(tmp_path, "serve", "--port", str(port), database_url=f"sqlite:///{tmp_path / 'busy.db'}")
    line = one_line_error(done, "cannot listen on")
    assert f"127.0.0.1:{port}" in line and "in use" in line
    assert "Admin token" not in done.stdout  # nothing was set up for a server that cannot listen


# ---------------------------------------------------------------- a missing PostgreSQL database
def missing_postgres_url() -> str:
    base = BASE_DATABASE_URL if is_postgres() else "postgresql://postgres@127.0.0.1:5432/postgres"
    return base.rsplit("/", 1)[0] + f"/okl_missing_{uuid.uuid4().hex[:8]}"


def _assert_missing_database_line(done: subprocess.CompletedProcess, url: str) -> None:
    line = one_line_error(done, "cannot open the database")
    if is_postgres():  # a PostgreSQL server answers: say what to create, and how
        assert "does not exist" in line and f"createdb -h 127.0.0.1 -p 5432 -U postgres {url.rsplit('/', 1)[1]}" in line


def test_init_and_serve_on_a_missing_postgresql_database_say_so_in_one_line(tmp_path):
    url = missing_postgres_url()
    _assert_missing_database_line(run_cli(tmp_path, "init", database_url=url), url)
    _assert_missing_database_line(run_cli(tmp_path, "serve", "--port", str(free_port()), database_url=url), url)


def test_gunicorn_on_a_missing_postgresql_database_says_so_in_one_line(tmp_path):
    url = missing_postgres_url()
    env = server_env(url, "", tmp_path, {"ONEKEYLLM_BIND": f"127.0.0.1:{free_port()}"})
    done = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    _assert_missing_database_line(done, url)


# ---------------------------------------------------------------- gunicorn from the installed package
def test_gunicorn_starts_from_the_installed_package_in_any_folder_with_an_access_log(tmp_path):
    port = free_port()
    env = server_env(f"sqlite:///{tmp_path / 'prod.db'}", "sk-admin-test-prod-0123456789", tmp_path,
                     {"ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": "1", "ONEKEYLLM_ACCESS_LOG": "-"})
    env.pop("PYTHONPATH")
    if is_postgres():
        from conftest import fresh_database_url

        env["ONEKEYLLM_DATABASE_URL"] = fresh_database_url(tmp_path, "prod")
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:service.http.gunicorn_conf",
                                    "service:create_app()"], cwd=tmp_path, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", process, log_path)
        assert not (tmp_path / "gunicorn.conf.py").exists() and not (tmp_path / "wsgi.py").exists()
        assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).ok
        deadline = time.time() + 10
        while "GET /v1/models" not in log_path.read_text() and time.time() < deadline:
            time.sleep(0.1)
        assert "GET /v1/models" in log_path.read_text()  # one access line per request
    finally:
        process.terminate()
        process.wait(20)
        from conftest import drop_database

        drop_database(env["ONEKEYLLM_DATABASE_URL"])


# ---------------------------------------------------------------- the account view
def test_an_account_cooling_down_after_an_error_is_not_shown_healthy(gateway, upstream):
    name = f"cooling-{uuid.uuid4().hex[:6]}"
    model = f"cool-model-{uuid.uuid4().hex[:6]}"
    gateway.create_account(name=name, provider="openai", base_url=upstream.base_url("openai", "http429"),
                           api_key="sk-upstream-cool-0000", models=[model])
    key = gateway.create_key(name="cool")["key"]
    failed = requests.post(gateway.v1 + "/chat/completions", timeout=10, headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert failed.status_code in (429, 502, 503)
    view = gateway.admin("GET", f"/accounts/{name}").json()
    assert view["last_error"] and view["healthy"] is False
    assert isinstance(view["cooldown_until"], int) and view["cooldown_until"] >= int(time.time())
    assert all(isinstance(account["cooldown_until"], (int, type(None)))
               for account in gateway.admin("GET", "/accounts").json()["data"])
    gateway.admin("DELETE", f"/accounts/{name}")


@pytest.fixture(autouse=True)
def _no_stray_database_here():
    """No test of this file may leave an onekeyllm.db in the checkout (the CLI must not make one by accident)."""
    existed = (ROOT / "onekeyllm.db").exists()
    yield
    if not existed:
        assert not (ROOT / "onekeyllm.db").exists()


# ---------------------------------------------------------------- the test suite's own databases
@pytest.mark.skipif(not is_postgres(), reason="PostgreSQL only: SQLite test databases go with their folders")
def test_a_test_session_on_postgresql_leaves_no_okltest_database_behind(tmp_path):
    import psycopg2

    (tmp_path / "test_inner.py").write_text(
        "from conftest import fresh_database_url\n\n"
        "def test_makes_a_database(tmp_path):\n"
        "    fresh_database_url(tmp_path, 'leftover')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    admin = psycopg2.connect(BASE_DATABASE_URL)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname LIKE 'okltest\\_leftover\\_%'")
            assert cur.fetchall() == []
    finally:
        admin.close()


# ---------------------------------------------------------------- the first run shows billing
def test_the_first_run_shows_what_billing_does(tmp_path):
    """A fresh gateway with echo-1 priced as SPEC §2 says: a key made by the CLI elsewhere, one answer, and every
    view (the key's usage, the request log, the CLI's export, the notebook's cost line and spend) shows its cost."""
    import openai

    from notebook_ext import Client
    from notebook_ext.render import call_line

    server = start_server(tmp_path / "srv", name="first-run")
    try:
        priced = server.admin("PATCH", "/models/echo-1", json={"input_usd_per_mtok": "0.15",
                                                                 "output_usd_per_mtok": "0.60"})
        assert priced.status_code == 200
        key = answer(run_cli(tmp_path, "keys", "create", "--name", "alice", "--budget", "10",
                             database_url=server.database_url))
        reply = openai.OpenAI(base_url=server.v1, api_key=key["key"], max_retries=0).responses.create(
            model="echo-1", input="What does a first run cost?")
        usage = requests.get(server.v1 + "/usage", headers={"Authorization": f"Bearer {key['key']}"}, timeout=5)
        used = float(usage.json()["budget"]["used_usd"])
        expected = (reply.usage.input_tokens * 0.15 + reply.usage.output_tokens * 0.60) / 1e6
        assert used == pytest.approx(expected) and used > 0
        exported = run_cli(tmp_path, "usage", "export", "--format", "json", database_url=server.database_url)
        assert float(json.loads(exported.stdout.splitlines()[0])["cost_usd"]) == pytest.approx(used)
        client = Client(server.url, key["key"], "echo-1")
        cost = client.cost_of(reply.id, "echo-1")
        line = call_line("echo-1", reply.usage.input_tokens, reply.usage.output_tokens, cost)
        assert cost > 0 and "· $0.0000" in line and not line.endswith("· $0")  # the quiet line under an answer
        assert client.spend_frame("day")["cost_usd"].sum() == pytest.approx(used)
    finally:
        server.stop()


def test_a_spend_chart_never_shows_negative_dollars():
    import pandas as pd

    from notebook_ext.widgets import spend_figure

    free = pd.DataFrame({"model": ["echo-1"], "cost_usd": [0.0]})
    assert spend_figure(free, "model", "Spend by model").axes[0].get_ylim()[0] == 0
    priced = pd.DataFrame({"model": ["echo-1", "gpt"], "cost_usd": [0.0004, 0.002]})
    low, high = spend_figure(priced, "model", "Spend by model").axes[0].get_ylim()
    assert low == 0 and high >= 0.002
