"""Opening the database for a command: which one it is (said on stderr), and one line when it cannot be opened.

A command that must not create a database (the admin CLI) refuses a SQLite file that does not exist and a
database without the schema, rather than silently making an empty one in whatever folder it runs in.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import urlparse

DATABASE_ENV = "ONEKEYLLM_DATABASE_URL"


class DatabaseUnavailable(Exception):
    """The database cannot be used as asked; the message is one line for an operator, `status` an exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def shown_url(url: str) -> str:
    """A database URL as it may be printed: the password hidden, a SQLite path made absolute."""
    parsed = urlparse(url)
    if parsed.scheme.startswith("sqlite"):
        path = sqlite_path(url)
        return f"sqlite:///{os.path.abspath(path)}" if path and path != ":memory:" else url
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return url


def sqlite_path(url: str) -> Optional[str]:
    """The file of a SQLite URL as peewee's db_url reads it (`sqlite:///rel.db`, `sqlite:////abs.db`)."""
    parsed = urlparse(url)
    return parsed.path[1:] if parsed.scheme.startswith("sqlite") else None


def database_problem(error: Exception, url: str) -> str:
    """One line saying why the database at `url` could not be opened, and what to do about it."""
    text = str(error).strip()
    detail = text.split("FATAL:")[-1].strip().splitlines()[0] if text else type(error).__name__
    line = f"cannot open the database {shown_url(url)}: {detail}"
    parsed = urlparse(url)
    if parsed.scheme.startswith("postgres") and "does not exist" in detail:
        name = parsed.path.lstrip("/")
        line += (f"; create it first: createdb -h {parsed.hostname or 'localhost'} -p {parsed.port or 5432}"
                 f" -U {parsed.username or 'postgres'} {name} (or CREATE DATABASE \"{name}\"; in psql)")
    return line


def announce_database(url: str) -> None:
    """Say on stderr which database this command works on (stdout stays the command's answer)."""
    origin = DATABASE_ENV if os.environ.get(DATABASE_ENV) else f"default, {DATABASE_ENV} unset"
    print(f"onekeyllm: database {shown_url(url)} ({origin})", file=sys.stderr, flush=True)


def _refuse_missing(url: str) -> None:
    path = sqlite_path(url)
    if path and path != ":memory:" and not os.path.exists(path):
        where = os.path.abspath(path)
        raise DatabaseUnavailable(
            f"no database at {where}: run this where the server runs, or point {DATABASE_ENV} (or --database-url) "
            f"at the server's database, e.g. sqlite:////srv/onekeyllm/onekeyllm.db; `onekeyllm init` creates a new "
            f"one here", status=2)


@contextmanager
def problems_in_one_line(url: str) -> Iterator[None]:
    """Turn the database driver's failure to connect (inside the block) into DatabaseUnavailable."""
    import peewee as pw  # here, not at the top: `serve` imports this module before gevent patches sockets

    try:
        yield
    except (pw.OperationalError, pw.InterfaceError) as error:
        raise DatabaseUnavailable(database_problem(error, url)) from None


def open_database(url: str, *, create: bool) -> None:
    """Say which database this is and bind it; `create` False refuses one that does not exist or has no schema."""
    from .db import connected, init_database
    from .migrations import schema_version

    announce_database(url)
    if not create:
        _refuse_missing(url)
    with problems_in_one_line(url):
        init_database(url)
        if not create:
            with connected():
                if schema_version() == 0:
                    raise DatabaseUnavailable(
                        f"the database {shown_url(url)} has no OneKeyLLM schema: point {DATABASE_ENV} at the "
                        f"server's database, or run `onekeyllm init` to create one", status=2)
