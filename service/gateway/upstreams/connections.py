"""urllib3 connections that cost fewer system calls per upstream call, with urllib3's behaviour unchanged.

- The check for a dropped idle connection is one native `poll` with no timeout. Before it reuses a pooled
  connection urllib3 asks whether the server closed it meanwhile: a zero-timeout poll of the socket. Under
  gevent's monkey-patching `select.poll` is gevent's emulation, which sets up watchers and goes round the
  event loop even for a zero timeout: 17 µs against 1 µs for the system call (bench/README.md). A
  zero-timeout poll never blocks, so the native one is safe in a greenlet.
- The request's head leaves in one send with the body's first piece. urllib3 sends them apart: on loopback
  each send costs the receiver's TCP work too, and two sends wake the upstream twice.
"""
from __future__ import annotations

import select
from typing import Optional

from urllib3.connection import HTTPConnection, HTTPSConnection

try:
    from gevent import monkey

    native_poll = monkey.get_original("select", "poll")
except ImportError:  # pragma: no cover - no gevent: select.poll is the native one
    native_poll = select.poll

READABLE = select.POLLIN  # an error or a hang-up is reported whatever is asked
COALESCE_LIMIT = 64 * 1024  # a first body piece up to this size is sent with the head


def readable_now(sock) -> bool:
    """Whether `sock` has something to read (or an error or hang-up to report) right now."""
    poller = native_poll()
    poller.register(sock, READABLE)
    return bool(poller.poll(0))


class _Lean:
    _head: Optional[bytes] = None  # the request's head, held for the body's first piece
    _holding = False

    @property
    def is_connected(self) -> bool:
        # urllib3's own test: connected while nothing is readable on an idle connection (a server that
        # closed it makes it readable: EOF)
        return self.sock is not None and not readable_now(self.sock)

    def endheaders(self, message_body=None, *, encode_chunked=False):
        self._holding = True  # http.client sends the head from here: the next send is held (send below)
        try:
            super().endheaders(message_body, encode_chunked=encode_chunked)
        except BaseException:
            self._holding, self._head = False, None
            raise

    def send(self, data):
        if self._holding:
            self._holding = False
            if isinstance(data, (bytes, bytearray)):
                self._head = bytes(data)
                return
        head, self._head = self._head, None
        if head is not None:
            if isinstance(data, (bytes, bytearray)) and len(data) <= COALESCE_LIMIT:
                data = head + data
            else:
                super().send(head)
        super().send(data)

    def getresponse(self):
        head, self._head, self._holding = self._head, None, False
        if head is not None:  # a request without a body: its head alone
            super().send(head)
        return super().getresponse()

    def close(self):
        self._head, self._holding = None, False
        super().close()


class Connection(_Lean, HTTPConnection):
    pass


class TlsConnection(_Lean, HTTPSConnection):
    pass


def use_lean_connections(pool) -> None:
    """Make `pool` (urllib3's HTTP or HTTPS pool) open connections of these classes."""
    pool.ConnectionCls = TlsConnection if issubclass(pool.ConnectionCls, HTTPSConnection) else Connection
