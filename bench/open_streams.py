"""Hold many streamed Chat completions open at once (gevent sockets) and count how many arrive intact.

Each stream is one POST with ``Connection: close``; it is intact when the answer is a
200, the chunked body is well formed, it carries exactly ``--chunks`` content
pieces and it ends with ``data: [DONE]``. Prints one JSON object.

Run: ``python bench/open_streams.py --url http://127.0.0.1:8000 --key sk-… --model m --streams 1000 --chunks 10``.
"""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import gevent  # noqa: E402
from gevent.pool import Pool  # noqa: E402


class StreamBroken(Exception):
    """The stream ended early or malformed."""


def _dechunk(body: bytes) -> bytes:
    """The payload of a chunked body; raises StreamBroken when it is cut or malformed."""
    out, at = [], 0
    while True:
        line_end = body.find(b"\r\n", at)
        if line_end < 0:
            raise StreamBroken("cut in a chunk header")
        try:
            size = int(body[at:line_end].split(b";")[0], 16)
        except ValueError:
            raise StreamBroken("bad chunk header") from None
        if size == 0:
            return b"".join(out)
        start = line_end + 2
        if len(body) < start + size + 2:
            raise StreamBroken("cut in a chunk")
        out.append(body[start:start + size])
        at = start + size + 2


def _content_pieces(payload: bytes) -> tuple[int, bool]:
    """(content pieces, ended with [DONE]) of a Chat SSE payload."""
    pieces, done = 0, False
    for line in payload.split(b"\n"):
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            continue
        event = json.loads(data)
        for choice in event.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                pieces += 1
    return pieces, done


class Run:
    """Shared counters of one run."""

    def __init__(self) -> None:
        self.open = 0
        self.max_open = 0
        self.intact = 0
        self.errors: Counter = Counter()
        self.first_byte_ms: list = []
        self.total_ms: list = []


def one_stream(run: Run, host: str, port: int, request: bytes, chunks: int, timeout: float) -> None:
    """Open one stream, read it to the end, check it."""
    started = time.monotonic()
    sock = None
    opened = False
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.sendall(request)
        parts = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            if not opened:
                opened = True
                run.open += 1
                run.max_open = max(run.max_open, run.open)
                run.first_byte_ms.append((time.monotonic() - started) * 1000)
            parts.append(data)
        raw = b"".join(parts)
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise StreamBroken("no complete head")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            run.errors[f"http {status.decode()}"] += 1
            return
        payload = _dechunk(body) if b"transfer-encoding: chunked" in head.lower() else body
        pieces, done = _content_pieces(payload)
        if pieces != chunks or not done:
            raise StreamBroken(f"{pieces} pieces, done={done}")
        run.intact += 1
        run.total_ms.append((time.monotonic() - started) * 1000)
    except StreamBroken as error:
        run.errors[f"broken: {error}"] += 1
    except socket.timeout:
        run.errors["timeout"] += 1
    except OSError as error:
        run.errors[type(error).__name__] += 1
    except ValueError:
        run.errors["bad JSON event"] += 1
    finally:
        if opened:
            run.open -= 1
        if sock is not None:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the gateway root, http://127.0.0.1:PORT")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=10, help="content pieces each stream must carry")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds of silence before a stream counts as dropped")
    args = parser.parse_args()
    url = urlparse(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    body = json.dumps({"model": args.model, "stream": True,
                       "messages": [{"role": "user", "content": "Stream a short answer, slowly."}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {args.key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
               ).encode() + body
    run = Run()
    pool = Pool(args.streams)
    started = time.monotonic()
    for _ in range(args.streams):
        pool.spawn(one_stream, run, host, port, request, args.chunks, args.timeout)
    pool.join(timeout=args.timeout * 3)
    pool.kill(block=True, timeout=5)
    elapsed = time.monotonic() - started
    first, total = sorted(run.first_byte_ms), sorted(run.total_ms)
    print(json.dumps({"streams": args.streams, "intact": run.intact, "dropped": args.streams - run.intact,
                      "max_open": run.max_open, "errors": dict(run.errors), "elapsed_s": round(elapsed, 2),
                      "first_byte_p50_ms": round(first[len(first) // 2], 1) if first else None,
                      "first_byte_max_ms": round(first[-1], 1) if first else None,
                      "duration_p50_ms": round(total[len(total) // 2], 1) if total else None,
                      "duration_p99_ms": round(total[int(len(total) * 0.99)], 1) if total else None}), flush=True)
    gevent.sleep(0)


if __name__ == "__main__":
    main()
