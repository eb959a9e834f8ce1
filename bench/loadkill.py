"""Load and kill: two gateway processes on one database, one key, one worker killed with SIGKILL mid-load.

Starts the fake upstream of the tests (tests/fake_upstream.py: its answer ids are unique, so each 200 can be
matched to its own row), gunicorn (gevent, 3 workers) and a separate `onekeyllm serve` on one fresh
database (PostgreSQL, or SQLite with --sqlite), configures them through the admin API, and drives a bounded
load (threads, a request count and a time limit) at both processes with one key whose budget covers only part
of it. Halfway through, one gunicorn worker gets kill -9. Every request's status is recorded (and the response
id of each complete 200); then the database is read directly and the next start (`onekeyllm serve` on the same
database, nothing repaired by hand) is checked. Prints the figures; exits 1 if a must-be figure is off.

    .venv/bin/python bench/loadkill.py                  # PostgreSQL on 127.0.0.1:5432
    .venv/bin/python bench/loadkill.py --sqlite
    .venv/bin/python bench/loadkill.py --requests 20000 --seconds 300 --threads 96
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Optional

import requests

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import (  # noqa: E402  (bench/run.py: the shared process, database and port helpers)
    DEFAULT_POSTGRES,
    PYTHON,
    ROOT,
    Database,
    Gateway,
    Processes,
    child_pids,
    free_port,
    postgres_answers,
    server_env,
    wait_http,
)

from service.storage.db import make_database  # noqa: E402

NANO = Decimal(10) ** 9
PRICES = {"input_usd_per_mtok": "3", "output_usd_per_mtok": "15", "max_output_tokens": 4096}
PROMPT = "Explain in one sentence what an LLM gateway does for a team that uses several providers."


@dataclass(frozen=True)
class Kind:
    """One kind of request of the mix: route, model, streamed or not, and what ends a complete stream."""

    name: str
    path: str
    model: str
    stream: bool
    ends: tuple = ()  # what a complete stream contains (one of)


KINDS = [
    Kind("chat", "/v1/chat/completions", "lk-chat", False),
    Kind("chat-stream", "/v1/chat/completions", "lk-chat", True, ("data: [DONE]",)),
    Kind("messages", "/v1/messages", "lk-claude", False),
    Kind("responses-stream", "/v1/responses", "lk-chat", True,
         ("event: response.completed", "event: response.incomplete")),  # incomplete: capped to the budget left
    Kind("slow-chat", "/v1/chat/completions", "lk-slow", False),
    Kind("slow-messages-stream", "/v1/messages", "lk-slow", True, ("event: message_stop",)),
]


def body_for(kind: Kind) -> dict:
    if kind.path == "/v1/responses":
        return {"model": kind.model, "input": PROMPT, "max_output_tokens": 64, "stream": kind.stream}
    return {"model": kind.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64,
            "stream": kind.stream}


def first_id(kind: Kind, text: str) -> Optional[str]:
    """The response id the client saw: the body's, or the first event's."""
    if not kind.stream:
        return json.loads(text).get("id")
    for line in text.splitlines():
        if line.startswith("data: {"):
            data = json.loads(line[6:])
            holder = data.get("response") or data.get("message") or data
            return holder.get("id")
    return None


@dataclass
class Outcome:
    target: str
    kind: str
    status: str  # "200", "402", … or "200-broken" (a stream cut short), "connection-error"
    response_id: Optional[str] = None
    detail: str = ""  # the start of an error answer


class Load:
    """Bounded concurrent load at several gateway URLs; one thread-local session per thread."""

    def __init__(self, targets: dict, key: str, threads: int, count: int, seconds: float):
        self.targets, self.key, self.threads, self.count, self.seconds = targets, key, threads, count, seconds
        self.outcomes: list = []
        self.lock = threading.Lock()
        self.local = threading.local()
        self.deadline = 0.0

    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def one(self, i: int) -> None:
        if time.monotonic() > self.deadline:
            return
        names = list(self.targets)
        target, kind = names[i % len(names)], KINDS[(i // len(names)) % len(KINDS)]
        headers = {"Authorization": f"Bearer {self.key}", "anthropic-version": "2023-06-01"}
        try:
            answer = self.session().post(self.targets[target] + kind.path, json=body_for(kind), headers=headers,
                                         timeout=60)
            text = answer.text
        except requests.RequestException as error:
            cut = isinstance(error, requests.exceptions.ChunkedEncodingError)
            outcome = Outcome(target, kind.name, "body-cut" if cut else "connection-error"
                              if isinstance(error, requests.ConnectionError) else type(error).__name__)
        else:
            status = str(answer.status_code)
            if answer.status_code == 200 and kind.stream and not any(end in text for end in kind.ends):
                status = "200-broken"
            outcome = Outcome(target, kind.name, status, first_id(kind, text) if status == "200" else None,
                              "" if status in ("200", "402") else text[-200:])
        with self.lock:
            self.outcomes.append(outcome)

    def run(self, halfway) -> None:
        """Run the load; `halfway()` is called once half the requests have an outcome."""
        self.deadline = time.monotonic() + self.seconds
        with ThreadPoolExecutor(max_workers=self.threads) as pool:
            futures = [pool.submit(self.one, i) for i in range(self.count)]
            halftime = time.monotonic() + self.seconds / 2
            while len(self.outcomes) < self.count // 2 and time.monotonic() < halftime and not futures[-1].done():
                time.sleep(0.01)
            halfway()
            for future in futures:
                future.result()


def read_ledger(database_url: str, key_id: str) -> dict:
    """The key's figures and its request log, read straight from the database."""
    db = make_database(database_url)
    p = db.param
    with db.connection_context():
        budget, used, reserved = db.execute_sql(
            f"SELECT budget_nano, used_nano, reserved_nano FROM api_key WHERE id = {p}", (key_id,)).fetchone()
        rows = db.execute_sql(f"SELECT status_code, cost_nano, response_id FROM request_log WHERE key_id = {p}",
                              (key_id,)).fetchall()
        holds = db.execute_sql(f"SELECT COUNT(*) FROM budget_hold WHERE key_id = {p}", (key_id,)).fetchone()[0]
    db.close_all()
    return {"budget": budget, "used": used, "reserved": reserved, "rows": rows, "holds": holds}


def usd(nano: int) -> str:
    return f"{Decimal(nano) / NANO:.9f}"


class Bench:
    """The processes of one run and the admin calls that configure them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="okl-loadkill-"))
        self.procs = Processes()
        kind = "sqlite" if args.sqlite else "postgres"
        self.database = Database(kind, self.workdir, args.postgres, "loadkill")
        self.token = "sk-admin-loadkill-" + secrets.token_urlsafe(16)

    def start_upstream(self) -> str:
        port = free_port()
        log = self.workdir / "upstream.log"
        process = self.procs.start([PYTHON, str(ROOT / "tests" / "fake_upstream.py"), "--port", str(port)], log)
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                requests.get(url + "/v1/models", timeout=1)
                return url
            except requests.RequestException:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"the fake upstream did not start:\n{log.read_text()[-2000:]}")

    def start_serve(self, name: str):
        port = free_port()
        log = self.workdir / f"{name}.log"
        env = server_env(self.database.url, self.token, self.workdir)
        process = self.procs.start([PYTHON, "-m", "service.cli", "serve", "--port", str(port), "--quiet"], log, env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/v1/ping", process, log, timeout=60)
        return process, url, log

    def admin(self, url: str, method: str, path: str, body: Optional[dict] = None) -> dict:
        answer = requests.request(method, f"{url}/v1/admin{path}", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {self.token}"})
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"admin {method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def configure(self, url: str, upstream: str) -> None:
        for model in ("lk-chat", "lk-claude", "lk-slow"):
            self.admin(url, "POST", "/models", {"id": model, **PRICES})
        for name, provider, base_url, model, upstream_model in [
                ("lk-openai", "openai", f"{upstream}/v1", "lk-chat", "gpt-fake-1"),
                ("lk-anthropic", "anthropic", upstream, "lk-claude", "claude-fake-1"),
                # 0.5 s in flight (a stream pauses after its second event): some die with the worker
                ("lk-slow", "anthropic", f"{upstream}/s/stall-0.5", "lk-slow", "claude-fake-1")]:
            self.admin(url, "POST", "/accounts", {"name": name, "provider": provider, "base_url": base_url,
                                                   "api_key": "sk-upstream-loadkill", "models": [model],
                                                   "model_map": {model: upstream_model}})

    def cost_per_request(self, targets: dict) -> int:
        """The mean cost of one request of the mix, measured with a key of its own."""
        probe = self.admin(targets["gunicorn"], "POST", "/keys", {"name": "probe", "budget_usd": "100"})
        load = Load({"gunicorn": targets["gunicorn"]}, probe["key"], threads=1, count=len(KINDS), seconds=60)
        load.run(lambda: None)
        assert all(o.status == "200" for o in load.outcomes), [o.status for o in load.outcomes]
        time.sleep(0.5)  # the last stream's row
        return read_ledger(self.database.url, probe["id"])["used"] // len(KINDS)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    parser.add_argument("--postgres", default=os.environ.get("ONEKEYLLM_BENCH_POSTGRES", DEFAULT_POSTGRES))
    parser.add_argument("--requests", type=int, default=4000, help="at most this many requests")
    parser.add_argument("--seconds", type=float, default=120, help="and no new request after this long")
    parser.add_argument("--threads", type=int, default=48)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--budget-share", type=float, default=0.5,
                        help="the key's budget as a share of what the whole load would cost")
    args = parser.parse_args(argv)
    if not args.sqlite and not postgres_answers(args.postgres):
        print(f"PostgreSQL does not answer at {args.postgres}; use --sqlite or --postgres URL", file=sys.stderr)
        return 2
    return run_then_clean_up(args, run)


def run_then_clean_up(args: argparse.Namespace, run) -> int:
    """`run(bench, args)` on a new Bench; its processes stopped and its database dropped whatever happens."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    bench = Bench(args)
    code = 1
    try:
        code = run(bench, args)
        return code
    finally:
        bench.procs.stop_all()
        bench.database.drop()
        if code == 0:
            shutil.rmtree(bench.workdir, ignore_errors=True)
        else:
            print(f"  logs kept in {bench.workdir}", file=sys.stderr)


def run(bench: Bench, args: argparse.Namespace) -> int:
    upstream = bench.start_upstream()
    gunicorn = Gateway(bench.procs, bench.workdir, bench.database.url, bench.token, args.workers, "gunicorn")
    serve, serve_url, _ = bench.start_serve("serve")
    targets = {"gunicorn": gunicorn.url, "serve": serve_url}
    bench.configure(gunicorn.url, upstream)
    per_request = bench.cost_per_request(targets)
    budget = int(per_request * args.requests * args.budget_share)
    key = bench.admin(gunicorn.url, "POST", "/keys", {"name": "loadkill", "budget_usd": usd(budget)})
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"loadkill on {database}: gunicorn ({args.workers} gevent workers) + onekeyllm serve, one database; "
          f"{args.requests} requests max, {args.seconds:g} s max, {args.threads} threads; "
          f"budget {usd(budget)} USD (~{args.budget_share:.0%} of the load at {usd(per_request)} USD/request)",
          flush=True)

    load = Load(targets, key["key"], args.threads, args.requests, args.seconds)
    killed: dict = {}

    def kill_a_worker() -> None:
        victim = child_pids(gunicorn.process.pid)[0]
        os.kill(victim, signal.SIGKILL)
        killed.update(pid=victim, after=len(load.outcomes))

    started = time.monotonic()
    load.run(kill_a_worker)
    elapsed = time.monotonic() - started
    time.sleep(1)  # rows of streams that ended as the load did
    ledger = read_ledger(bench.database.url, key["id"])
    bench.procs.stop(serve)
    gunicorn.stop()

    restart_started = time.monotonic()
    again, again_url, again_log = bench.start_serve("next-start")
    restart_seconds = time.monotonic() - restart_started
    fresh = bench.admin(again_url, "POST", "/keys", {"name": "after", "budget_usd": "1"})
    after_answer = requests.post(again_url + "/v1/chat/completions", json=body_for(KINDS[0]), timeout=30,
                                 headers={"Authorization": f"Bearer {fresh['key']}"})
    after = read_ledger(bench.database.url, key["id"])
    bench.procs.stop(again)

    statuses = Counter(o.status for o in load.outcomes)
    answered = Counter(o.response_id for o in load.outcomes if o.status == "200")
    logged = Counter(response_id for status, _, response_id in ledger["rows"] if status == 200)
    missing = sum((answered - logged).values())
    over = max(0, ledger["used"] - ledger["budget"])
    log_sum = sum(cost for _, cost, _ in ledger["rows"])
    by_target = {t: Counter(o.status for o in load.outcomes if o.target == t) for t in targets}
    others = {s: n for s, n in statuses.items() if s not in ("200", "402")}
    next_start_ok = after_answer.status_code == 200 and "Traceback" not in again_log.read_text()

    print(f"  worker killed             pid {killed.get('pid')} after {killed.get('after')} answers")
    print(f"  requests sent             {len(load.outcomes)} in {elapsed:.1f} s")
    print(f"  200s (complete)           {statuses['200']}   (gunicorn {by_target['gunicorn']['200']}, "
          f"serve {by_target['serve']['200']})")
    print(f"  402s                      {statuses['402']}")
    print(f"  other statuses            {json.dumps(others) if others else 'none'}")
    for status in others:
        sample = next(o for o in load.outcomes if o.status == status)
        if sample.detail:
            print(f"      e.g. {status} from {sample.target} ({sample.kind}): {sample.detail.strip()[:160]}")
    print(f"  request-log rows written  {len(ledger['rows'])}   (status 200: {sum(logged.values())}, "
          f"distinct response ids: {len(logged)})")
    print(f"  200s without a row        {missing}   (must be 0)")
    print(f"  spend over budget         {usd(over)} USD   (must be 0; spent {usd(ledger['used'])} "
          f"of {usd(ledger['budget'])})")
    print(f"  request-log sum vs spend  {usd(log_sum)} vs {usd(ledger['used'])} USD   (must be equal)")
    given_back = sum(int(n) for path in bench.workdir.glob("*.log")
                     for n in re.findall(r"gave back (\d+) budget holds", path.read_text(errors="replace")))
    print(f"  holds left after the load {ledger['holds']} ({usd(ledger['reserved'])} USD reserved); "
          f"holds of the killed worker given back: {given_back}")
    print(f"  next start                {'ok' if next_start_ok else 'FAILED'} in {restart_seconds:.1f} s, "
          f"no repair; a request: {after_answer.status_code}; holds left {after['holds']} "
          f"({usd(after['reserved'])} USD reserved)")
    good = (missing == 0 and over == 0 and log_sum == ledger["used"] and next_start_ok
            and after["reserved"] == 0 and after["holds"] == 0)
    print("  verdict                   " + ("ok" if good else "FAILED"))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
