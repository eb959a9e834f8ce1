"""Statements prepared on the PostgreSQL server (service/prepared.py ServerPrepared), on a real database."""
from __future__ import annotations

import pytest
from conftest import fresh_database_url, is_postgres

from service.storage.db import database, init_database
from service.storage.prepared import ServerPrepared

pytestmark = pytest.mark.skipif(not is_postgres(), reason="server-side prepared statements are PostgreSQL's")


@pytest.fixture()
def db(tmp_path):
    init_database(fresh_database_url(tmp_path, "prepared"))
    with database.connection_context():
        database.execute_sql("CREATE TABLE counter (id text PRIMARY KEY, n bigint)")
        database.execute_sql("INSERT INTO counter VALUES ('a', 0)")
        yield database
    database.obj.close_all()


def test_it_is_prepared_once_per_connection_and_runs_with_new_parameters(db):
    bump = ServerPrepared("UPDATE counter SET n = n + %s WHERE id = %s RETURNING n")
    assert bump.execute(2, "a").fetchone() == (2,)
    assert bump.execute(3, "a").fetchone() == (5,)
    prepared = db.execute_sql("SELECT count(*) FROM pg_prepared_statements WHERE name = %s", (bump.name,))
    assert prepared.fetchone() == (1,)


def test_a_statement_the_server_lost_or_outdated_is_prepared_again(db):
    read = ServerPrepared("SELECT * FROM counter WHERE id = %s")
    assert read.execute("a").fetchone() == ("a", 0)
    db.execute_sql("DEALLOCATE ALL")  # e.g. a pooler or an operator reset the session
    assert read.execute("a").fetchone() == ("a", 0)
    db.execute_sql("ALTER TABLE counter ADD COLUMN note text")  # `*` changes: the cached plan is outdated
    assert read.execute("a").fetchone() == ("a", 0, None)


def test_with_preparing_off_the_plain_statement_runs(db):
    # ONEKEYLLM_PG_PREPARED=0, for poolers that give each transaction another server connection
    bump = ServerPrepared("UPDATE counter SET n = n + %s WHERE id = %s RETURNING n")
    bump.enabled = False
    assert bump.execute(4, "a").fetchone() == (4,)
    prepared = db.execute_sql("SELECT count(*) FROM pg_prepared_statements WHERE name = %s", (bump.name,))
    assert prepared.fetchone() == (0,)
