"""Numeric upstream hosts are connected to without gevent's resolver thread pool (service/http/resolver.py).

gevent's default resolver sends every getaddrinfo to native threads, `127.0.0.1` too: a burst of new upstream
connections grew a served gateway's thread count (the fault-leak test in test_upstream_faults.py saw 4 -> 9).
Each case runs in its own gevent-patched interpreter, as a served worker does, once with gevent's resolver
as it comes (the control: the pool does grow) and once with ours."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import fresh_database_url, start_server
from instances import priced_model, start_instance
from test_concurrency_pg import chat

SCRIPT = textwrap.dedent("""
    import json, sys
    from gevent import monkey
    monkey.patch_all()
    import socket
    import gevent
    import urllib3
    from gevent.server import StreamServer
    from service.gateway.upstreams.connections import Pool, send
    from service.http.resolver import answer_numeric_hosts_at_once

    if sys.argv[1] == "ours":
        answer_numeric_hosts_at_once()
    hub = gevent.get_hub()

    def pool_threads():
        pool = getattr(hub, "_threadpool", None)
        return 0 if pool is None else pool.size

    def answer(sock, _address):
        sock.recv(65536)
        sock.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
        sock.close()

    server = StreamServer(("127.0.0.1", 0), answer)
    server.start()
    port = server.server_port

    def call(host):
        pool = Pool("http", host, port)  # the gateway's upstream transport: urllib3 opens the connection
        return send(pool.connection(5), "POST", "/v1/chat/completions", b"", b"{}", 5, pool.host_header).read().decode()

    answers = [g.value for g in gevent.joinall([gevent.spawn(call, "127.0.0.1") for _ in range(30)],
                                               raise_error=True)]
    numeric = pool_threads()
    try:
        Pool("http", "127.0.0.1", 1).connection(5)
    except urllib3.exceptions.NewConnectionError as error:
        refusal = type(error).__name__
    named = call("localhost")
    print(json.dumps({"answers": answers, "numeric_pool_threads": numeric, "refusal": refusal,
                      "named": named, "named_pool_threads": pool_threads(),
                      "resolver": type(hub.resolver).__name__}))
""")


def run(resolver: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, resolver], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_gevents_own_resolver_grows_its_thread_pool_for_numeric_hosts():
    seen = run("gevent's")  # the control: what made served workers grow threads
    assert seen["resolver"] == "Resolver" and seen["answers"] == ["ok"] * 30
    assert seen["numeric_pool_threads"] >= 2


def test_numeric_hosts_are_connected_to_without_the_thread_pool_and_names_still_resolve():
    seen = run("ours")
    assert seen["resolver"] == "NumericFirstResolver"
    assert seen["answers"] == ["ok"] * 30
    assert seen["numeric_pool_threads"] == 0, "a numeric host went through the resolver's threads"
    assert seen["refusal"] == "NewConnectionError"  # urllib3's own error for a refused connection, as before
    assert seen["named"] == "ok" and seen["named_pool_threads"] >= 1  # a name is still looked up in a thread


@pytest.mark.parametrize("command", ["serve", "gunicorn"])
def test_a_served_worker_opens_new_upstream_connections_without_resolver_threads(command, upstream, tmp_path):
    """Both ways of serving (`onekeyllm serve`, the gunicorn worker class): a burst of concurrent calls, each on a
    new connection to the fake upstream at 127.0.0.1, grows no thread of gevent's hub pool (which also serves the
    SQLite checkpointer and, at `serve`'s start, pywsgi's getfqdn: one thread at a time)."""
    if command == "serve":
        server = start_server(tmp_path, name="resolver")
    else:
        server = start_instance(tmp_path, "resolver", fresh_database_url(tmp_path, "resolver"),
                                "sk-admin-resolver-" + uuid.uuid4().hex, workers=1).server
    try:
        model = priced_model(server, upstream, "resolver")
        key = server.create_key("5")["key"]
        before = server.admin("GET", "/diagnostics").json()["pool_threads"]
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(lambda _: chat(server.url, key, model).status_code, range(32)))
        assert codes == [200] * 32
        assert server.admin("GET", "/diagnostics").json()["pool_threads"] == before <= 1
    finally:
        server.process.terminate()
        server.process.wait(30)
