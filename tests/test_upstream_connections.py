"""The upstream transport (gateway/upstreams/connections.py, http.HttpClient) against a real HTTP/1.1 server on
loopback: a request leaves in one send with its head, arrives whole, its answer is read by HTTP's rules
(lengths, chunks, `Connection: close`, HTTP/1.0, compressed bodies), its connection is reused only while it is
open, and no header can smuggle another one in."""
from __future__ import annotations

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.gateway.upstreams import connections
from service.gateway.upstreams.http import HttpClient, Timeouts, UpstreamError


class Echo(BaseHTTPRequestHandler):
    """Answers with its method, path, the headers asked about and the body; closes after `idle` seconds idle.

    `/close` answers with `Connection: close`; `/http10` as HTTP/1.0 without a length; `/gzip` compressed;
    `/chunked` in three chunks; `/status/N` with that status."""

    protocol_version = "HTTP/1.1"
    idle = 0.3

    def do_GET(self):  # noqa: N802
        self.answer(b"")

    def do_POST(self):  # noqa: N802
        self.answer(self.rfile.read(int(self.headers["content-length"])))

    def answer(self, body: bytes):
        echoed = [f"{name}={self.headers.get(name)}" for name in ("x-probe", "accept-encoding", "x-second")]
        payload = f"{self.command} {self.path} {' '.join(echoed)} ".encode() + body
        if self.path == "/http10":
            self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + payload)
            self.close_connection = True
            return
        if self.path.startswith("/status/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
        else:
            self.send_response(200)
        if self.path == "/gzip":
            payload = gzip.compress(payload)
            self.send_header("Content-Encoding", "gzip")
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            third = len(payload) // 3
            for piece in (payload[:third], payload[third:2 * third], payload[2 * third:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            if self.path == "/close":
                self.send_header("Connection", "close")
                self.close_connection = True
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


def client_noting_sends(port: int, sent: list) -> HttpClient:
    client = HttpClient(f"http://127.0.0.1:{port}/v1", {"Content-Type": "application/json"}, Timeouts(5, 5))

    class Noted(client.pool.connection_class):
        def connect(self):
            super().connect()
            self.sock = Sends(self.sock, sent)

    client.pool.connection_class = Noted
    return client


@pytest.mark.parametrize("body, sends", [
    (b'{"model": "m"}', 1),
    (b"x" * connections.COALESCE_LIMIT, 1),
    (b"y" * (connections.COALESCE_LIMIT + 1), 2),  # a large body is not copied onto the head
])
def test_a_request_leaves_in_one_send_with_its_head_and_arrives_whole(echo, body, sends):
    sent: list = []
    answer = client_noting_sends(echo, sent).request("POST", "/chat/completions", body=body)
    data = answer._response.data
    assert data.startswith(b"POST /v1/chat/completions x-probe=None accept-encoding=identity") and data.endswith(body)
    assert len(sent) == sends
    assert sent[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % echo)
    assert b"".join(sent).endswith(b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_a_request_without_a_body_has_no_length_and_extra_headers_go_with_the_accounts(echo):
    sent: list = []
    client = client_noting_sends(echo, sent)
    answer = client.request("GET", "/models", headers={"X-Probe": "1", "x-second": "two words"})
    assert answer._response.data == b"GET /v1/models x-probe=1 accept-encoding=identity x-second=two words "
    assert len(sent) == 1 and b"Content-Length" not in sent[0]
    assert b"\r\nContent-Type: application/json\r\n" in sent[0] and b"\r\nX-Probe: 1\r\n" in sent[0]


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_no_header_value_can_smuggle_another_header_in(echo, value):
    client = HttpClient(f"http://127.0.0.1:{echo}", {}, Timeouts(5, 5))
    with pytest.raises(ValueError):
        client.request("GET", "/x", headers={"anthropic-beta": value})
    with pytest.raises(ValueError):
        HttpClient(f"http://127.0.0.1:{echo}", {"Authorization": "Bearer " + value}, Timeouts(5, 5))
    with pytest.raises(ValueError):
        client.request("GET", "/x", headers={"bad name": "v"})


def test_a_connection_is_reused_while_open_and_replaced_once_the_server_closed_it(echo):
    client = HttpClient(f"http://127.0.0.1:{echo}", {}, Timeouts(5, 5))
    client.request("POST", "/a", body=b"1")
    first = client.pool._idle[-1]
    client.request("POST", "/b", body=b"2")
    assert client.pool._idle == [first], "the idle connection was reused"
    time.sleep(Echo.idle + 0.3)  # the server closes it
    assert connections.readable_now(first.sock), "a connection the server closed reads as readable (EOF)"
    assert client.request("POST", "/c", body=b"3")._response.data.endswith(b" 3")
    assert client.pool._idle and client.pool._idle[-1] is not first and first.sock is None


def test_answers_are_read_by_http_rules_and_only_open_connections_are_kept(echo):
    client = HttpClient(f"http://127.0.0.1:{echo}", {}, Timeouts(5, 5))
    closing = client.request("POST", "/close", body=b"bye")._response
    assert closing.data.endswith(b" bye") and client.pool._idle == [], "Connection: close is not pooled"
    old = client.request("GET", "/http10")._response
    assert old.data.startswith(b"GET /http10 ") and client.pool._idle == [], "read to its close, not pooled"
    assert client.request("GET", "/gzip")._response.data.startswith(b"GET /gzip "), "decoded, as urllib3 does"
    chunked = client.request("POST", "/chunked", body=b"abcdef")._response
    assert chunked.data.startswith(b"POST /chunked ") and chunked.data.endswith(b"abcdef")
    assert len(client.pool._idle) == 1  # the gzip answer's connection, reused by the chunked one, back and open
    with pytest.raises(UpstreamError) as failed:
        client.request("GET", "/status/503")
    assert failed.value.status == 503


def test_a_stream_read_to_its_end_gives_its_connection_back(echo):
    client = HttpClient(f"http://127.0.0.1:{echo}", {}, Timeouts(5, 5))
    answer = client.request("POST", "/chunked", body=b"0123456789", stream=True)
    assert client.pool._idle == []
    assert b"".join(answer.iter_bytes()).endswith(b"0123456789")
    assert len(client.pool._idle) == 1 and client.pool._idle[0].sock is not None
    cut = client.request("POST", "/chunked", body=b"x" * 100, stream=True)
    next(cut.iter_bytes())
    cut.close()  # not read to its end: its connection cannot be reused
    assert all(conn.sock is not None for conn in client.pool._idle) and len(client.pool._idle) == 0


@pytest.fixture(scope="module")
def tls_echo(tmp_path_factory):
    """The same server behind TLS, its certificate (self-signed, for 127.0.0.1 and localhost) in a file."""
    import datetime
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(cert_file)
    server.shutdown()


def test_https_upstreams_are_verified_and_spoken_to_over_tls(tls_echo):
    port, cert_file = tls_echo
    untrusted = HttpClient(f"https://127.0.0.1:{port}/v1", {}, Timeouts(5, 5))
    assert untrusted.pool.tls["cert_reqs"] == "CERT_REQUIRED"  # verified against the CA bundle by default
    with pytest.raises(UpstreamError) as refused:
        untrusted.request("POST", "/chat/completions", body=b"{}")
    assert refused.value.kind == "connect" and "SSLCertVerificationError" in refused.value.message

    for host in ("127.0.0.1", "localhost"):  # an IP address and a name, each checked against the certificate
        client = HttpClient(f"https://{host}:{port}/v1", {"Authorization": "Bearer sk-up"}, Timeouts(5, 5))
        client.pool.tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": cert_file}  # this server's certificate trusted
        first = client.request("POST", "/chat/completions", body=b'{"a": 1}')._response.data
        assert first.startswith(b"POST /v1/chat/completions ") and first.endswith(b'{"a": 1}')
        streamed = client.request("POST", "/chunked", body=b"over tls", stream=True)
        assert b"".join(streamed.iter_bytes()).endswith(b"over tls")
        assert len(client.pool._idle) == 1 and client.pool._idle[0].sock is not None  # one TLS connection, kept
    with pytest.raises(UpstreamError) as mismatch:  # trusted, but not for this name
        client = HttpClient(f"https://127.0.0.2:{port}/v1", {}, Timeouts(5, 5))
        client.pool.tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": cert_file}
        client.request("GET", "/models")
    assert mismatch.value.kind == "connect"
