"""What the strict handler (service/http/wsgi_server.py) costs per request against gevent's stock pywsgi handler,
in-process and without the app: a trivial WSGI app, keep-alive clients sending small POSTs on loopback, CPU of
the whole process per request (server and clients alike, so the difference is the handler's).

    .venv/bin/python bench/server_overhead.py [--requests 5000] [--clients 8] [--rounds 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
from gevent import pywsgi, socket  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.http.wsgi_server import strict_handler  # noqa: E402

BODY = b'{"model": "echo-1", "messages": [{"role": "user", "content": "hi"}]}'
REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-lazytech-x\r\n"
           b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY)) + BODY


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def client(port: int, count: int) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stalls: CPU, not waits
    reader = sock.makefile("rb")
    for _ in range(count):
        sock.sendall(REQUEST)
        length = 0
        while True:
            line = reader.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
            if line == b"\r\n":
                break
        reader.read(length)
    sock.close()


def run(handler_class, requests: int, clients: int) -> tuple[float, float]:
    """(CPU µs per request, requests per second) for one handler class."""
    listener = socket.socket()
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    server = pywsgi.WSGIServer(listener, app, handler_class=handler_class, log=None)
    server.start()
    try:
        started_cpu, started = time.process_time(), time.perf_counter()
        gevent.joinall([gevent.spawn(client, server.server_port, requests // clients) for _ in range(clients)])
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    finally:
        server.stop()
    done = requests // clients * clients
    return cpu / done * 1e6, done / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    handlers = {"stock pywsgi": pywsgi.WSGIHandler, "strict": strict_handler(pywsgi.WSGIHandler, 20, 30)}
    results: dict = {name: [] for name in handlers}
    run(pywsgi.WSGIHandler, 500, args.clients)  # warm-up
    for _ in range(args.rounds):
        for name, handler in handlers.items():
            results[name].append(run(handler, args.requests, args.clients))
    print(f"{args.requests} keep-alive POSTs per round, {args.clients} clients, trivial app, in-process "
          f"(best of {args.rounds} rounds)")
    for name, figures in results.items():
        print(f"  {name:12}  {min(f[0] for f in figures):6.1f} CPU µs per request   "
              f"{max(f[1] for f in figures):8,.0f} requests/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
