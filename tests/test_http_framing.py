"""The HTTP edge on raw sockets, in both documented serving modes (`onekeyllm serve` and gunicorn): ambiguous
framing is refused with 400 and the connection closed (no request smuggling), slow clients are cut off by the
header and body read timeouts, and an unknown key is refused before its large body is read."""
from __future__ import annotations

import json
import re
import socket
import sys
import time

import pytest
from conftest import free_port, run_script, start_server

TIMEOUT = 1.0  # ONEKEYLLM_HEADER_TIMEOUT and ONEKEYLLM_BODY_TIMEOUT of the servers under test
PATIENCE = 8.0  # how long a test waits before it calls a connection "held open"
PING = b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n"
CHAT = json.dumps({"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def server(request, tmp_path_factory):
    extra = {"ONEKEYLLM_HEADER_TIMEOUT": str(TIMEOUT), "ONEKEYLLM_BODY_TIMEOUT": str(TIMEOUT)}
    command, port = None, free_port()
    if request.param == "gunicorn":
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        extra.update({"ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": "1"})
    running = start_server(tmp_path_factory.mktemp("framing"), name=request.param, command=command, port=port,
                           extra_env=extra)
    running.port = port
    yield running
    running.stop()


def exchange(port: int, *pieces: bytes, pause: float = 0.0, patience: float = PATIENCE) -> tuple[bytes, bool, float]:
    """Send `pieces` (`pause` seconds apart) and read until the server closes or `patience` runs out:
    what came back, whether the server closed the connection, and when that was (seconds after connecting)."""
    started = time.monotonic()
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=patience) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # the server already closed: what it said is still to be read
                break
            time.sleep(pause)
        deadline = started + patience + len(pieces) * pause
        while True:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return received, False, time.monotonic() - started
            except ConnectionResetError:
                return received, True, time.monotonic() - started
            if not data:
                return received, True, time.monotonic() - started
            received += data


def statuses(received: bytes) -> list[int]:
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", received)]


def test_content_length_beside_chunked_is_refused_and_the_hidden_request_never_served(server):
    hidden = b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
    smuggled = (b"POST /v1/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\n" + hidden)
    received, closed, _ = exchange(server.port, smuggled)
    assert statuses(received) == [400] and closed, received


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nContent-Length: 64\r\n",
    b"Content-Length: +64\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 0x10\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding:\r\n chunked\r\n",
    b"Content-Length : 64\r\n",
    b"X-Padding: y\r\n Content-Length: 64\r\n",
    b"".join(b"X-Many-%d: y\r\n" % i for i in range(120)) + b"Content-Length: 64\r\n",
])
def test_ambiguous_body_framing_is_refused_with_400_and_closed(server, headers):
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + b"x" * 64 + PING
    received, closed, _ = exchange(server.port, request)
    assert statuses(received) == [400] and closed, received
    assert "Traceback" not in server.log_text()


def test_plain_framing_still_serves_keep_alive_chunked_and_multipart_bodies(server):
    key = server.create_key(name="framing")["key"].encode()
    auth = b"Authorization: Bearer " + key + b"\r\n"
    by_length = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT)
    chunked = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               + f"{len(CHAT):x}\r\n".encode() + CHAT + b"\r\n0\r\n\r\n")
    received, closed, _ = exchange(server.port, PING + by_length + chunked)
    assert statuses(received) == [200, 200, 200] and closed, received
    assert received.count(b"Echo: hi") == 2
    form = b"--b0\r\nContent-Disposition: form-data; name=model\r\n\r\necho-1\r\n--b0--\r\n"
    multipart = (b"POST /v1/responses HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Type: multipart/form-data; boundary=b0"
                 b"\r\nConnection: close\r\nContent-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form)
    received, _, _ = exchange(server.port, multipart)
    assert statuses(received) == [400] and b"invalid_request_error" in received, received  # the app's own 400


def test_half_sent_headers_are_cut_off_at_the_header_timeout(server):
    received, closed, elapsed = exchange(server.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    assert closed and elapsed < TIMEOUT + 3, (received, elapsed)


def test_headers_trickled_line_by_line_are_cut_off_at_the_header_timeout(server):
    lines = [b"GET /v1/ping HTTP/1.1\r\n"] + [f"X-Slow-{i}: y\r\n".encode() for i in range(12)]
    received, closed, elapsed = exchange(server.port, *lines, pause=0.4)
    assert closed and statuses(received) in ([], [408]), received
    assert elapsed < TIMEOUT + 3 + 0.4, elapsed  # well before the last line would have been sent (4.8 s)


def test_an_idle_kept_alive_connection_is_closed_at_the_header_timeout(server):
    received, closed, elapsed = exchange(server.port, PING)
    assert statuses(received) == [200] and closed and elapsed < TIMEOUT + 3, (received, elapsed)


def test_half_sent_body_is_cut_off_at_the_body_timeout(server):
    key = server.create_key(name="slow-body")["key"].encode()
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\r\n"
               b"Content-Type: application/json\r\nContent-Length: " + str(len(CHAT)).encode() + b"\r\n\r\n")
    received, closed, elapsed = exchange(server.port, request + CHAT[:10])
    assert closed and elapsed < TIMEOUT + 3, (received, elapsed)
    assert all(status < 500 for status in statuses(received)), received


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages",
                                  "/v1/messages/count_tokens"])
def test_an_unknown_key_is_refused_before_its_withheld_large_body(server, path):
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-lazytech-madeup0123456789\r\n"
               "x-api-key: sk-lazytech-madeup0123456789\r\nContent-Type: application/json\r\n"
               f"Content-Length: {31 * 1024 * 1024}\r\n\r\n").encode() + b'{"model": "echo-1", "messages": ['
    received, closed, elapsed = exchange(server.port, request, patience=TIMEOUT + 4)
    assert statuses(received) == [401], (received, elapsed)
    assert closed  # the body is not read after the answer either


def test_a_revoked_key_is_refused_before_its_withheld_large_body(server):
    created = server.create_key(name="revoked")
    assert server.admin("DELETE", f"/keys/{created['id']}").status_code in (200, 204)
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               + created["key"].encode() + b"\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"model\": \"echo-")
    received, closed, _ = exchange(server.port, request, patience=TIMEOUT + 4)
    assert statuses(received) == [401] and closed, received


ANSWER_SENDS_SCRIPT = r"""
from gevent import monkey
monkey.patch_all()
import http.client, json, gevent
from gevent import pywsgi
from service.http.wsgi_server import COALESCE_LIMIT, strict_handler

sends = []

class Noted:
    def __init__(self, sock): self._sock = sock
    def sendall(self, data):
        sends.append(len(data))
        return self._sock.sendall(data)
    def __getattr__(self, name): return getattr(self._sock, name)

class Handler(strict_handler(pywsgi.WSGIHandler, 5, 5)):
    def handle_one_request(self):
        if not isinstance(self.socket, Noted):
            self.socket = Noted(self.socket)
        return super().handle_one_request()

BIG = b"z" * (COALESCE_LIMIT + 1)

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/small":
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "7")])
        return [b'{"a":1}']
    if path == "/big":
        start_response("200 OK", [("Content-Length", str(len(BIG)))])
        return [BIG]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    return iter([b"data: 1\n\n", b"data: 2\n\n"])

server = pywsgi.WSGIServer(("127.0.0.1", 0), app, handler_class=Handler, log=None)
server.start()
client = http.client.HTTPConnection("127.0.0.1", server.server_port)
seen = {}
for path in ("/small", "/big", "/empty", "/stream"):
    sends.clear()
    client.request("GET", path)
    answer = client.getresponse()
    body = answer.read()
    seen[path] = [answer.status, len(body), list(sends)]
print(json.dumps(seen))
"""


def test_an_answer_head_leaves_with_the_first_piece_of_its_body():
    """pywsgi sends an answer's status line and headers apart from its body; ours sends them together when
    the first piece is small (wsgi_server.StrictFraming._write_with_headers): one send per small answer."""
    seen = json.loads(run_script(ANSWER_SENDS_SCRIPT))
    status, length, sends = seen["/small"]
    assert (status, length, len(sends)) == (200, 7, 1)
    status, length, sends = seen["/big"]
    assert status == 200 and length == sends[-1] and len(sends) == 2, "a large body is not copied onto the head"
    status, length, sends = seen["/empty"]
    assert (status, length, len(sends)) == (204, 0, 1)
    status, length, sends = seen["/stream"]
    assert status == 200 and length == 18 and len(sends) == 3, "head + first chunk, second chunk, terminator"
