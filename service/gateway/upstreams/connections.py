"""Upstream connections: urllib3 opens them, the standard library's http.client reads the answers.

A pool per account keeps idle keep-alive connections. A request is one send, its head and body together,
written on a connection urllib3 made (`urllib3.connection.HTTPConnection` / `HTTPSConnection`: name
resolution, connect timeout, TLS and its checks, and the errors the gateway maps); the answer's status line,
headers and body are read by `http.client.HTTPResponse`, which keeps HTTP/1.1's rules (chunked or
`Content-Length` bodies, `Connection: close`, HTTP/1.0). This is what urllib3's `urlopen` does too, less
its general machinery (a `Retry` and a `Timeout` per call, header validation per header, the response
wrapper, its header dictionary): 225 → 146 µs of CPU per upstream call on the bench machine (bench/README.md).
A chunked stream is decoded by chunked.py; a compressed body still gets urllib3's response (its decoders).

- A pooled connection is checked before it is reused: a server that closed it while idle made it readable
  (EOF). The check is one native `poll` with no timeout: under gevent's monkey-patching `select.poll` is an
  emulation that goes round the event loop even for a zero timeout (17 µs against 1 µs). A zero-timeout
  poll never blocks, so the native one is safe in a greenlet.
- A body up to COALESCE_LIMIT leaves in the same send as the head: on loopback each send costs the
  receiver's TCP work too, and two sends wake the upstream twice. A larger one is not copied onto it.
"""
from __future__ import annotations

import http.client
import re
import select
from typing import Optional

from urllib3.connection import HTTPConnection, HTTPSConnection

try:
    from gevent import monkey

    native_poll = monkey.get_original("select", "poll")
except ImportError:  # pragma: no cover - no gevent: select.poll is the native one
    native_poll = select.poll

READABLE = select.POLLIN  # an error or a hang-up is reported whatever is asked
COALESCE_LIMIT = 64 * 1024  # a body up to this size is sent with the head
MAX_IDLE = 256  # idle connections kept per pool
DEFAULT_PORTS = {"http": 80, "https": 443}
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")


def readable_now(sock) -> bool:
    """Whether `sock` has something to read (or an error or hang-up to report) right now."""
    poller = native_poll()
    poller.register(sock, READABLE)
    return bool(poller.poll(0))


def header_lines(headers: dict) -> bytes:
    """`name: value\\r\\n` lines of `headers` (names and values as http.client encodes them); ValueError for a
    name that is no token or a value with a line break or NUL, which could smuggle another header in."""
    lines = []
    for name, value in headers.items():
        name_bytes = name.encode("ascii") if isinstance(name, str) else bytes(name)
        value_bytes = str(value).encode("latin-1") if not isinstance(value, bytes) else value
        if not _FIELD_NAME.match(name_bytes):
            raise ValueError(f"Invalid header name {name!r}")
        if _BAD_VALUE.search(value_bytes):
            raise ValueError(f"Invalid header value for {name!r}")
        lines.append(name_bytes + b": " + value_bytes + b"\r\n")
    return b"".join(lines)


class Pool:
    """Idle keep-alive connections to one origin; new ones opened by urllib3's connection classes."""

    def __init__(self, scheme: str, host: str, port: Optional[int], tls: Optional[dict] = None):
        self.scheme = scheme
        self.host = host.strip("[]")
        self.port = port or DEFAULT_PORTS[scheme]
        self.connection_class = HTTPSConnection if scheme == "https" else HTTPConnection
        self.tls = tls or {}
        literal = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = literal if self.port == DEFAULT_PORTS[scheme] else f"{literal}:{self.port}"
        self._idle: list = []
        self.closed = False

    def connection(self, connect_timeout: float):
        """An idle connection still open, or a new one, connected (urllib3's connect errors raise)."""
        while self._idle:
            conn = self._idle.pop()
            if conn.sock is not None and not readable_now(conn.sock):
                return conn
            conn.close()  # the server closed it meanwhile (or sent what nobody asked for)
        conn = self.connection_class(self.host, self.port, timeout=connect_timeout, **self.tls)
        conn.connect()
        return conn

    def put(self, conn) -> None:
        """Back to the idle ones if it is still open and there is room; closed otherwise."""
        if conn.sock is None or self.closed or len(self._idle) >= MAX_IDLE:
            conn.close()
        else:
            self._idle.append(conn)

    _put_conn = put  # the name urllib3's response gives a connection back by (`release_conn`)

    def close(self) -> None:
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def send(conn, method: str, target: str, head_lines: bytes, body: Optional[bytes], read_timeout: float,
         host_header: str) -> http.client.HTTPResponse:
    """Write one request on `conn` and read its answer's head; the body is left to read."""
    head = [f"{method} {target} HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1"), head_lines]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        head.append(b"Content-Length: %d\r\n" % len(body or b""))
    head.append(b"\r\n")
    data = b"".join(head)
    sock = conn.sock
    sock.settimeout(read_timeout)
    if body and len(body) > COALESCE_LIMIT:
        sock.sendall(data)
        sock.sendall(body)
    else:
        sock.sendall(data + body if body else data)
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
    except BaseException:
        response.close()  # its reader holds the socket open: closing the connection alone would not
        raise
    return response
