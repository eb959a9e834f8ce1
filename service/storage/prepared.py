"""Hot queries compiled to SQL once per process, then run with new parameters.

peewee builds a query's SQL from its expression tree on every execution: for
the handful of statements every gateway request runs, that building costs more
than the database work. A `Prepared` query is written as an ordinary peewee
expression; its first run compiles it and keeps the SQL only if the compiled
parameters are exactly the arguments, in order — so a query whose parameters
would not line up (a converted value, a repeated one) just keeps being built.
"""
from __future__ import annotations

import itertools
import re
import weakref
from typing import Callable

import peewee as pw

from .db import database


class Prepared:
    """A peewee query built by `build(*args)`, compiled once per database and reused."""

    def __init__(self, build: Callable[..., pw.Query]):
        self._build = build
        self._compiled: dict = {}  # id of the bound database -> SQL

    def sql(self, args: tuple) -> tuple[str, tuple]:
        """The SQL and parameters for `args`."""
        compiled = self._compiled.get(id(database.obj))
        if compiled is not None:
            return compiled, args
        sql, params = self._build(*args).sql()
        if tuple(params) == tuple(args):
            self._compiled[id(database.obj)] = sql
        return sql, tuple(params)

    def execute(self, *args):
        """Run it; the DB-API cursor."""
        sql, params = self.sql(args)
        return database.execute_sql(sql, params)

    def run_many(self, rows: list) -> None:
        """Run a write once for each tuple of arguments: in one call into the driver once it is compiled for
        arguments that are its parameters as they are (else one statement each)."""
        rows = list(rows)
        while rows and id(database.obj) not in self._compiled:
            self.execute(*rows.pop(0))
        if rows:
            database.cursor().executemany(self._compiled[id(database.obj)], rows)

    def rowcount(self, *args) -> int:
        """Run a write; how many rows it changed."""
        return self.execute(*args).rowcount

    def scalar(self, *args):
        """Run a one-value query; the value, or None without a row."""
        row = self.execute(*args).fetchone()
        return row[0] if row else None

    def first(self, model: type, *args):
        """Run a `model.select()` query; the first row as a model instance, or None."""
        sql, params = self.sql(args)
        for row in model.raw(sql, *params):
            return row
        return None


STALE_PREPARED = ("26000", "0A000")  # unknown prepared statement; "cached plan must not change result type"
DUPLICATE_PREPARED = "42P05"


class ServerPrepared:
    """A PostgreSQL statement prepared on the server once per connection (PREPARE), then run by EXECUTE.

    The server then parses and plans it once per connection instead of at every run: for the grant and
    the settlement, which every gateway call runs, that halves the database's CPU per statement
    (bench/README.md). `sql` is written with psycopg2's `%s` placeholders; parameter types are inferred
    by the server from where they are used.
    """

    _names = itertools.count(1)
    # off behind a pooler that hands each transaction another server connection (PgBouncer's transaction
    # mode): a statement prepared on one would be unknown on the next (Settings.pg_prepared, set by the app)
    enabled = True

    def __init__(self, sql: str):
        self.sql = sql
        self.name = f"okl_{next(self._names)}"
        numbers = itertools.count(1)
        self._prepare = f"PREPARE {self.name} AS " + re.sub(r"%s", lambda _: f"${next(numbers)}", sql)
        self._execute = f"EXECUTE {self.name} (" + ", ".join(["%s"] * sql.count("%s")) + ")"
        self._on: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # connection -> its backend pid

    def run(self, action: Callable[[str], object]):
        """`action(EXECUTE statement)`, once the statement is prepared on this greenlet's connection.

        Prepared again (once) if the server has lost it or a schema change outdated it.
        """
        if not self.enabled:
            return action(self.sql)
        connection = database.connection()
        pid = connection.info.backend_pid
        if self._on.get(connection) != pid:
            self._prepare_on(connection, pid)
        try:
            return action(self._execute)
        except pw.DatabaseError as error:
            if getattr(getattr(error, "orig", None), "pgcode", None) not in STALE_PREPARED:
                raise
        self._prepare_on(connection, pid)
        return action(self._execute)

    def _prepare_on(self, connection, pid: int) -> None:
        """PREPARE on this connection (DEALLOCATE first where it has one already, e.g. outdated)."""
        self._on.pop(connection, None)
        try:
            database.execute_sql(self._prepare)
        except pw.DatabaseError as error:
            if getattr(getattr(error, "orig", None), "pgcode", None) != DUPLICATE_PREPARED:
                raise
            database.execute_sql(f"DEALLOCATE {self.name}")
            database.execute_sql(self._prepare)
        self._on[connection] = pid

    def execute(self, *params):
        """Run it; the DB-API cursor."""
        return self.run(lambda sql: database.execute_sql(sql, params))


_CONVERTERS: dict = {}  # (model, column names) -> (per column: field name or None, converter or None)


def _converters(model: type, names: tuple) -> tuple:
    fields, converters = [], []
    for name in names:
        field = model._meta.columns.get(name)
        converts = field is not None and (isinstance(field, pw.BooleanField)
                                          or type(field).python_value is not pw.Field.python_value)
        fields.append(field.name if field is not None else None)
        converters.append(field.python_value if converts else None)
    return tuple(zip(names, fields, converters))


def model_rows(model: type, cursor) -> list:
    """A cursor's rows as `model` instances, as `model.raw` makes them (columns that are no field become
    attributes), with the conversions resolved once per model and column list rather than once per query,
    and each instance filled directly rather than field by field through its setters."""
    names = tuple(column[0] for column in cursor.description)
    columns = _CONVERTERS.get((model, names))
    if columns is None:
        columns = _CONVERTERS[(model, names)] = _converters(model, names)
    rows = []
    for values in cursor.fetchall():
        row = model.__new__(model)
        data, extra = {}, row.__dict__
        for (name, field, convert), value in zip(columns, values):
            if convert is not None and value is not None:
                value = convert(value)
            if field is None:
                extra[name] = value
            else:
                data[field] = value
        row.__data__, row._dirty, row.__rel__ = data, set(), {}
        rows.append(row)
    return rows
