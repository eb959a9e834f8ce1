"""The gateway benchmark: fast fake upstream + gunicorn (gevent) + wrk, on SQLite and PostgreSQL, one table.

Starts bench/fast_upstream.py and the gateway (`gunicorn -c gunicorn.conf.py wsgi:app`,
2 gevent workers) on a fresh database, configures them through the admin API only,
drives every scenario with wrk (the same scenario also straight to the upstream, for
the gateway's added latency), then prints one Markdown table. Everything runs on
127.0.0.1 and everything it starts is stopped at exit.

    .venv/bin/python bench/run.py                 # SQLite, and PostgreSQL when 127.0.0.1:5432 answers
    .venv/bin/python bench/run.py --quick         # 2 s per scenario: a smoke run
    .venv/bin/python bench/run.py --only chat-32 --db sqlite
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlparse, urlunparse

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))
PYTHON = sys.executable
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
SYSTEM = "You are a concise assistant. Answer in one sentence."
PROMPT = "Explain in one sentence what an LLM gateway does for a team that uses several providers."
EXTRA_ENV: dict = {}  # --env NAME=VALUE: given to every gateway this run starts (experiments)
FOREIGN_WARNING = 0.10  # flag a measurement when other processes took this share of the CPUs
REPLY_MARK = "lazy"  # a word of the fast upstream's reply, checked before each scenario

MODELS = {  # model id -> prices and limits, created through the admin API
    "gpt-bench": {"input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10", "context_window": 400000,
                  "max_output_tokens": 16384},
    "gpt-bench-resp": {"input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10", "context_window": 400000,
                       "max_output_tokens": 16384},
    "claude-bench": {"input_usd_per_mtok": "3", "output_usd_per_mtok": "15", "context_window": 200000,
                     "max_output_tokens": 8192},
    "gpt-bench-paced": {"input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10", "context_window": 400000,
                        "max_output_tokens": 16384},
}

# LiteLLM proxy 1.108 (2 workers, no database) as issue 6 measured it on this machine kind; a run with
# --litellm measures it again beside us, and the targets are then relative to that measurement
ISSUE_LITELLM = {"chat-1": {"added_p50": 8.6}, "chat-32": {"rps": 208.0}, "chat-stream-32": {"rps": 80.0},
                 "cold-start": {"p50": 5700.0}}
FASTER = 5  # issue 6: at least five times faster than LiteLLM


def _targets(baseline: dict) -> dict:
    """scenario -> (what, check(result) -> bool): five times LiteLLM's figure (`baseline`: scenario -> figures)."""
    def of(name: str, figure: str) -> float:
        return baseline[name][figure]
    return {
        "chat-32": (f"≥{FASTER}× LiteLLM = {FASTER * of('chat-32', 'rps'):,.0f} req/s, 0 non-2xx",
                    lambda r: r.rps >= FASTER * of("chat-32", "rps") and r.non2xx == 0),
        "chat-1": (f"added p50 ≤ LiteLLM's / {FASTER} = {of('chat-1', 'added_p50') / FASTER:.2f} ms",
                   lambda r: r.added_p50 is not None and r.added_p50 <= of("chat-1", "added_p50") / FASTER),
        "chat-stream-32": (f"≥{FASTER}× LiteLLM = {FASTER * of('chat-stream-32', 'rps'):,.0f} streams/s",
                           lambda r: r.rps >= FASTER * of("chat-stream-32", "rps") and r.non2xx == 0),
        "open-streams-1000": ("0 dropped, <300 MB", lambda r: r.non2xx == 0 and (r.rss_mb or 0) < 300),
        "cold-start": (f"≤ LiteLLM's / {FASTER} = {of('cold-start', 'p50') / FASTER / 1000:.2f} s",
                       lambda r: r.p50 <= of("cold-start", "p50") / FASTER),
    }


TARGETS = _targets(ISSUE_LITELLM)


# ------------------------------------------------------------------------------------------- processes
class Processes:
    """Every process this run starts, each in its own session; all stopped at exit."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []
        atexit.register(self.stop_all)

    def start(self, command: list, log_path: Path, env: Optional[dict] = None) -> subprocess.Popen:
        log = open(log_path, "ab")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.running.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        """SIGTERM to the process group (gunicorn master and workers), SIGKILL after 10 s."""
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
            except ProcessLookupError:
                pass
        # reap anything left in the group (workers whose master died first)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in list(reversed(self.running)):
            self.stop(process)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30.0, method: str = "GET",
              any_status: bool = False) -> None:
    """Wait until `url` answers (a 2xx, a 401 for a POST without a key, or any status with `any_status`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        try:
            status = requests.request(method, url, timeout=1).status_code
            if any_status or status < 300 or (method == "POST" and status == 401):
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log_path.read_text()[-3000:]}")


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def _status_kb(pid: int, field_name: str) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pids: list[int]) -> bool:
    """Reset VmHWM (Linux: write 5 to clear_refs); False when the kernel refuses."""
    ok = True
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def peak_rss_mb(pids: list[int]) -> Optional[float]:
    """The largest VmHWM among pids, in MB."""
    values = [v for v in (_status_kb(p, "VmHWM") for p in pids) if v]
    return round(max(values) / 1024, 1) if values else None


class CpuWatch:
    """How much of the machine's CPU went to processes other than this run's during a measurement.

    The machine may be shared (tests of other people running): figures taken while
    something else used the CPUs are low, and the table says so.
    """

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, ours: Callable[[], list]):
        self.ours = ours  # -> the pids of this run's processes (gateway, upstream, database backends)

    @staticmethod
    def _busy() -> float:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        # user + nice + system + steal; not irq / softirq, which no process is charged with (loopback
        # networking, most of it ours), nor guest (already in user)
        return (values[0] + values[1] + values[2] + values[7]) / CpuWatch.TICK

    @staticmethod
    def _process_cpu(pids: list) -> dict:
        """pid -> CPU seconds (user + system) so far."""
        seconds = {}
        for pid in set(pids):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                seconds[pid] = (int(fields[11]) + int(fields[12])) / CpuWatch.TICK  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return seconds

    def _snapshot(self) -> tuple:
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF)]
        mine = sum(u.ru_utime + u.ru_stime for u in usage)  # wrk (a finished child) and this script
        return time.monotonic(), self._busy(), mine, self._process_cpu(self.ours())

    def start(self) -> None:
        self.before = self._snapshot()

    def used(self, pids: list) -> float:
        """CPU seconds that `pids` used between start() and foreign_share()."""
        procs0, procs1 = self.before[3], self.after[3]
        return sum(procs1[p] - procs0.get(p, 0.0) for p in set(pids) if p in procs1)

    def foreign_share(self) -> float:
        """The share of all CPUs (0..1) that other processes used since start()."""
        t0, busy0, mine0, procs0 = self.before
        self.after = t1, busy1, mine1, procs1 = self._snapshot()
        ours = (mine1 - mine0) + sum(cpu - procs0.get(pid, 0.0) for pid, cpu in procs1.items())
        elapsed = max(1e-3, t1 - t0)
        return max(0.0, ((busy1 - busy0) - ours) / (elapsed * len(os.sched_getaffinity(0))))


def postgres_backends(db_name: Optional[str]) -> list[int]:
    """The pids of the PostgreSQL backends connected to `db_name` (their title names the database)."""
    if not db_name:
        return []
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f" {db_name} ".encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            pass
    return pids


# ------------------------------------------------------------------------------------------- databases
class Database:
    """A fresh database for one run: a temporary SQLite file or a new PostgreSQL database."""

    def __init__(self, kind: str, workdir: Path, postgres_base: str, name: str):
        self.kind = kind
        self.postgres_base = postgres_base
        if kind == "sqlite":
            self.url = f"sqlite:///{workdir / (name + '.db')}"
            self.pg_name = None
        else:
            self.pg_name = f"okl_bench_{name}_{secrets.token_hex(4)}".lower().replace("-", "_")
            self._admin(f'CREATE DATABASE "{self.pg_name}"')
            self.url = urlunparse(urlparse(postgres_base)._replace(path="/" + self.pg_name))
            atexit.register(self.drop)

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.postgres_base)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def free_connection_slots(self) -> Optional[int]:
        """PostgreSQL: max_connections minus the connections open now (other people's included)."""
        if not self.pg_name:
            return None
        import psycopg2

        conn = psycopg2.connect(self.postgres_base)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('max_connections')::int - (SELECT count(*) FROM pg_stat_activity)")
                return cur.fetchone()[0]
        finally:
            conn.close()

    def drop(self) -> None:
        if self.pg_name:
            name, self.pg_name = self.pg_name, None
            try:
                self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as error:  # noqa: BLE001 - cleanup must not hide the results
                print(f"warning: could not drop database {name}: {error}", file=sys.stderr)


def postgres_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 5432), timeout=1):
            return True
    except OSError:
        return False


def server_env(database_url: str, admin_token: str, workdir: Path, extra: Optional[dict] = None) -> dict:
    """The environment of a gateway: ours only, no provider keys or settings inherited from the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEKEYLLM_", "OPENAI_", "ANTHROPIC_"))}
    env.update({"ONEKEYLLM_DATABASE_URL": database_url, "ONEKEYLLM_ADMIN_TOKEN": admin_token,
                "ONEKEYLLM_FILES_DIR": str(workdir / "files"), "ONEKEYLLM_UPSTREAM_TIMEOUT": "60",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    env.update(EXTRA_ENV)
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------------------- the gateway
class Gateway:
    """A gunicorn gateway on its own port."""

    def __init__(self, procs: Processes, workdir: Path, database_url: str, admin_token: str, workers: int,
                 name: str, config: str = "gunicorn.conf.py"):
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = admin_token
        self.log_path = workdir / f"{name}.log"
        env = server_env(database_url, admin_token, workdir, {
            "ONEKEYLLM_WORKERS": str(workers), "ONEKEYLLM_BIND": f"127.0.0.1:{self.port}"})
        self.process = procs.start([PYTHON, "-m", "gunicorn", "-c", config, "wsgi:app"],
                                   self.log_path, env)
        wait_http(self.url + "/v1/ping", self.process, self.log_path, timeout=60)
        self.workers = self._wait_workers(workers)

    def _wait_workers(self, count: int) -> list[int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = child_pids(self.process.pid)
            if len(pids) >= count:
                return pids
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not start {count} workers:\n{self.log_path.read_text()[-3000:]}")

    def admin(self, method: str, path: str, body: dict) -> dict:
        answer = requests.request(method, f"{self.url}/v1/admin{path}", json=body, timeout=30,
                                  headers={"Authorization": f"Bearer {self.admin_token}"})
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"admin {method} {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def stop(self) -> None:
        self.procs.stop(self.process)


class LiteLLM:
    """LiteLLM proxy on its own port (`--litellm PATH`), serving `gpt-bench` from the fast upstream, for comparison.

    As issue 6 measured it: `litellm --config … --num_workers N`, no database, a master key; its model
    cost map is read from its package (LITELLM_LOCAL_MODEL_COST_MAP) since this machine has no internet.
    """

    MASTER_KEY = "sk-litellm-bench-0123456789abcdef"

    def __init__(self, procs: Processes, workdir: Path, executable: str, upstream: str, workers: int):
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "litellm.log"
        config = workdir / "litellm.yaml"
        config.write_text("\n".join([
            "model_list:", "  - model_name: gpt-bench", "    litellm_params:", "      model: openai/gpt-bench",
            f"      api_base: {upstream}/v1", "      api_key: sk-upstream-bench",
            "general_settings:", f"  master_key: {self.MASTER_KEY}", ""]))
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        self.process = procs.start([executable, "--config", str(config), "--host", "127.0.0.1", "--port",
                                    str(self.port), "--num_workers", str(workers)], self.log_path, env)
        wait_http(self.url + "/health/liveliness", self.process, self.log_path, timeout=180)
        self.start_ms = (time.monotonic() - started) * 1000
        deadline = time.monotonic() + 60
        while len(self._workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)
        self.workers = self._workers()

    def _workers(self) -> list[int]:
        """The worker processes (multiprocessing children; its resource tracker excluded)."""
        pids = child_pids(self.process.pid)
        return [pid for pid in pids if "resource_tracker" not in _cmdline(pid)] or [self.process.pid]

    def stop(self) -> None:
        self.procs.stop(self.process)


class Floor:
    """The stack's floor (bench/floor.py): Flask on gunicorn gevent_pywsgi, a dict bearer, urllib3 forwarding."""

    KEY = "sk-floor-bench"

    def __init__(self, procs: Processes, workdir: Path, upstream: str, workers: int):
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "floor.log"
        env = {**os.environ, "FLOOR_UPSTREAM": f"{upstream}/v1", "PYTHONPATH": str(BENCH)}
        self.process = procs.start([PYTHON, "-m", "gunicorn", "-k", "gevent_pywsgi", "-w", str(workers),
                                    "--worker-connections", "2000", "-b", f"127.0.0.1:{self.port}",
                                    "--no-control-socket", "floor:build()"], self.log_path, env)
        wait_http(self.url + "/v1/chat/completions", self.process, self.log_path, timeout=60, method="POST")
        deadline = time.monotonic() + 30
        while len(child_pids(self.process.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        self.workers = child_pids(self.process.pid)

    def stop(self) -> None:
        self.procs.stop(self.process)


class Portkey:
    """Portkey's gateway (Node, one process; `--portkey DIR`, a folder where `npm install @portkey-ai/gateway`
    ran), routed to the fast upstream with its `x-portkey-provider` and `x-portkey-custom-host` headers."""

    def __init__(self, procs: Processes, workdir: Path, folder: str, upstream: str):
        self.procs = procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "portkey.log"
        start = Path(folder) / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        self.headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream}/v1"}
        self.process = procs.start(["node", str(start), f"--port={self.port}", "--headless"], self.log_path,
                                   dict(os.environ))
        wait_http(self.url + "/v1/models", self.process, self.log_path, timeout=60, any_status=True)
        self.workers = [self.process.pid, *child_pids(self.process.pid)]

    def stop(self) -> None:
        self.procs.stop(self.process)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def configure(admin: Callable[[str, str, dict], dict], upstream: str, hold_chunks: int = 10,
              hold_delay: float = 1.0) -> str:
    """Models, accounts and a key, through the admin API only (`admin(method, path, body)`); returns the key."""
    for model_id, prices in MODELS.items():
        admin("POST", "/models", {"id": model_id, "display_name": model_id, "owned_by": "bench", **prices})
    accounts = [
        {"name": "bench-openai-chat", "provider": "openai", "api": "chat", "base_url": f"{upstream}/v1",
         "models": ["gpt-bench"]},
        {"name": "bench-openai-responses", "provider": "openai", "api": "responses", "base_url": f"{upstream}/v1",
         "models": ["gpt-bench-resp"]},
        {"name": "bench-anthropic", "provider": "anthropic", "base_url": upstream, "models": ["claude-bench"]},
        {"name": "bench-openai-paced", "provider": "openai", "api": "chat",
         "base_url": f"{upstream}/paced/{hold_chunks}/{hold_delay:g}/v1", "models": ["gpt-bench-paced"]},
    ]
    for account in accounts:
        admin("POST", "/accounts", {"api_key": "sk-bench-upstream", **account})
    key = admin("POST", "/keys", {"name": "bench", "budget_usd": "1000000"})
    return key["key"]


# ------------------------------------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    label: str
    path: str
    body: dict
    concurrency: int
    anthropic: bool = False
    end_marker: Optional[str] = None  # what a complete stream contains (wrk counts the ones without it)


def _chat(model: str, stream: bool = False) -> dict:
    body = {"model": model, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
            "max_tokens": 256}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    return body


def _responses(model: str, stream: bool = False) -> dict:
    body = {"model": model, "instructions": SYSTEM, "input": PROMPT, "max_output_tokens": 256}
    return {**body, "stream": True} if stream else body


def _messages(model: str) -> dict:
    return {"model": model, "max_tokens": 256, "system": SYSTEM, "messages": [{"role": "user", "content": PROMPT}]}


SCENARIOS = [
    Scenario("chat-1", "Chat, non-streamed", "/v1/chat/completions", _chat("gpt-bench"), 1),
    Scenario("chat-32", "Chat, non-streamed", "/v1/chat/completions", _chat("gpt-bench"), 32),
    Scenario("chat-stream-32", "Chat, streamed ({chunks} chunks)", "/v1/chat/completions",
             _chat("gpt-bench", stream=True), 32, end_marker="data: [DONE]"),
    Scenario("responses-32", "Responses → chat account", "/v1/responses", _responses("gpt-bench"), 32),
    Scenario("responses-stream-32", "Responses → chat account, streamed", "/v1/responses",
             _responses("gpt-bench", stream=True), 32, end_marker="event: response.completed"),
    Scenario("responses-passthrough-32", "Responses → responses account", "/v1/responses",
             _responses("gpt-bench-resp"), 32),
    Scenario("messages-32", "Messages → anthropic account", "/v1/messages", _messages("claude-bench"), 32,
             anthropic=True),
]
SPECIAL = ["open-streams-1000", "cold-start"]
LITELLM_SCENARIOS = ("chat-1", "chat-32", "chat-stream-32")


# ------------------------------------------------------------------------------------------- wrk
def _lua_string(text: str) -> str:
    level = "=" * 4
    assert f"]{level}]" not in text
    return f"[{level}[{text}]{level}]"


def wrk_script(path: Path, body: dict, headers: dict, end_marker: Optional[str], count_statuses: bool) -> None:
    """A wrk Lua script: POST the body with the headers; done() prints the figures as one JSON line.

    With end_marker, 2xx answers without it count as broken streams; with count_statuses,
    non-2xx answers are counted per status code (a response() callback costs wrk a little).
    """
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(json.dumps(body))}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    lines += ["local threads = {}", "function setup(thread) table.insert(threads, thread) end",
              "broken = 0", "codes = {}", f"local marker = {_lua_string(end_marker or '')}"]
    if end_marker or count_statuses:
        lines += ["function response(status, headers, body)",
                  "  if status >= 300 then codes[tostring(status)] = (codes[tostring(status)] or 0) + 1",
                  "  elseif marker ~= '' and not string.find(body, marker, 1, true) then broken = broken + 1 end",
                  "end"]
    lines += [
        "function done(summary, latency, requests)",
        "  local broken, codes, parts = 0, {}, {}",
        "  for _, t in ipairs(threads) do",
        "    broken = broken + (t:get('broken') or 0)",
        "    for code, n in pairs(t:get('codes') or {}) do codes[code] = (codes[code] or 0) + n end",
        "  end",
        "  for code, n in pairs(codes) do table.insert(parts, string.format('\"%s\":%d', code, n)) end",
        "  local e = summary.errors",
        "  io.write(string.format('BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"status_errors\":%d,"
        "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,\"p50_us\":%d,"
        "\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d,\"mean_us\":%.1f,\"broken\":%d,\"codes\":{%s}}\\n',",
        "    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,",
        "    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,",
        "    broken, table.concat(parts, ',')))",
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    errors: int  # socket errors and timeouts
    broken: int
    requests: int
    codes: dict = field(default_factory=dict)  # non-2xx status -> count (when counted)


def run_wrk(url: str, script: Path, concurrency: int, seconds: float) -> Load:
    threads = 1 if concurrency < 8 else 2
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
               "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, check=False)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    r = json.loads(line[len("BENCH_JSON "):])
    return Load(rps=r["requests"] / (r["duration_us"] / 1e6), p50_ms=r["p50_us"] / 1000, p99_ms=r["p99_us"] / 1000,
                non2xx=r["status_errors"], errors=r["connect_errors"] + r["read_errors"] + r["write_errors"]
                + r["timeouts"], broken=r["broken"], requests=r["requests"], codes=r.get("codes") or {})


# ------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    db: str
    scenario: str
    label: str
    concurrency: str
    rps: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    non2xx: int = 0
    added_p50: Optional[float] = None
    added_p99: Optional[float] = None
    direct_rps: Optional[float] = None
    rss_mb: Optional[float] = None
    cpu_ms: Optional[dict] = None  # CPU ms per request: {"gateway": workers, "database": PostgreSQL backends}
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def target(self) -> str:
        if self.db in ("litellm", "floor", "portkey") or self.scenario not in TARGETS:
            return ""
        what, check = TARGETS[self.scenario]
        met = not self.note.startswith("FAILED") and check(self)
        return f"{what}: {'met' if met else 'NOT met'}"


def _fmt(value: Optional[float], digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def table(results: list[Result]) -> str:
    head = ["db", "scenario", "conc.", "req/s", "p50 ms", "p99 ms", "non-2xx", "added p50 / p99 ms",
            "direct req/s", "CPU ms/req", "peak RSS/worker MB", "target (issue 6)"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        if r.note.startswith("FAILED"):
            rows.append([r.db, r.label, r.concurrency] + ["–"] * 3 + [r.note] + ["–"] * 4 + [r.target])
            continue
        if r.scenario == "cold-start":
            rows.append([r.db, r.label, "1", "–", f"{r.p50:.0f}", f"{r.p99:.0f}", "–", "–", "–", "–",
                         _fmt(r.rss_mb, 0), r.target])
            continue
        if r.scenario.startswith("open-streams"):
            cpu = f"{r.cpu_ms['gateway']:.2f}" if r.cpu_ms else "–"
            rows.append([r.db, r.label, r.concurrency, "–", f"{r.p50:.0f}", f"{r.p99:.0f}", f"{r.non2xx} dropped "
                         f"({r.note})", "–", "–", cpu, _fmt(r.rss_mb, 0), r.target])
            continue
        cpu = "–"
        if r.cpu_ms:
            cpu = f"{r.cpu_ms['gateway']:.2f}" + (f" + {r.cpu_ms['database']:.2f} db" if r.cpu_ms["database"] else "")
        added = "–" if r.added_p50 is None else f"{_fmt(r.added_p50, sign=True)} / {_fmt(r.added_p99, sign=True)}"
        non2xx = str(r.non2xx) + (f" ({r.note})" if r.note else "")
        rows.append([r.db, r.label, r.concurrency, f"{r.rps:,.0f}", _fmt(r.p50), _fmt(r.p99), non2xx, added,
                     "–" if r.direct_rps is None else f"{r.direct_rps:,.0f}", cpu, _fmt(r.rss_mb, 0), r.target])
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "p50 / p99: per request, time to the last byte (streams included); open streams: the whole "
              "stream's duration; cold start: ms. Added latency: the gateway's p50 / p99 minus the same "
              "scenario's straight to the fast upstream. CPU ms/req: CPU time of the gunicorn workers (+ the "
              "PostgreSQL backends) divided by the requests answered."]
    return "\n".join(lines)


def comparison(results: list[Result]) -> str:
    """OneKeyLLM against LiteLLM measured in the same run: one row per figure, the worst of our databases."""
    by = {(r.db, r.scenario): r for r in results if not r.note.startswith("FAILED")}
    dbs = [db for db in ("sqlite", "postgres") if any(key[0] == db for key in by)]
    if not any(key[0] == "litellm" for key in by) or not dbs:
        return ""
    figures = [  # (label, scenario, value of a result, unit, lower is better)
        ("Chat, 1 concurrent: added p50", "chat-1", lambda r: r.added_p50, "ms", True),
        ("Chat, 32 concurrent", "chat-32", lambda r: r.rps, "req/s", False),
        ("Chat streamed, 32 concurrent", "chat-stream-32", lambda r: r.rps, "streams/s", False),
        ("CPU per non-streamed request (32 conc., workers + database)", "chat-32",
         lambda r: r.cpu_ms and r.cpu_ms["gateway"] + r.cpu_ms["database"], "ms", True),
        ("peak RSS per worker (32 conc.)", "chat-32", lambda r: r.rss_mb, "MB", True),
        ("start to the first 200", "cold-start", lambda r: r.p50, "ms", True),
    ]
    head = ["figure"] + [f"OneKeyLLM, {db}" for db in dbs] + ["LiteLLM", "ours vs LiteLLM (worst of ours)"]
    rows = [head, ["---"] * len(head)]
    for label, scenario, value, unit, lower in figures:
        theirs = by.get(("litellm", scenario))
        ours = [by.get((db, scenario)) for db in dbs]
        if theirs is None or value(theirs) is None or any(r is None or value(r) is None for r in ours):
            continue
        values = [value(r) for r in ours]
        worst = max(values) if lower else min(values)
        ratio = value(theirs) / worst if lower else worst / value(theirs)
        verdict = f"{ratio:.1f}× {'less' if lower else 'more'}" if ratio >= 1 else f"{1 / ratio:.1f}× worse"
        rows.append([label] + [f"{v:,.2f} {unit}" for v in values] + [f"{value(theirs):,.2f} {unit}", verdict])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


ISSUE_18 = [  # (figure, how it is computed, the target): CPU per call against the stack's floor, same run
    ("CPU per Chat call, SQLite, 32 conc.", "cpu", "sqlite", "chat-32", "floor", "chat-32", 1.5),
    ("CPU per Chat call, PostgreSQL incl. its own CPU, 32 conc.", "cpu+db", "postgres", "chat-32", "floor",
     "chat-32", 2.5),
    ("CPU per streamed Chat call, SQLite", "cpu", "sqlite", "chat-stream-32", "floor", "chat-stream-32", 1.5),
    ("CPU per streamed Chat call, PostgreSQL incl. its own", "cpu+db", "postgres", "chat-stream-32", "floor",
     "chat-stream-32", 1.5),
    ("Responses → chat account vs Chat passthrough, SQLite", "cpu", "sqlite", "responses-32", "sqlite", "chat-32",
     1.3),
    ("Messages → anthropic account vs Chat passthrough, SQLite", "cpu", "sqlite", "messages-32", "sqlite",
     "chat-32", 1.3),
    ("Responses → chat account vs Chat passthrough, PostgreSQL", "cpu+db", "postgres", "responses-32", "postgres",
     "chat-32", 1.3),
    ("Messages → anthropic account vs Chat passthrough, PostgreSQL", "cpu+db", "postgres", "messages-32",
     "postgres", "chat-32", 1.3),
]


def ratios(results: list[Result]) -> str:
    """Issue 18's targets, each a ratio within this run (the figure that holds on a noisy machine)."""
    by = {(r.db, r.scenario): r for r in results if not r.note.startswith("FAILED") and r.cpu_ms}
    rows = [["figure", "ours", "against", "ratio", "target"], ["---"] * 5]

    def cpu(result: Result, with_db: bool) -> float:
        return result.cpu_ms["gateway"] + (result.cpu_ms["database"] if with_db else 0.0)

    for label, how, db, scenario, base_db, base_scenario, target in ISSUE_18:
        ours, base = by.get((db, scenario)), by.get((base_db, base_scenario))
        if ours is None or base is None:
            continue
        mine, theirs = cpu(ours, how == "cpu+db"), cpu(base, how == "cpu+db" and base_db != "floor")
        ratio = mine / theirs if theirs else float("inf")
        rows.append([label, f"{mine:.2f} ms", f"{theirs:.2f} ms ({base_db} {base_scenario})", f"{ratio:.2f}×",
                     f"≤ {target}×: {'met' if ratio <= target else 'NOT met'}"])
    ours, floor = by.get(("sqlite", "chat-1")), by.get(("floor", "chat-1"))
    if ours and floor:
        gap = ours.p50 - floor.p50
        rows.append(["p50 at 1 concurrent, SQLite vs the floor", f"{ours.p50:.2f} ms", f"{floor.p50:.2f} ms",
                     f"{gap:+.2f} ms", f"≤ +0.5 ms: {'met' if gap <= 0.5 else 'NOT met'}"])
    if len(rows) == 2:
        return ""
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# ------------------------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace, procs: Processes, workdir: Path):
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.direct: dict[str, Load] = {}
        self.results: list[Result] = []
        self.hold = args.hold
        self.hold_chunks = 10
        port = free_port()
        self.upstream = f"http://127.0.0.1:{port}"
        log = workdir / "upstream.log"
        self.upstream_proc = procs.start([PYTHON, str(BENCH / "fast_upstream.py"), "--port", str(port),
                                          "--chunks", str(args.chunks)], log)
        wait_http(self.upstream + "/health", self.upstream_proc, log)

    def wanted(self, name: str) -> bool:
        return not self.args.only or any(name == o or name.startswith(o) for o in self.args.only)

    def say(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run_db(self, kind: str) -> None:
        db = Database(kind, self.workdir, self.args.postgres, "main")
        for setting in self.args.pg_setting if kind == "postgres" else []:
            name, _, value = setting.partition("=")
            if not name.replace("_", "").isalnum():
                raise SystemExit(f"--pg-setting: bad name {name!r}")
            db._admin(f'ALTER DATABASE "{db.pg_name}" SET {name} = \'{value.replace(chr(39), "")}\'')
            self.say(f"postgres: ALTER DATABASE … SET {name} = {value} (an experiment, not the default)")
        admin_token = "sk-admin-bench-" + secrets.token_urlsafe(16)
        gateway = None
        try:
            self.say(f"{kind}: starting gunicorn ({self.args.workers} gevent workers) on {db.url}")
            gateway = Gateway(self.procs, self.workdir, db.url, admin_token, self.args.workers, f"gateway-{kind}",
                              self.args.gunicorn_config)
            free = db.free_connection_slots()
            if free is not None and free < 32 * self.args.workers + 10:
                self.say(f"  warning: PostgreSQL has {free} free connection slots; each worker's pool may open 32 "
                         "(other clients of this server crowd the gateway out: expect 500s)")
            key = configure(gateway.admin, self.upstream, self.hold_chunks, self.hold / self.hold_chunks)
            for scenario in SCENARIOS:
                if self.wanted(scenario.name):
                    label = scenario.label.format(chunks=self.args.chunks)
                    self.attempt(kind, scenario.name, label, str(scenario.concurrency),
                                 lambda s=scenario: self.load_scenario(kind, gateway, key, s, db.pg_name))
            gateway.stop()
            gateway = None
            if self.wanted("open-streams-1000"):
                self.attempt(kind, f"open-streams-{self.args.streams}", f"{self.args.streams} open streams, 1 worker",
                             str(self.args.streams), lambda: self.open_streams(kind, db.url, admin_token, key))
        finally:
            if gateway:
                gateway.stop()
            db.drop()
        if self.wanted("cold-start"):
            self.attempt(kind, "cold-start", "cold start → 200 /v1/ping", "1", lambda: self.cold_start(kind))

    def run_litellm(self) -> None:
        """The Chat scenarios and the start time of LiteLLM proxy, on the same upstream and machine."""
        self.say(f"litellm: starting {self.args.litellm} ({self.args.workers} workers, no database)")
        proxy = LiteLLM(self.procs, self.workdir, self.args.litellm, self.upstream, self.args.workers)
        try:
            self.say(f"  first 200 on /health/liveliness after {proxy.start_ms:,.0f} ms")
            self.results.append(Result("litellm", "cold-start", "cold start → 200 /health/liveliness (ms)", "1",
                                       p50=proxy.start_ms, p99=proxy.start_ms, rss_mb=peak_rss_mb(proxy.workers)))
            for scenario in SCENARIOS:
                if scenario.name in LITELLM_SCENARIOS and self.wanted(scenario.name):
                    label = scenario.label.format(chunks=self.args.chunks)
                    self.attempt("litellm", scenario.name, label, str(scenario.concurrency),
                                 lambda s=scenario: self.load_scenario("litellm", proxy, LiteLLM.MASTER_KEY, s))
        finally:
            proxy.stop()

    def run_competitor(self, name: str, start: Callable[[], object], key: str, scenarios: tuple) -> None:
        """The Chat scenarios against another server (the floor, Portkey) on the same upstream and machine."""
        self.say(f"{name}: starting")
        server = start()
        try:
            for scenario in SCENARIOS:
                if scenario.name in scenarios and self.wanted(scenario.name):
                    label = scenario.label.format(chunks=self.args.chunks)
                    self.attempt(name, scenario.name, label, str(scenario.concurrency),
                                 lambda s=scenario: self.load_scenario(name, server, key, s))
        finally:
            server.stop()

    def baseline(self) -> dict:
        """LiteLLM's figures per scenario: measured in this run where it was, else issue 6's."""
        figures = {name: dict(values) for name, values in ISSUE_LITELLM.items()}
        for r in self.results:
            if r.db == "litellm" and not r.note.startswith("FAILED") and r.scenario in figures:
                figures[r.scenario] = {"rps": r.rps, "added_p50": r.added_p50, "p50": r.p50}
        return figures

    def attempt(self, kind: str, name: str, label: str, concurrency: str, measure: Callable[[], Result]) -> None:
        """Run one scenario; a failure becomes a row that says so, and the run goes on."""
        try:
            self.results.append(measure())
        except Exception as error:  # noqa: BLE001 - one broken scenario must not hide the others
            message = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            self.say(f"  FAILED: {type(error).__name__}: {str(error)[:2000]}")
            self.results.append(Result(kind, name, label, concurrency, note=f"FAILED: {message}"))

    # ----- one wrk scenario
    def _headers(self, scenario: Scenario, key: str, server: object = None) -> dict:
        if getattr(server, "headers", None):
            return {"Authorization": f"Bearer {key}", **server.headers}
        if scenario.anthropic:
            return {"x-api-key": key, "anthropic-version": "2023-06-01"}
        return {"Authorization": f"Bearer {key}"}

    def _preflight(self, url: str, scenario: Scenario, headers: dict) -> None:
        """One request by hand: a 200 with the upstream's reply (and the end of the stream) in it."""
        answer = requests.post(url, json=scenario.body, headers=headers, timeout=15)
        text = answer.text
        if answer.status_code != 200 or REPLY_MARK not in text:
            raise RuntimeError(f"{scenario.name}: {url} answered {answer.status_code}: {text[:800]}")
        if scenario.end_marker and scenario.end_marker not in text:
            raise RuntimeError(f"{scenario.name}: the stream did not end with {scenario.end_marker!r}: {text[-800:]}")

    def load_scenario(self, kind: str, gateway: Gateway, key: str, scenario: Scenario,
                      db_name: Optional[str] = None) -> Result:
        label = scenario.label.format(chunks=self.args.chunks)
        self.say(f"{kind}: {scenario.name} ({label}, {scenario.concurrency} concurrent, {self.args.duration:g} s)")
        headers = self._headers(scenario, key, gateway)
        url = gateway.url + scenario.path
        # each worker answers a few first, so that caches and pools are warm in both
        for _ in range(4 * len(gateway.workers)):
            self._preflight(url, scenario, headers)
        script = self.workdir / f"{scenario.name}.lua"
        wrk_script(script, scenario.body, headers, scenario.end_marker, count_statuses=True)
        direct_script = self.workdir / f"{scenario.name}-direct.lua"
        wrk_script(direct_script, scenario.body, headers, scenario.end_marker, count_statuses=False)
        warmup = 1.0 if self.args.duration >= 5 else 0.5
        run_wrk(url, script, scenario.concurrency, warmup)
        backends: set = set()

        def ours() -> list:
            backends.update(postgres_backends(db_name))
            return [gateway.process.pid, *gateway.workers, self.upstream_proc.pid, *backends]

        best = None
        for attempt in range(1 + self.args.retry_busy):
            if attempt:
                self.say(f"  other processes used {100 * best[1]:.0f}% of the CPUs: measuring again "
                         f"({attempt}/{self.args.retry_busy})")
                time.sleep(5)
            reset_peak_rss(gateway.workers)
            profilers = self._start_profilers(kind, scenario.name, gateway.workers) if attempt == 0 else []
            watch = CpuWatch(ours)
            watch.start()
            load = run_wrk(url, script, scenario.concurrency, self.args.duration)
            foreign = watch.foreign_share()
            cpu_ms = {"gateway": 1000 * watch.used(gateway.workers) / max(1, load.requests),
                      "database": 1000 * watch.used(list(backends)) / max(1, load.requests)}
            rss = peak_rss_mb(gateway.workers)
            self._finish_profilers(profilers)
            if best is None or foreign < best[1]:
                best = (load, foreign, cpu_ms, rss)
            if foreign < FOREIGN_WARNING:
                break
        load, foreign, cpu_ms, rss = best
        direct = self.direct.get(scenario.name)
        if direct is None:
            direct_url = self.upstream + scenario.path
            self._preflight(direct_url, scenario, headers)
            direct = self.direct[scenario.name] = run_wrk(direct_url, direct_script, scenario.concurrency,
                                                          self.args.duration)
        notes = []
        if load.requests == 0:
            notes.append("no request completed: the gateway stopped answering")
        if load.codes:
            notes.append(", ".join(f"{n}× {code}" for code, n in sorted(load.codes.items())))
        if load.errors:
            notes.append(f"{load.errors} socket errors")
        if load.broken:
            notes.append(f"{load.broken} broken streams")
        if foreign >= FOREIGN_WARNING:
            notes.append(f"machine busy: other processes used {100 * foreign:.0f}% of the CPUs")
        result = Result(kind, scenario.name, label, str(scenario.concurrency), rps=load.rps, p50=load.p50_ms,
                        p99=load.p99_ms, non2xx=load.non2xx,
                        added_p50=load.p50_ms - direct.p50_ms if load.requests else None,
                        added_p99=load.p99_ms - direct.p99_ms if load.requests else None,
                        direct_rps=direct.rps, rss_mb=rss, cpu_ms=cpu_ms,
                        note=", ".join(notes), extra={"requests": load.requests, "direct": direct.__dict__,
                                                      "foreign_cpu_share": round(foreign, 3)})
        self.say(f"  {load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, "
                 f"CPU {cpu_ms['gateway']:.2f} ms/req + {cpu_ms['database']:.2f} db, "
                 f"non-2xx {load.non2xx}{', ' + result.note if result.note else ''}; direct {direct.rps:,.0f} req/s "
                 f"p50 {direct.p50_ms:.2f} ms; peak RSS/worker {rss} MB")
        return result

    # ----- py-spy on the workers while wrk runs (--profile)
    def _start_profilers(self, kind: str, scenario: str, pids: list[int]) -> list:
        if not self.args.profile:
            return []
        py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
        self.args.profile.mkdir(parents=True, exist_ok=True)
        profilers = []
        for pid in pids:
            out = self.args.profile / f"{kind}-{scenario}-{pid}.txt"
            command = [py_spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking",
                       "--duration", str(max(1, round(self.args.duration))), "--output", str(out)]
            profilers.append((self.procs.start(command, self.workdir / "py-spy.log"), out))
        return profilers

    def _finish_profilers(self, profilers: list) -> None:
        if not profilers:
            return
        from profile_summary import load, summarise

        for process, _ in profilers:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                pass
            self.procs.stop(process)
        outputs = [out for _, out in profilers if out.exists()]
        if outputs:
            summary = summarise(load(outputs), top=30)
            outputs[0].with_name(outputs[0].name.rsplit("-", 1)[0] + "-summary.txt").write_text(summary + "\n")
            self.say("  profile: " + " | ".join(summary.splitlines()[3:8]))

    # ----- 1,000 open streams on one worker
    def open_streams(self, kind: str, database_url: str, admin_token: str, key: str) -> Result:
        n = self.args.streams
        self.say(f"{kind}: open-streams-{n} ({n} streams of {self.hold_chunks} chunks over {self.hold:g} s, "
                 "1 worker)")
        gateway = Gateway(self.procs, self.workdir, database_url, admin_token, 1, f"gateway-{kind}-1worker",
                          self.args.gunicorn_config)
        try:
            worker = gateway.workers
            headers = {"Authorization": f"Bearer {key}"}
            probe = requests.post(gateway.url + "/v1/chat/completions", headers=headers, timeout=60, json={
                "model": "gpt-bench", "messages": [{"role": "user", "content": "warm up"}]})
            if probe.status_code != 200:
                raise RuntimeError(f"open-streams warm-up: {probe.status_code} {probe.text[:500]}")
            reset_peak_rss(worker)
            rss_before = peak_rss_mb(worker)
            log = self.workdir / f"open-streams-{kind}.log"
            watch = CpuWatch(lambda: worker)  # the worker's CPU per stream: each event arrives alone here
            watch.start()
            client = subprocess.run(
                [PYTHON, str(BENCH / "open_streams.py"), "--url", gateway.url, "--key", key, "--model",
                 "gpt-bench-paced", "--streams", str(n), "--chunks", str(self.hold_chunks),
                 "--timeout", str(max(30.0, self.hold * 3))],
                capture_output=True, text=True, timeout=self.hold * 10 + 120, check=False)
            log.write_text(client.stdout + client.stderr)
            watch.foreign_share()
            stream_cpu = watch.used(worker) * 1000 / n
            rss = peak_rss_mb(worker)
            line = next((ln for ln in client.stdout.splitlines() if ln.startswith("{")), None)
            if line is None:
                raise RuntimeError(f"open_streams.py printed nothing:\n{client.stderr[-3000:]}")
            figures = json.loads(line)
        finally:
            gateway.stop()
        errors = figures["errors"]
        note = f"{figures['intact']}/{n} intact, max {figures['max_open']} open at once"
        if errors:
            note += ", " + ", ".join(f"{k}: {v}" for k, v in errors.items())
        self.say(f"  {note}; {figures['elapsed_s']} s; first byte p50 {figures['first_byte_p50_ms']} ms; "
                 f"worker RSS {rss_before} MB idle → peak {rss} MB")
        return Result(kind, f"open-streams-{n}", f"{n} open streams, 1 worker, {self.hold:g} s each", str(n),
                      p50=figures["duration_p50_ms"] or 0.0, p99=figures["duration_p99_ms"] or 0.0,
                      non2xx=figures["dropped"], rss_mb=rss, note=note, cpu_ms={"gateway": stream_cpu, "database": 0.0},
                      extra={**figures, "rss_idle_mb": rss_before})

    # ----- cold start
    def cold_start(self, kind: str) -> Result:
        self.say(f"{kind}: cold start of `onekeyllm serve` to a 200 on /v1/ping (median of 3, fresh database)")
        onekeyllm = str(Path(PYTHON).parent / "onekeyllm")
        command_base = [onekeyllm] if os.path.exists(onekeyllm) else [PYTHON, "-m", "service.cli"]
        times, rss = [], []
        for attempt in range(3):
            db = Database(kind, self.workdir, self.args.postgres, f"cold{attempt}")
            port = free_port()
            log = self.workdir / f"cold-{kind}-{attempt}.log"
            env = server_env(db.url, "sk-admin-bench-" + secrets.token_urlsafe(16), self.workdir)
            started = time.monotonic()
            process = self.procs.start(command_base + ["serve", "--host", "127.0.0.1", "--port", str(port),
                                                       "--quiet"], log, env)
            try:
                times.append(self._first_ping(port, process, log) - started)
                rss.append(peak_rss_mb([process.pid]))
            finally:
                self.procs.stop(process)
                db.drop()
        times_ms = sorted(t * 1000 for t in times)
        self.say(f"  {', '.join(f'{t:.0f}' for t in times_ms)} ms")
        return Result(kind, "cold-start", "cold start → 200 /v1/ping (p50 / max of 3, ms)", "1",
                      p50=statistics.median(times_ms), p99=max(times_ms), rss_mb=max(r for r in rss if r) if any(rss)
                      else None, extra={"times_ms": times_ms})

    @staticmethod
    def _first_ping(port: int, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> float:
        """The monotonic time of the first 200 on /v1/ping."""
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"onekeyllm serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/v1/ping")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.monotonic()
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError(f"onekeyllm serve did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "unknown CPU")
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal"))
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM"


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(
                                         __doc__.splitlines()[1:]))
    names = [s.name for s in SCENARIOS] + SPECIAL
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per scenario (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 s per scenario, 3 s of open streams: a smoke run")
    parser.add_argument("--only", action="append", default=[],
                        help=f"run only these scenarios (name or prefix; repeat or comma-separate): {', '.join(names)}")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default=None,
                        help="default: both when PostgreSQL answers, else sqlite")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help=f"PostgreSQL server to create the bench databases on (default {DEFAULT_POSTGRES})")
    parser.add_argument("--chunks", type=int, default=20, help="content pieces per streamed answer (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--streams", type=int, default=1000, help="open streams on one worker (default 1000)")
    parser.add_argument("--hold", type=float, default=None, help="seconds the open streams last (default 10)")
    parser.add_argument("--gunicorn-config", default="gunicorn.conf.py", metavar="PATH",
                        help="gunicorn config file, relative to the project root (default gunicorn.conf.py)")
    parser.add_argument("--retry-busy", type=int, default=2, metavar="N",
                        help="measure a scenario up to N more times while other processes use ≥10%% of the CPUs, "
                             "keeping the quietest run (default 2)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="experiment: set NAME=VALUE in the gateways' environment (e.g. ONEKEYLLM_DB_POOL_SIZE=8)")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="experiment: ALTER DATABASE … SET NAME = VALUE on the bench database "
                             "(e.g. synchronous_commit=off)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record the workers with py-spy during each wrk scenario into DIR (slows them a little)")
    parser.add_argument("--litellm", default=None, metavar="PATH",
                        help="also measure LiteLLM proxy (the `litellm` executable of its own virtualenv) on the "
                             "Chat scenarios and its start; the targets are then relative to it")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the stack's floor (bench/floor.py: Flask + gunicorn + urllib3, nothing else)")
    parser.add_argument("--portkey", default=None, metavar="DIR",
                        help="also measure Portkey's gateway, installed in DIR by `npm install @portkey-ai/gateway`")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, wrk scripts)")
    args = parser.parse_args(argv)
    args.only = [o.strip() for item in args.only for o in item.split(",") if o.strip()]
    unknown = [o for o in args.only if not any(n == o or n.startswith(o) for n in names)]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(names)}")
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env {item!r}: expected NAME=VALUE")
        EXTRA_ENV[name] = value
    if args.quick:
        args.duration = 2.0
    if args.hold is None:
        args.hold = 3.0 if args.quick else 10.0
    if args.db is None:
        wanted_pg = args.postgres is not None or postgres_answers(DEFAULT_POSTGRES)
        args.db = "both" if wanted_pg else "sqlite"
    args.postgres = args.postgres or DEFAULT_POSTGRES
    if args.db in ("postgres", "both") and not postgres_answers(args.postgres):
        parser.error(f"PostgreSQL does not answer at {args.postgres}")
    return args


def _raise_on_term(signum, frame):
    raise SystemExit(128 + signum)


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_on_term)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 streams need 2,000+ sockets per process
    load_before = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="okl-bench-"))
    procs = Processes()
    bench = None
    try:
        bench = Bench(args, procs, workdir)
        kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
        for kind in kinds:
            bench.run_db(kind)
        if not args.no_floor:
            bench.run_competitor("floor", lambda: Floor(procs, workdir, bench.upstream, args.workers), Floor.KEY,
                                 ("chat-1", "chat-32", "chat-stream-32"))
        if args.portkey:  # its streaming fails on Node 20: the non-streamed scenarios only
            bench.run_competitor("portkey", lambda: Portkey(procs, workdir, args.portkey, bench.upstream),
                                 "sk-bench-upstream", ("chat-1", "chat-32"))
        if args.litellm:
            bench.run_litellm()
    finally:
        procs.stop_all()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    global TARGETS
    TARGETS = _targets(bench.baseline())
    command = "bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\n{machine()}; load average {load_before:.2f} before the run; {args.workers} gunicorn gevent workers; "
          f"wrk {args.duration:g} s per scenario; `{command.strip()}`\n")
    print(table(bench.results))
    against = comparison(bench.results)
    if against:
        print("\nAgainst LiteLLM, this run:\n")
        print(against)
    against_floor = ratios(bench.results)
    if against_floor:
        print("\nIssue 18, against the stack's floor in this run:\n")
        print(against_floor)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "command": command, "results": [
            {**r.__dict__, "target": r.target} for r in bench.results]}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
