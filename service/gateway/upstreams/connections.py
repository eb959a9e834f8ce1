"""urllib3 connections whose check for a dropped idle connection is one native `poll` with no timeout.

Before it reuses a pooled connection urllib3 asks whether the server closed it meanwhile: a zero-timeout
`poll` of the socket. Under gevent's monkey-patching `select.poll` is gevent's emulation, which sets up
watchers and goes round the event loop even for a zero timeout: 17 µs against 1 µs for the system call
(bench/README.md), once per upstream call. A zero-timeout poll never blocks, so the native one is safe in a
greenlet.
"""
from __future__ import annotations

import select

from urllib3.connection import HTTPConnection, HTTPSConnection

try:
    from gevent import monkey

    native_poll = monkey.get_original("select", "poll")
except ImportError:  # pragma: no cover - no gevent: select.poll is the native one
    native_poll = select.poll

READABLE = select.POLLIN  # an error or a hang-up is reported whatever is asked


def readable_now(sock) -> bool:
    """Whether `sock` has something to read (or an error or hang-up to report) right now."""
    poller = native_poll()
    poller.register(sock, READABLE)
    return bool(poller.poll(0))


class _PolledNatively:
    @property
    def is_connected(self) -> bool:
        # urllib3's own test: connected while nothing is readable on an idle connection (a server that
        # closed it makes it readable: EOF)
        return self.sock is not None and not readable_now(self.sock)


class Connection(_PolledNatively, HTTPConnection):
    pass


class TlsConnection(_PolledNatively, HTTPSConnection):
    pass


def use_native_poll(pool) -> None:
    """Make `pool` (urllib3's HTTP or HTTPS pool) open connections of these classes."""
    pool.ConnectionCls = TlsConnection if issubclass(pool.ConnectionCls, HTTPSConnection) else Connection
