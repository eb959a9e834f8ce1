"""The database proxy: bound once from ONEKEYLLM_DATABASE_URL, pooled, gevent-friendly."""
from __future__ import annotations

import os
from contextlib import contextmanager
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

database = pw.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers never wait for the writer
    "busy_timeout": 15000,  # several workers share one file
    "synchronous": "normal",  # durable across process crashes in WAL mode
    "foreign_keys": 0,
}


def _make_green_if_gevent() -> None:
    """Let psycopg2 yield to the gevent loop while it waits on the server (psycogreen)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover
        return
    if monkey.is_module_patched("socket"):
        from psycogreen.gevent import patch_psycopg

        patch_psycopg()


def _one_connection_per_greenlet(db: pw.Database) -> pw.Database:
    """Under gevent, keep peewee's connection state per greenlet, whenever peewee was imported.

    peewee's state subclasses the `threading.local` of the moment peewee is imported; gunicorn's master
    imports it (to migrate) before a gevent worker patches threading, and every greenlet of that worker
    would then share one connection (PostgreSQL: "execute cannot be used while an asynchronous query is
    underway"; transactions of different requests mixed).
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover
        return db
    if monkey.is_module_patched("threading"):
        from gevent.local import local

        class GreenletConnectionState(pw._ConnectionState, local):
            pass

        db._state = GreenletConnectionState()
    return db


def make_database(url: str) -> pw.Database:
    """A pooled peewee database for a `sqlite:///path` or `postgresql://…` URL."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    params = parseresult_to_dict(parsed)
    name = params.pop("database")
    pool = {"max_connections": int(os.environ.get("ONEKEYLLM_DB_POOL_SIZE", "32")),
            "stale_timeout": 300, "timeout": 30}
    if scheme == "sqlite":
        if parsed.netloc and parsed.netloc != "":  # sqlite://relative is a common typo for sqlite:///relative
            name = parsed.netloc + ("/" + name if name else "")
        return _one_connection_per_greenlet(PooledSqliteDatabase(name or ":memory:", pragmas=SQLITE_PRAGMAS,
                                                                 check_same_thread=False, **pool, **params))
    if scheme in ("postgres", "postgresql"):
        _make_green_if_gevent()
        params.setdefault("connect_timeout", 10)
        return _one_connection_per_greenlet(PooledPostgresqlDatabase(name, autorollback=True, **pool, **params))
    raise ValueError(f"unsupported database URL scheme {parsed.scheme!r} (use sqlite:/// or postgresql://)")


def init_database(url: str) -> pw.Database:
    """Bind the proxy to the database at `url` (once per process) and return it."""
    db = make_database(url)
    database.initialize(db)
    return db


def is_postgres() -> bool:
    return isinstance(database.obj, pw.PostgresqlDatabase)


def open_connection() -> None:
    """Check a connection out of the pool for this request (or greenlet)."""
    database.connect(reuse_if_open=True)


def close_connection(exc: BaseException | None = None) -> None:
    """Return this request's connection to the pool."""
    if not database.is_closed():
        database.close()


@contextmanager
def connected():
    """A connection for the block: the open one if there is one, else one from the pool, returned after."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        yield database
    finally:
        if opened and not database.is_closed():
            database.close()
