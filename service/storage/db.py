"""The database proxy: bound once from ONEKEYLLM_DATABASE_URL, pooled, gevent-friendly."""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Optional
from urllib.parse import urlparse

import peewee as pw
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase


class _Proxy(pw.DatabaseProxy):
    """peewee's DatabaseProxy, with the bound database's names found on the class. A name the proxy does
    not have costs an AttributeError, its message formatted, before `__getattr__` forwards it: 32 of them a
    gateway call, 2.5 % of its instructions (bench/README.md)."""


def _forwarded(name: str) -> property:
    def bound(proxy: _Proxy):
        if proxy.obj is None:
            raise AttributeError("Cannot use uninitialized Proxy.")
        return getattr(proxy.obj, name)

    return property(bound)


# every name of peewee's databases the proxy does not answer itself (its `atomic`, `obj`, … stay its own)
for _name in {name for kind in (pw.SqliteDatabase, pw.PostgresqlDatabase) for name in dir(kind)
              if not name.startswith("__") and not hasattr(pw.DatabaseProxy, name)}:
    setattr(_Proxy, _name, _forwarded(_name))

database = _Proxy()
log = logging.getLogger("onekeyllm.db")

SQLITE_PRAGMAS = {
    # a new file's pages (an existing one keeps its own): a call's two commits write ~21 pages of WAL, each a
    # few rows' change; at 1 KiB instead of 4 KiB they and their checkpoint cost a third less (bench/README.md)
    "page_size": 1024,
    "journal_mode": "wal",  # readers never wait for the writer
    "busy_timeout": 15000,  # several workers share one file
    "synchronous": "normal",  # durable across process crashes in WAL mode
    "foreign_keys": 0,
}


BUSY_WAIT_SECONDS = 15.0  # how long a write waits for another process's write lock


def gevent_patched() -> bool:
    """Whether sockets are gevent's (its monkey-patching): a wait then yields to the process's other requests."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover
        return False
    return monkey.is_module_patched("socket")


def _while_busy(action):
    """Run `action`, again while SQLite says another connection holds the write lock, yielding meanwhile."""
    import gevent

    deadline, delay = None, 0.0005
    while True:
        try:
            return action()
        except pw.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            now = time.monotonic()
            deadline = deadline or now + BUSY_WAIT_SECONDS
            if now >= deadline:
                raise
            gevent.sleep(delay)
            delay = min(delay * 2, 0.01)


class GreenSqliteDatabase(PooledSqliteDatabase):
    """SQLite in a gevent worker: a write lock held elsewhere is waited for by yielding to the worker's other
    requests (SQLite's own busy handler sleeps in C and would stall them all).

    Transactions begin IMMEDIATE (the write lock is taken at BEGIN, where waiting and trying again is safe;
    inside a transaction nothing can be refused for the lock), and statements outside a transaction are tried
    again as a whole: a refused one changed nothing.
    """

    def begin(self, lock_type=None):
        _while_busy(lambda: PooledSqliteDatabase.begin(self, lock_type))

    def execute_sql(self, sql, params=None):
        if self.in_transaction():
            return PooledSqliteDatabase.execute_sql(self, sql, params)
        return _while_busy(lambda: PooledSqliteDatabase.execute_sql(self, sql, params))


PROBE_IDLE_SECONDS = 5.0  # a pooled PostgreSQL connection idle this long is probed before it is handed out


class PooledPostgres(PooledPostgresqlDatabase):
    """PostgreSQL's pool, probing a connection at check-out only once it sat idle for PROBE_IDLE_SECONDS.

    peewee's pool runs `SELECT 1` on every check-out, to find a connection the server dropped while it was
    idle. A gateway call checks one out twice (grant, settlement): the probes were two of its four round
    trips (bench/README.md). A connection given back moments ago was healthy then — its check-in verified that
    no transaction was left open — and one that died since fails its first statement like any dropped one.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._returned: dict = {}  # connection key -> when it was last given back (monotonic)

    def _is_closed(self, conn):
        if conn.closed:
            return True
        returned = self._returned.get(self.conn_key(conn))
        if (returned is not None and time.monotonic() - returned < PROBE_IDLE_SECONDS
                and self._adapter.txn_status(conn) == self._adapter.txn_idle):
            return False
        return super()._is_closed(conn)

    def _close(self, conn, close_conn=False):
        super()._close(conn, close_conn)
        if close_conn:
            self._returned.pop(self.conn_key(conn), None)
        else:
            self._returned[self.conn_key(conn)] = time.monotonic()

    def _close_raw(self, conn):
        self._returned.pop(self.conn_key(conn), None)
        super()._close_raw(conn)


CHECKPOINT_SECONDS = 1.0
WAL_AUTOCHECKPOINT_FALLBACK = 10000  # pages: a commit checkpoints only if the checkpointer fell far behind


class Checkpointer:
    """Checkpoints a SQLite WAL every second in a native thread, so that no request's commit does it.

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages of WAL: that commit, and
    under gevent every request of the worker, waits for the checkpoint's writes and fsync (it doubled the
    p99 of a call, bench/README.md). A PASSIVE checkpoint never waits for readers or writers.
    """

    def __init__(self) -> None:
        self.path: Optional[str] = None
        self.runs = 0  # checkpoints done, for diagnostics
        self.stopped = False

    def start(self, path: str) -> None:
        if self.path is not None or path == ":memory:":
            return
        import gevent

        self.path = path
        gevent.spawn(self._loop)

    def _loop(self) -> None:
        import sqlite3

        import gevent

        pool = gevent.get_hub().threadpool
        connection = None
        while not self.stopped:
            gevent.sleep(CHECKPOINT_SECONDS)
            if self.stopped:
                break
            try:
                if connection is None:
                    connection = pool.apply(sqlite3.connect, (self.path,), {"check_same_thread": False,
                                                                            "isolation_level": None})
                pool.apply(connection.execute, ("PRAGMA wal_checkpoint(PASSIVE)",))
                self.runs += 1
            except Exception:  # noqa: BLE001 - the commits' own checkpoints still bound the WAL
                log.warning("could not checkpoint the SQLite WAL", exc_info=True)
                connection = None
        if connection is not None:
            pool.apply(connection.close)

    def stop(self) -> None:
        """Checkpoint no more (a stopping process): its thread is left with nothing to wait for."""
        self.stopped = True


CHECKPOINTER = Checkpointer()


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
        green = gevent_patched()
        pragmas = SQLITE_PRAGMAS
        if green:  # _while_busy waits for locks; the checkpointer thread checkpoints the WAL
            pragmas = {**SQLITE_PRAGMAS, "busy_timeout": 0, "wal_autocheckpoint": WAL_AUTOCHECKPOINT_FALLBACK}
            CHECKPOINTER.start(name or ":memory:")
        kind = GreenSqliteDatabase if green else PooledSqliteDatabase
        return _one_connection_per_greenlet(kind(name or ":memory:", pragmas=pragmas, lock_type="IMMEDIATE",
                                                 check_same_thread=False, **pool, **params))
    if scheme in ("postgres", "postgresql"):
        _make_green_if_gevent()
        params.setdefault("connect_timeout", 10)
        return _one_connection_per_greenlet(PooledPostgres(name, autorollback=True, **pool, **params))
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
    """A connection for the block: the open one if there is one, else one from the pool — taken at the block's
    first statement (peewee connects on first use), so that a block that runs none takes none (a settlement
    another request writes in its group commit, storage/group_commit.py) — and returned after."""
    had_one = not database.is_closed()
    try:
        yield database
    finally:
        if not had_one and not database.is_closed():
            database.close()


def check_database() -> None:
    """Raise unless the database answers now: a `SELECT 1` on PostgreSQL; on SQLite a fresh read-only look at
    the file (a pooled connection would answer from the file it opened, even once that is gone)."""
    db = database.obj
    if isinstance(db, pw.SqliteDatabase) and db.database != ":memory:":
        import sqlite3
        from urllib.parse import quote

        probe = sqlite3.connect(f"file:{quote(db.database)}?mode=ro", uri=True, timeout=1)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
        return
    with connected():
        database.execute_sql("SELECT 1")
