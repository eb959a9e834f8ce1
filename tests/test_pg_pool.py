"""PostgreSQL's pool (storage/db.PooledPostgres) on a real server: a connection given back moments ago is handed
out again without a probe; one idle past PROBE_IDLE_SECONDS is probed, and one the server dropped is replaced."""
from __future__ import annotations

import peewee as pw
import psycopg2
import pytest
from conftest import fresh_database_url, is_postgres

from service.storage import db as storage_db
from service.storage.db import database, init_database

pytestmark = pytest.mark.skipif(not is_postgres(), reason="PostgreSQL's pool")


@pytest.fixture()
def pool(tmp_path):
    init_database(fresh_database_url(tmp_path, "pgpool"))
    yield database
    database.obj.close_all()


def _backend_pid() -> int:
    return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def _terminate(pid: int) -> None:
    """Drop a backend from another connection, as a server restart or an idle timeout would."""
    other = psycopg2.connect(dsn=database.obj.connect_params.get("dsn") or "", **{
        k: v for k, v in database.obj.connect_params.items() if k != "dsn"}, dbname=database.obj.database)
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    other.close()


def test_a_connection_given_back_moments_ago_is_handed_out_unprobed(pool):
    with database.connection_context():
        pid = _backend_pid()
    _terminate(pid)  # dropped while idle in the pool, and not probed at the next check-out: its first use fails
    with pytest.raises((pw.OperationalError, pw.InterfaceError)):
        with database.connection_context():
            _backend_pid()
    with database.connection_context():  # the broken one was discarded at its check-in: a new one answers
        assert _backend_pid() != pid


def test_a_connection_idle_past_the_probe_interval_is_probed_and_replaced(pool, monkeypatch):
    with database.connection_context():
        pid = _backend_pid()
    _terminate(pid)
    monkeypatch.setattr(storage_db, "PROBE_IDLE_SECONDS", 0.0)  # every pooled connection counts as long idle
    with database.connection_context():  # the probe finds it dead and a fresh one is handed out
        assert _backend_pid() != pid
