"""Large bodies under a made-up key: how soon the 401 comes, how much of the body the gateway read, and what
it does to /v1/ping meanwhile (issue 12: four 31 MB bodies took 2.4–7.9 s to be refused, ping 6.6 s).

Starts `onekeyllm serve` (or gunicorn, `--gunicorn`) on a temporary SQLite database; N clients each send
the headers of a chat request with a made-up `sk-lazytech-…` key and a `--mb` MB body, then the body as fast
as the server takes it, until the server answers; a client with the body withheld waits for its answer
alone; /v1/ping is called every 20 ms throughout.

    .venv/bin/python bench/unknown_key_flood.py [--clients 4] [--mb 31] [--gunicorn]
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import free_port, start_server  # noqa: E402

MADE_UP = "sk-lazytech-madeupmadeupmadeupmadeupmadeup0000000"


def flood(port: int, size: int, send_body: bool) -> tuple[float, int, bytes]:
    """Seconds to the answer's first bytes, body bytes sent before it (kernel buffers included), its status line."""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MADE_UP}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
    chunk = b"a" * 65536
    sent = 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while True:
            try:
                answer = sock.recv(4096)
                return time.perf_counter() - started, sent, answer.split(b"\r\n", 1)[0]
            except BlockingIOError:
                pass
            if send_body and sent < size:
                try:
                    sent += sock.send(chunk[:size - sent])
                except BlockingIOError:
                    time.sleep(0.0005)
                except OSError:
                    sent = size
            else:
                time.sleep(0.001)
            if time.perf_counter() - started > 60:
                return 60.0, sent, b"(no answer in 60 s)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--mb", type=float, default=31)
    parser.add_argument("--gunicorn", action="store_true", help="gunicorn -c gunicorn.conf.py (1 worker)")
    args = parser.parse_args()
    size = int(args.mb * 1024 * 1024)
    port = free_port()
    command = None
    extra = {}
    if args.gunicorn:
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        extra = {"ONEKEYLLM_BIND": f"127.0.0.1:{port}", "ONEKEYLLM_WORKERS": "1"}
    server = start_server(Path(tempfile.mkdtemp(prefix="okl-flood-")), name="flood", command=command, port=port,
                          extra_env=extra)
    try:
        pings: list = []
        done = threading.Event()

        def ping():
            while not done.is_set():
                started = time.perf_counter()
                requests.get(server.v1 + "/ping", timeout=60)
                pings.append(time.perf_counter() - started)
                time.sleep(0.02)

        results: list = []
        clients = [threading.Thread(target=lambda: results.append(("sent", *flood(port, size, True))))
                   for _ in range(args.clients)]
        clients.append(threading.Thread(target=lambda: results.append(("withheld", *flood(port, size, False)))))
        pinger = threading.Thread(target=ping)
        pinger.start()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        done.set()
        pinger.join()
        mode = "gunicorn (1 worker)" if args.gunicorn else "onekeyllm serve"
        print(f"{mode}: {args.clients} clients sending {args.mb:g} MB bodies with a made-up key, 1 withholding it")
        for kind, seconds, sent, status in sorted(results):
            print(f"  body {kind:8}  answer after {seconds * 1000:8.1f} ms  {status.decode(errors='replace'):28} "
                  f"body bytes sent before it: {sent:,}")
        ordered = sorted(pings)
        print(f"  /v1/ping meanwhile: {len(pings)} calls, p50 {ordered[len(ordered) // 2] * 1000:.1f} ms, "
              f"max {ordered[-1] * 1000:.1f} ms")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
