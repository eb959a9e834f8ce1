"""Test fixtures: the real gateway served on a loopback port, and the fake upstream provider.

The database is SQLite in a temporary folder unless ONEKEYLLM_DATABASE_URL
points at PostgreSQL (CI runs the suite on both); every server a test starts
gets a fresh database of that kind.
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests
from fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parent.parent
BASE_DATABASE_URL = os.environ.get("ONEKEYLLM_DATABASE_URL", "")
SCRUBBED_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                "ONEKEYLLM_ADMIN_TOKEN", "ONEKEYLLM_DATABASE_URL", "ONEKEYLLM_SMTP_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MADE_DATABASES: list = []  # the okltest_* databases this session made: dropped when it ends


def run_script(script: str, timeout: float = 60) -> str:
    """Run `script` in a fresh interpreter at the project's root (e.g. under gevent's monkey-patching, which
    this process must not get); its standard output, once it exited 0."""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def is_postgres() -> bool:
    return BASE_DATABASE_URL.startswith(("postgres://", "postgresql://"))


def fresh_database_url(tmp_dir: Path, name: str) -> str:
    """A new, empty database of the kind under test."""
    if not is_postgres():
        return f"sqlite:///{tmp_dir / (name + '.db')}"
    import psycopg2

    parsed = urlparse(BASE_DATABASE_URL)
    db_name = f"okltest_{name}_{uuid.uuid4().hex[:8]}".lower()
    admin = psycopg2.connect(urlunparse(parsed))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db_name}"')
    admin.close()
    MADE_DATABASES.append(db_name)
    return urlunparse(parsed._replace(path="/" + db_name))


class Server:
    """A gateway process (`onekeyllm serve` or gunicorn) and helpers to drive it."""

    def __init__(self, url: str, admin_token: str, process: subprocess.Popen, log_path: Path, database_url: str):
        self.url = url
        self.admin_token = admin_token
        self.process = process
        self.log_path = log_path
        self.database_url = database_url
        self.handed_out = {admin_token} if admin_token else set()  # secrets the log must never show

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.v1 + "/admin" + path, headers=headers, timeout=30, **kwargs)

    def create_key(self, budget="100", **fields) -> dict:
        answer = self.admin("POST", "/keys", json={"name": fields.pop("name", "test"), "budget_usd": budget, **fields})
        assert answer.status_code == 201, answer.text
        self.handed_out.add(answer.json()["key"])
        return answer.json()

    def create_account(self, **fields) -> dict:
        fields.setdefault("name", f"acct-{uuid.uuid4().hex[:8]}")
        answer = self.admin("POST", "/accounts", json=fields)
        assert answer.status_code == 201, answer.text
        if len(fields.get("api_key") or "") >= 12:
            self.handed_out.add(fields["api_key"])
        return answer.json()

    def create_model(self, model_id: str, **fields) -> dict:
        answer = self.admin("POST", "/models", json={"id": model_id, **fields})
        if answer.status_code == 409:
            answer = self.admin("PATCH", f"/models/{model_id}", json=fields)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def leaked_secrets(self) -> list:
        """Keys, credentials and the admin token handed to this server that its log shows."""
        log = self.log_text()
        return [secret[:14] + "…" for secret in self.handed_out if secret in log]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def drop_database(database_url: str) -> None:
    """Drop a PostgreSQL database a test made (SQLite files go with the temporary folder)."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg2

    parsed = urlparse(database_url)
    admin = psycopg2.connect(urlunparse(parsed._replace(path=urlparse(BASE_DATABASE_URL).path)))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{parsed.path.lstrip("/")}" WITH (FORCE)')
    admin.close()


def server_env(database_url: str, admin_token: str, tmp_dir: Path, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    if admin_token:
        env["ONEKEYLLM_ADMIN_TOKEN"] = admin_token
    env.update({"ONEKEYLLM_DATABASE_URL": database_url,
                "ONEKEYLLM_FILES_DIR": str(tmp_dir / "files"), "PYTHONPATH": str(ROOT),
                "ONEKEYLLM_UPSTREAM_TIMEOUT": "10", "ONEKEYLLM_KEEPALIVE_SECONDS": "15",
                "ONEKEYLLM_DB_POOL_SIZE": "8"})
    env.update(extra or {})
    return env


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30,
                  probe: str = "/v1/ping") -> None:
    """Wait until `url + probe` answers 200; the server's log in the error when it exits or never does."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if requests.get(url + probe, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')[-3000:]}")


def start_server(tmp_dir: Path, *, name: str = "gw", command: list | None = None, extra_env: dict | None = None,
                 database_url: str | None = None, admin_token: str | None = None, port: int | None = None) -> Server:
    """Start `onekeyllm serve` (or `command`, with {port} filled in) on a fresh database.

    admin_token="" leaves ONEKEYLLM_ADMIN_TOKEN unset, so the server generates and prints one.
    """
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    admin_token = "sk-admin-test-" + secrets.token_urlsafe(16) if admin_token is None else admin_token
    database_url = database_url or fresh_database_url(tmp_dir, name)
    command = [part.format(port=port) for part in (command or [
        sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"])]
    log_path = tmp_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=server_env(database_url, admin_token, tmp_dir, extra_env),
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
    except Exception:
        process.kill()
        raise
    return Server(url, admin_token, process, log_path, database_url)


def pytest_sessionfinish(session, exitstatus):
    """Drop every PostgreSQL database the session made, so no okltest_* outlives a run (.ci/run or not)."""
    for name in MADE_DATABASES:
        try:
            drop_database(urlunparse(urlparse(BASE_DATABASE_URL)._replace(path="/" + name)))
        except Exception as error:  # noqa: BLE001 - a database still in use by a stray process: say so, go on
            print(f"could not drop the test database {name}: {error}", file=sys.stderr)


@pytest.fixture(scope="session")
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("gateway"))
    yield server
    server.stop()
    drop_database(server.database_url)
    # the whole run's log: no key, credential or admin token handed out during it may appear
    assert not server.leaked_secrets(), f"secrets in the server log: {server.leaked_secrets()}"


@pytest.fixture(scope="module")
def db(gateway):
    """The session gateway's own database, read straight with peewee."""
    from service.storage.db import database, init_database

    init_database(gateway.database_url)
    yield database
    if not database.is_closed():
        database.close()


@pytest.fixture()
def user_key(gateway) -> str:
    return gateway.create_key(budget="100", name="user")["key"]


def clear_of_window_boundary(window: int, margin: float = 3) -> None:
    """Wait out the end of a fixed rate window, so a test's requests fall into one window."""
    into = time.time() % window
    if into > window - margin:
        time.sleep(window - into + 0.5)
