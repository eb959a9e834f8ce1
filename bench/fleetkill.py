"""Load and kill across machines: two gateway instances on one PostgreSQL, the second in its own UTS and PID
namespace (as another machine would be); instance B's whole namespace is killed with SIGKILL mid-load.

The successor of loadkill.py for issue 14: the same mix of requests (loadkill.KINDS) at both instances, one key
whose budget covers only part of the load. Halfway through, B's namespace goes (its master and workers at
once, nothing of it left to clean up). The load goes on at A; the database is then watched until the holds B
left behind are given back by A (by lease: B's pids mean nothing to A), and the money is checked. Prints the
figures; exits 1 if a must-be figure is off.

    .venv/bin/python bench/fleetkill.py                     # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/fleetkill.py --requests 4000 --seconds 120 --threads 48 --lease 30
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from loadkill import Bench, Load, read_ledger, run_then_clean_up, usd  # noqa: E402  (the mix, load, ledger)
from run import DEFAULT_POSTGRES, PYTHON, child_pids, free_port, postgres_answers, server_env, wait_http  # noqa: E402

NAMESPACED = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c",
              'hostname "$0" && exec "$@"', "fleetkill-b"]


def start_instance(bench: Bench, name: str, args: argparse.Namespace, namespaced: bool):
    """A gunicorn master with its workers (in its own namespaces if `namespaced`); (process, url)."""
    port = free_port()
    env = server_env(bench.database.url, bench.token, bench.workdir, {
        "ONEKEYLLM_WORKERS": str(args.workers), "ONEKEYLLM_BIND": f"127.0.0.1:{port}",
        "ONEKEYLLM_LEASE_SECONDS": str(args.lease)})
    command = [PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    log = bench.workdir / f"{name}.log"
    process = bench.procs.start((NAMESPACED + command) if namespaced else command, log, env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/v1/ping", process, log, timeout=60)
    return process, url


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("ONEKEYLLM_BENCH_POSTGRES", DEFAULT_POSTGRES))
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests")
    parser.add_argument("--seconds", type=float, default=60, help="and no new request after this long")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="gevent workers per instance")
    parser.add_argument("--lease", type=float, default=30, help="ONEKEYLLM_LEASE_SECONDS of both instances")
    parser.add_argument("--budget-share", type=float, default=0.5)
    args = parser.parse_args(argv)
    args.sqlite = False
    if not postgres_answers(args.postgres):
        print(f"PostgreSQL does not answer at {args.postgres}", file=sys.stderr)
        return 2
    return run_then_clean_up(args, run)


def run(bench: Bench, args: argparse.Namespace) -> int:
    upstream = bench.start_upstream()
    a, a_url = start_instance(bench, "a", args, namespaced=False)
    b, b_url = start_instance(bench, "b", args, namespaced=True)
    bench.configure(a_url, upstream)
    per_request = bench.cost_per_request({"gunicorn": a_url})
    budget = int(per_request * args.requests * args.budget_share)
    key = bench.admin(a_url, "POST", "/keys", {"name": "fleetkill", "budget_usd": usd(budget)})
    print(f"fleetkill on PostgreSQL: instance A + instance B (own UTS+PID namespace), {args.workers} gevent "
          f"workers each, lease {args.lease:g} s; {args.requests} requests max, {args.seconds:g} s max, "
          f"{args.threads} threads; budget {usd(budget)} USD (~{args.budget_share:.0%} of the load)", flush=True)

    load = Load({"A": a_url, "B": b_url}, key["key"], args.threads, args.requests, args.seconds)
    killed: dict = {}

    def kill_b() -> None:
        ledger = read_ledger(bench.database.url, key["id"])
        os.kill(child_pids(b.pid)[0], signal.SIGKILL)  # the namespace's first process: the namespace goes
        killed.update(at=time.monotonic(), after=len(load.outcomes), holds=ledger["holds"])

    started = time.monotonic()
    load.run(kill_b)
    elapsed = time.monotonic() - started
    while True:
        ledger = read_ledger(bench.database.url, key["id"])
        if ledger["holds"] == 0 or time.monotonic() - killed["at"] > 3 * args.lease + 30:
            break
        time.sleep(0.2)
    returned_after = time.monotonic() - killed["at"]
    after = requests.post(a_url + "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {key['key']}"},
                          json={"model": "lk-chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})

    statuses = Counter(o.status for o in load.outcomes)
    by_target = {t: Counter(o.status for o in load.outcomes if o.target == t) for t in ("A", "B")}
    answered = Counter(o.response_id for o in load.outcomes if o.status == "200")
    logged = Counter(response_id for status, _, response_id in ledger["rows"] if status == 200)
    missing = sum((answered - logged).values())
    over = max(0, ledger["used"] - ledger["budget"])
    log_sum = sum(cost for _, cost, _ in ledger["rows"])
    others = {s: n for s, n in statuses.items() if s not in ("200", "402")}
    rows = [
        ("B's namespace killed", f"after {killed['after']} answers, with {killed['holds']} holds in the database"),
        ("requests sent", f"{len(load.outcomes)} in {elapsed:.1f} s (A {sum(by_target['A'].values())}, "
                          f"B {sum(by_target['B'].values())})"),
        ("200s (complete)", f"{statuses['200']} (A {by_target['A']['200']}, B {by_target['B']['200']})"),
        ("402s", str(statuses["402"])),
        ("other outcomes", ", ".join(f"{s} {n}" for s, n in sorted(others.items())) or "none"),
        ("request-log rows", f"{len(ledger['rows'])} (status 200: {sum(logged.values())})"),
        ("200s without a row", f"{missing} (must be 0)"),
        ("spend over budget", f"{usd(over)} USD (must be 0; spent {usd(ledger['used'])} of {usd(ledger['budget'])})"),
        ("log sum vs spend", f"{usd(log_sum)} vs {usd(ledger['used'])} USD (must be equal)"),
        ("B's holds given back", f"{returned_after:.1f} s after the kill (must be < 60); left: {ledger['holds']}, "
                                 f"{usd(ledger['reserved'])} USD reserved"),
        ("a request at A after", str(after.status_code)),
    ]
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"  | {name.ljust(width)} | {value} |" for name, value in rows))
    good = (missing == 0 and over == 0 and log_sum == ledger["used"] and ledger["holds"] == 0
            and ledger["reserved"] == 0 and returned_after < 60 and after.status_code in (200, 402))
    print("  verdict: " + ("ok" if good else "FAILED"))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
