"""Hot queries compiled to SQL once per process, then run with new parameters.

peewee builds a query's SQL from its expression tree on every execution: for
the handful of statements every gateway request runs, that building costs more
than the database work. A `Prepared` query is written as an ordinary peewee
expression; its first run compiles it and keeps the SQL only if the compiled
parameters are exactly the arguments, in order — so a query whose parameters
would not line up (a converted value, a repeated one) just keeps being built.
"""
from __future__ import annotations

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
