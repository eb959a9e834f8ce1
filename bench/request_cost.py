"""What one gateway request costs, in-process: SQL statements, commits, CPU time by package and function.

Builds the app in this process (no gunicorn, no gevent: one request at a time,
so every microsecond is the request's own), configures it through the admin API
with Flask's test client, points it at bench/fast_upstream.py, then for each
scenario: the wall time per request, the SQL statements and commits it runs,
and a cProfile of the same requests (self time per request by package and by
function; cProfile's own overhead inflates code made of many small calls).

    .venv/bin/python bench/request_cost.py --only chat-1 --requests 500
    .venv/bin/python bench/request_cost.py --db postgres
    .venv/bin/python bench/request_cost.py --only chat-1 --body-bytes 60000   # a body that is read before its key
    .venv/bin/python bench/request_cost.py --only chat-1 --body-bytes 70000   # one whose key is checked first

Instructions per request, the figure that holds on a noisy machine (valgrind's callgrind counts the CPU
instructions of the requests only; the database's and the upstream's processes are not counted):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p .venv/bin/python bench/request_cost.py \
        --only chat-1 --requests 200 --instructions
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's service, not the installed one

from profile_summary import BUCKETS, _in  # noqa: E402
from run import (  # noqa: E402
    DEFAULT_POSTGRES,
    PYTHON,
    ROOT,
    SCENARIOS,
    Database,
    Processes,
    configure,
    free_port,
    postgres_answers,
    wait_http,
)


def _backend_pid(db) -> Optional[int]:
    """The PostgreSQL backend serving this thread's connection (None on SQLite)."""
    connection = db._state.conn
    return connection.get_backend_pid() if connection is not None and hasattr(connection, "get_backend_pid") else None


def _on_cpu(pid: Optional[int]) -> float:
    """Seconds a process has run on a CPU (/proc/PID/schedstat, nanoseconds); 0 without one."""
    if pid is None:
        return 0.0
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return 0.0


class StatementCounter:
    """Wraps the database's execute_sql and commit to count what each request runs."""

    def __init__(self, db) -> None:
        self.statements: Counter = Counter()
        self.seconds: Counter = Counter()  # statement -> wall seconds in it (the database's own work, mostly)
        self.cpu: Counter = Counter()  # statement -> this process's CPU seconds in it (the driver's work)
        self.server: Counter = Counter()  # statement -> the PostgreSQL backend's CPU seconds in it
        self.commits = 0
        self.connects = 0
        execute_sql, commit, connect = db.execute_sql, db.commit, db._connect

        def counted_execute(sql, params=None, *args, **kwargs):
            name = " ".join(str(sql).split())[:110]
            self.statements[name] += 1
            backend = _backend_pid(db)
            server = _on_cpu(backend)
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return execute_sql(sql, params, *args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.cpu[name] += time.process_time() - cpu
                self.server[name] += _on_cpu(backend) - server

        def counted_commit(*args, **kwargs):
            self.commits += 1
            started = time.perf_counter()
            try:
                return commit(*args, **kwargs)
            finally:
                self.seconds["(commit)"] += time.perf_counter() - started

        def counted_connect(*args, **kwargs):
            self.connects += 1
            return connect(*args, **kwargs)

        db.execute_sql, db.commit, db._connect = counted_execute, counted_commit, counted_connect

    def reset(self) -> None:
        self.statements.clear()
        self.seconds.clear()
        self.cpu.clear()
        self.server.clear()
        self.commits = self.connects = 0


def _headers(scenario, key: str) -> dict:
    if scenario.anthropic:
        return {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return {"Authorization": f"Bearer {key}"}


def one_request(client, scenario, headers: dict) -> None:
    answer = client.post(scenario.path, json=scenario.body, headers=headers)
    data = answer.get_data()  # a stream is consumed here
    answer.close()
    if answer.status_code != 200:
        raise RuntimeError(f"{scenario.name}: {answer.status_code} {data[:500]!r}")


def padded(scenario, size: int):
    """The scenario with its last message (or input) padded so that its JSON body is about `size` bytes."""
    body = json.loads(json.dumps(scenario.body))
    missing = max(0, size - len(json.dumps(body)))
    if "messages" in body:
        body["messages"][-1]["content"] += " " + "a" * missing
    else:
        body["input"] += " " + "a" * missing
    return dataclasses.replace(scenario, body=body)


def package_of(path: str) -> str:
    short = path.split("/site-packages/", 1)[-1].split("/work/main/", 1)[-1]
    for name, needles in BUCKETS:
        if any(_in(short, n) for n in needles):
            return name
    return "other (stdlib, C builtins)"


def callers_report(profiler: cProfile.Profile, pattern: str, n: int) -> str:
    """Who calls the functions whose name contains `pattern` (calls and cumulative µs per request)."""
    stats = pstats.Stats(profiler)
    out = []
    for (file, line, func), (_cc, nc, _tt, ct, callers) in stats.stats.items():
        if pattern not in func:
            continue
        out.append(f"  {func} ({file.split('/site-packages/')[-1]}:{line}): {nc / n:.1f} calls, "
                   f"{ct / n * 1e6:.1f} µs per request, called from:")
        for (cfile, cline, cfunc), info in sorted(callers.items(), key=lambda kv: -kv[1][3]):
            out.append(f"      {info[1] / n:5.1f}×  {info[3] / n * 1e6:7.1f} µs  {cfunc} "
                       f"({cfile.split('/site-packages/')[-1].split('/work/main/')[-1]}:{cline})")
    return "\n".join(out)


def profile_report(profiler: cProfile.Profile, n: int, top: int) -> str:
    stats = pstats.Stats(profiler)
    by_package: Counter = Counter()
    rows = []
    for (file, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        by_package[package_of(file)] += tt
        rows.append((tt, nc, ct, f"{func} ({file.split('/site-packages/')[-1].split('/work/main/')[-1]}:{line})"))
    total = sum(by_package.values()) or 1e-9
    out = [f"  cProfile: {total / n * 1e6:,.0f} µs of profiled CPU per request (profiler overhead included)",
           "  self time by package (µs/request, share):"]
    out += [f"    {t / n * 1e6:8.0f}  {100 * t / total:5.1f}%  {name}" for name, t in by_package.most_common()]
    out += [f"  top {top} functions by self time (µs/request, calls/request, cumulative µs/request):"]
    for tt, nc, ct, name in sorted(rows, reverse=True)[:top]:
        out.append(f"    {tt / n * 1e6:8.1f}  {nc / n:6.1f}  {ct / n * 1e6:9.1f}  {name}")
    return "\n".join(out)


def instructions(action, n: int) -> float:
    """The instructions `n` runs of `action` take in this process, counted by the callgrind it runs under."""
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
    for _ in range(n):
        action()
    dumped = subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True, text=True)
    files = sorted(Path(tempfile.gettempdir()).glob(f"cg.{pid}*"), key=lambda path: path.stat().st_mtime)
    for path in reversed(files):
        for line in path.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return float(line.split()[1])
    raise RuntimeError(f"no callgrind dump found for {pid} (run under valgrind --tool=callgrind "
                       f"--callgrind-out-file=/tmp/cg.%p): {dumped.stdout[-300:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="URL")
    parser.add_argument("--only", action="append", default=[], help="scenario names or prefixes (run.py's names)")
    parser.add_argument("--requests", type=int, default=300, help="requests per scenario and measurement")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--body-bytes", type=int, default=0, metavar="N",
                        help="pad each request body to about N bytes (past 64 KiB the key is checked before the body)")
    parser.add_argument("--callers", action="append", default=[], metavar="NAME",
                        help="also print who calls the functions whose name contains NAME")
    parser.add_argument("--save-profile", metavar="FILE", help="also write the cProfile of each scenario to FILE.<name> "
                        "(pstats: e.g. sorted by cumulative time)")
    parser.add_argument("--instructions", action="store_true",
                        help="under valgrind --tool=callgrind: print the instructions per request, nothing else")
    args = parser.parse_args()
    only = [o.strip() for item in args.only for o in item.split(",") if o.strip()]
    if args.db == "postgres" and not postgres_answers(args.postgres):
        parser.error(f"PostgreSQL does not answer at {args.postgres}")

    workdir = Path(tempfile.mkdtemp(prefix="okl-cost-"))
    procs = Processes()
    db = None
    try:
        port = free_port()
        upstream = f"http://127.0.0.1:{port}"
        log = workdir / "upstream.log"
        proc = procs.start([PYTHON, str(ROOT / "bench" / "fast_upstream.py"), "--port", str(port),
                            "--chunks", str(args.chunks)], log)
        wait_http(upstream + "/health", proc, log)
        db = Database(args.db, workdir, args.postgres, "cost")
        admin_token = "sk-admin-bench-" + secrets.token_urlsafe(16)
        for name in [k for k in os.environ if k.startswith(("ONEKEYLLM_", "OPENAI_", "ANTHROPIC_"))]:
            del os.environ[name]
        os.environ.update({"ONEKEYLLM_DATABASE_URL": db.url, "ONEKEYLLM_ADMIN_TOKEN": admin_token,
                           "ONEKEYLLM_FILES_DIR": str(workdir / "files")})
        import logging

        from service import create_app
        from service.storage.db import database

        app = create_app()
        logging.getLogger().setLevel(logging.WARNING)
        client = app.test_client()

        def admin(method: str, path: str, body: dict) -> dict:
            answer = client.open("/v1/admin" + path, method=method, json=body,
                                 headers={"Authorization": f"Bearer {admin_token}"})
            if answer.status_code not in (200, 201):
                raise RuntimeError(f"admin {method} {path}: {answer.status_code} {answer.get_data()[:500]!r}")
            return answer.get_json()

        key = configure(admin, upstream)
        counter = StatementCounter(database.obj)
        n = args.requests
        print(f"{args.db}; {n} sequential requests per scenario, in-process (Flask test client, no gevent)\n")
        for scenario in SCENARIOS:
            if only and not any(scenario.name == o or scenario.name.startswith(o) for o in only):
                continue
            if args.body_bytes:
                scenario = padded(scenario, args.body_bytes)
            headers = _headers(scenario, key)
            for _ in range(30):
                one_request(client, scenario, headers)
            if args.instructions:
                count = instructions(lambda s=scenario, h=headers: one_request(client, s, h), n)
                print(f"{scenario.name}: {count / n:,.0f} instructions per request")
                continue
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(n):
                one_request(client, scenario, headers)
            wall = (time.perf_counter() - started) / n
            cpu = (time.process_time() - cpu_started) / n
            counter.reset()
            for _ in range(n):
                one_request(client, scenario, headers)
            statements = sum(counter.statements.values()) / n
            print(f"{scenario.name} ({scenario.label.format(chunks=args.chunks)}): {wall * 1e6:,.0f} µs per request "
                  f"(wall, upstream included), {cpu * 1e6:,.0f} µs CPU of this process (the test client's "
                  f"included); {statements:.1f} SQL statements, {counter.commits / n:.1f} commits, "
                  f"{counter.connects / n:.2f} pool check-outs per request")
            for sql, count in counter.statements.most_common():
                print(f"    {count / n:4.1f}×  {counter.seconds[sql] / n * 1e6:6.1f} µs ({counter.cpu[sql] / n * 1e6:5.1f} "
                      f"CPU here, {counter.server[sql] / n * 1e6:5.1f} in the server)  {sql}")
            print(f"          {counter.seconds['(commit)'] / n * 1e6:6.1f} µs  (the commits)")
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(n):
                one_request(client, scenario, headers)
            profiler.disable()
            if args.save_profile:
                profiler.dump_stats(f"{args.save_profile}.{scenario.name}")
            print(profile_report(profiler, n, args.top))
            for pattern in args.callers:
                print(callers_report(profiler, pattern, n))
            print()
    finally:
        procs.stop_all()
        if db is not None:
            try:
                from service.storage.db import database

                if database.obj is not None:
                    database.obj.close_all()
            except Exception:  # noqa: BLE001 - best effort before the drop
                pass
            db.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
