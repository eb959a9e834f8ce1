"""What the per-request observability costs: the trace, the metrics and the access line of one settled call.

Runs the same functions the edge runs at the end of every request (service/http/access.py), in prometheus_client's
multiprocess mode as the servers use it, with the access line formatted as JSON or text into a null stream, and
prints the CPU time per request (process time, so other processes on the machine weigh less than on wall time).

    .venv/bin/python bench/observability_cost.py --requests 20000
"""
from __future__ import annotations

import argparse
import atexit
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="onekeyllm-metrics-bench-")
atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

from service.gateway.billing import LogEntry  # noqa: E402
from service.gateway.canonical import Usage  # noqa: E402
from service.http.access import _access_fields  # noqa: E402
from service.observability import metrics  # noqa: E402
from service.observability.calls import CallTrace  # noqa: E402
from service.observability.logs import configure_logging, log_access  # noqa: E402


def one_request(stream: bool) -> None:
    trace = CallTrace(request_id="req_0123456789abcdef0123456789abcdef")
    metrics.INFLIGHT.inc()
    with trace.upstream():
        pass
    if stream:
        trace.first_token()
    entry = LogEntry(key_id="key_0123456789abcdef01234567", endpoint="/v1/chat/completions", model="gpt-bench",
                     account="bench-account", stream=stream, status_code=200,
                     usage=Usage(input_tokens=120, output_tokens=40, cached_tokens=16), cost=12345,
                     started=time.time(), request_id=trace.request_id)
    trace.settled(entry, 12345)
    trace.overhead_ms()
    metrics.INFLIGHT.dec()
    metrics.record_request("/v1/chat/completions", 200, trace)
    log_access(_access_fields(trace, "POST", "/v1/chat/completions", 200))


def measure(requests: int, stream: bool) -> float:
    for _ in range(200):  # first-use label children and files
        one_request(stream)
    began = time.process_time()
    for _ in range(requests):
        one_request(stream)
    return (time.process_time() - began) / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    for log_format in ("text", "json"):
        configure_logging(log_format)
        for handler in logging.getLogger().handlers:
            handler.setStream(io.StringIO()) if hasattr(handler, "setStream") else None
        for stream in (False, True):
            print(f"{log_format:5} {'streamed' if stream else 'complete':9} {measure(args.requests, stream):7.1f} µs CPU"
                  " per request (trace, metrics, access line)")
    logging.getLogger("onekeyllm.access").setLevel(logging.WARNING)
    print(f"metrics only        {measure(args.requests, False):7.1f} µs CPU per request (access line off)")


if __name__ == "__main__":
    main()
