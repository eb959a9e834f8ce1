"""The upstream connections (gateway/upstreams/connections.py): a request's head leaves with its body's first
piece in one send, every request still arrives whole, and a connection the server closed is seen closed."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3

from service.gateway.upstreams import connections


class Echo(BaseHTTPRequestHandler):
    """Answers each request with its method, its framing and its body; closes after `idle` seconds idle."""

    protocol_version = "HTTP/1.1"
    idle = 0.3

    def do_GET(self):  # noqa: N802
        self.answer(b"")

    def do_POST(self):  # noqa: N802
        if self.headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["content-length"]))
        self.answer(body)

    def answer(self, body: bytes):
        payload = self.command.encode() + b" " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.connection.settimeout(self.idle)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


class Sends:
    """A real socket that notes what each sendall gave it."""

    def __init__(self, sock: socket.socket, sent: list):
        self._sock, self._sent = sock, sent

    def sendall(self, data):
        self._sent.append(bytes(data))
        return self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def pool_noting_sends(port: int, sent: list):
    class Noted(connections.Connection):
        def connect(self):
            super().connect()
            self.sock = Sends(self.sock, sent)

    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False)
    connections.use_lean_connections(pool)
    assert pool.ConnectionCls is connections.Connection
    pool.ConnectionCls = Noted
    return pool


@pytest.mark.parametrize("body, sends", [
    (b'{"model": "m"}', 1),
    (b"x" * connections.COALESCE_LIMIT, 1),
    (b"y" * (connections.COALESCE_LIMIT + 1), 2),  # a large body is not copied onto the head
])
def test_a_request_leaves_in_one_send_with_its_head(echo, body, sends):
    sent: list = []
    answer = pool_noting_sends(echo, sent).urlopen("POST", "/v1/chat/completions", body=body,
                                                   headers={"Content-Type": "application/json"})
    assert answer.status == 200 and answer.data == b"POST " + body
    assert len(sent) == sends
    assert sent[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"".join(sent).endswith(b"\r\n\r\n" + body)


def test_requests_without_a_body_and_chunked_ones_arrive_whole(echo):
    sent: list = []
    pool = pool_noting_sends(echo, sent)
    assert pool.urlopen("GET", "/v1/models").data == b"GET "
    assert len(sent) == 1 and sent[0].startswith(b"GET /v1/models HTTP/1.1\r\n")
    sent.clear()
    answer = pool.urlopen("POST", "/upload", body=iter([b"abc", b"def"]), chunked=True)
    assert answer.data == b"POST abcdef"
    assert sent[0].endswith(b"\r\n\r\n3\r\nabc\r\n"), "the head and the first chunk together"
    assert len(sent) == 3  # the other chunk and the terminator as urllib3 sends them


def test_a_connection_the_server_closed_while_idle_is_seen_closed_and_replaced(echo):
    pool = urllib3.HTTPConnectionPool("127.0.0.1", echo, retries=False, maxsize=1)
    connections.use_lean_connections(pool)
    assert pool.urlopen("POST", "/a", body=b"1").data == b"POST 1"
    conn = pool.pool.queue[-1]
    assert conn.is_connected, "an open idle connection"
    time.sleep(Echo.idle + 0.3)
    assert not conn.is_connected, "the server closed it"
    assert pool.urlopen("POST", "/b", body=b"2").data == b"POST 2"  # on a new connection, not the dead one
