"""Added latency one call at a time, our gateway against the stack's floor, measured in alternating slices.

`bench/run.py` measures the floor after the gateways: on a machine whose speed drifts (a shared VM), the
p50 gap at 1 concurrent then moves by ±0.3 ms from run to run. Here both serve at once (on SQLite, the same
fast upstream), and wrk loads them in turn, `--slices` times each (gateway, floor, gateway, floor …), so a
drift moves both sides alike; the gap is the median of the slices' gaps.

    .venv/bin/python bench/latency_pair.py --slices 8 --seconds 3
"""
from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from run import (  # noqa: E402 - bench/ is the script's own folder
    SCENARIOS,
    Bench,
    Database,
    Floor,
    Gateway,
    Processes,
    configure,
    run_wrk,
    wrk_script,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=8, help="wrk runs on each server, alternating (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per slice (default 3)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    scenario = next(s for s in SCENARIOS if s.name == "chat-1")
    procs = Processes()
    workdir = Path(tempfile.mkdtemp(prefix="okl-latency-"))
    try:
        bench = Bench(argparse.Namespace(hold=10.0, chunks=20), procs, workdir)
        db = Database("sqlite", workdir, "", "latency")
        token = "sk-admin-bench-" + secrets.token_urlsafe(16)
        gateway = Gateway(procs, workdir, db.url, token, args.workers, "gateway-latency", "gunicorn.conf.py")
        key = configure(gateway.admin, bench.upstream)
        floor = Floor(procs, workdir, bench.upstream, args.workers)
        servers = {"gateway": (gateway.url, key), "floor": (floor.url, Floor.KEY)}
        scripts = {}
        for name, (url, bearer) in servers.items():
            scripts[name] = workdir / f"{name}.lua"
            wrk_script(scripts[name], scenario.body, {"Authorization": f"Bearer {bearer}"}, None, count_statuses=True)
            run_wrk(url + scenario.path, scripts[name], 1, 1.0)  # warm
        p50 = {name: [] for name in servers}
        for _ in range(args.slices):
            for name, (url, _) in servers.items():
                load = run_wrk(url + scenario.path, scripts[name], 1, args.seconds)
                if load.non2xx or load.errors:
                    raise RuntimeError(f"{name}: {load.non2xx} non-2xx, {load.errors} errors")
                p50[name].append(load.p50_ms)
        gaps = [ours - theirs for ours, theirs in zip(p50["gateway"], p50["floor"])]
        print(f"p50 at 1 concurrent, {args.slices} alternating slices of {args.seconds:g} s (SQLite, "
              f"{args.workers} workers):")
        for name, values in p50.items():
            print(f"  {name:8s} median {statistics.median(values):.2f} ms  ({', '.join(f'{v:.2f}' for v in values)})")
        print(f"  added: median {statistics.median(gaps):+.2f} ms  ({', '.join(f'{g:+.2f}' for g in gaps)})")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
