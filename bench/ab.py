"""A/B: the same scenarios of bench/run.py on an earlier commit and on this checkout, interleaved.

The earlier commit is checked out in a temporary git worktree (removed afterwards); each round runs
bench/run.py there, then here (old, new, old, new …), so that a machine whose speed drifts during the run
moves both sides alike. Prints one line per run: req/s, p50 and CPU per request (ms, + the database's).

    .venv/bin/python bench/ab.py --base 9566a0c --only chat-32 --db sqlite --rounds 2
    .venv/bin/python bench/ab.py --base HEAD~1 --only responses-32 --db postgres
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_side(checkout: Path, args: argparse.Namespace) -> list:
    """bench/run.py of `checkout` (its own code: PYTHONPATH and cwd point there); its table rows of `--db`."""
    command = [sys.executable, "bench/run.py", "--duration", str(args.duration), "--db", args.db,
               "--retry-busy", "0", "--no-floor"]
    for name in args.only:
        command += ["--only", name]
    result = subprocess.run(command, cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)},
                            capture_output=True, text=True, timeout=1800)
    rows = [line for line in result.stdout.splitlines() if line.startswith(f"| {args.db} |")]
    if not rows:
        raise RuntimeError(f"bench/run.py in {checkout} printed no row:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return rows


def summary(row: str) -> str:
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    return f"{cells[1]:<40} req/s {cells[3]:>6}  p50 {cells[4]:>7} ms  CPU {cells[9]} ms/req"


def cpu_of(row: str) -> float:
    """CPU ms per request of a row, the database's share included."""
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    return sum(float(part.split()[0]) for part in cells[9].split("+"))


def print_medians(seen: dict) -> None:
    """Per scenario: the median CPU per request of each side and their ratio (the figure to quote)."""
    for scenario in dict.fromkeys(name for _, name in seen):
        base, new = (statistics.median(seen[(side, scenario)]) for side in ("base", "this"))
        print(f"median  {scenario:<40} base {base:.2f}  this {new:.2f} ms/req  ({new / base - 1:+.0%})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--base", required=True, help="the earlier commit (any git revision)")
    parser.add_argument("--only", action="append", default=[], help="bench/run.py scenario names")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okl-ab-") as folder:
        base = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        seen: dict = {}
        try:
            for round_number in range(1, args.rounds + 1):
                for side, label, checkout in (("base", f"base {args.base}", base), ("this", "this checkout", ROOT)):
                    for row in run_side(checkout, args):
                        print(f"round {round_number}  {label:<22} {summary(row)}", flush=True)
                        scenario = row.strip("|").split("|")[1].strip() + " c=" + row.strip("|").split("|")[2].strip()
                        seen.setdefault((side, scenario), []).append(cpu_of(row))
            print_medians(seen)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
