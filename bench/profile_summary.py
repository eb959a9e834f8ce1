"""Summarise py-spy's raw (collapsed) stacks: where a gateway worker's CPU time goes.

Prints three views of the samples: the innermost library each sample was in (a
partition: every sample counted once), the inclusive share of the gateway's own
functions (`service/…`), and the top functions by self time.

Run: ``python bench/profile_summary.py profile-*.txt [--top 25]``.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# innermost-first: the first bucket a frame matches, scanning from the leaf up, takes the sample
BUCKETS = [
    ("json (stdlib)", ("json/",)),
    ("sqlite3", ("sqlite3/",)),
    ("psycopg2 / psycogreen", ("psycopg2", "psycogreen")),
    ("peewee (query building, pool)", ("peewee.py", "playhouse/")),
    ("marshmallow / webargs / apispec", ("marshmallow/", "webargs/", "apispec/")),
    ("flask-smorest", ("flask_smorest/",)),
    ("requests / urllib3 / http.client (upstream calls)", ("requests/", "urllib3/", "http/client.py")),
    ("jwt / hashlib / hmac / secrets", ("jwt/", "hashlib.py", "hmac.py", "secrets.py")),
    ("logging", ("logging/",)),
    ("werkzeug", ("werkzeug/",)),
    ("flask", ("flask/",)),
    ("gevent (hub, sockets, pywsgi)", ("gevent/",)),
    ("gunicorn", ("gunicorn/",)),
    ("the gateway (service/)", ("service/",)),
]


def parse_frame(text: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame."""
    match = FRAME.match(text.strip())
    if not match:
        return text.strip(), ""
    return match.group("func"), match.group("file")


def _in(file: str, needle: str) -> bool:
    """Whether `needle` (a package folder or module file) names `file` (py-spy shortens paths to sys.path)."""
    return file.startswith(needle) or ("/" + needle) in file


def bucket_of(file: str) -> str | None:
    for name, needles in BUCKETS:
        if any(_in(file, n) for n in needles):
            return name
    return None


def load(paths: list[Path]) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = [parse_frame(f) for f in stack.split(";")]
            frames = [f for f in frames if f[1]]  # drop the process / thread pseudo-frames
            stacks.append((frames, int(count)))
    return stacks


def summarise(stacks: list[tuple[list[tuple[str, str]], int]], top: int = 25) -> str:
    total = sum(c for _, c in stacks) or 1
    by_bucket: Counter = Counter()
    self_time: Counter = Counter()
    ours: Counter = Counter()
    for frames, count in stacks:
        leaf_bucket = next((b for b in (bucket_of(f) for _, f in reversed(frames)) if b), "other (stdlib, C)")
        by_bucket[leaf_bucket] += count
        if frames:
            func, file = frames[-1]
            self_time[f"{func} ({_short(file)})"] += count
        seen = set()
        for func, file in frames:
            if _in(file, "service/"):
                name = f"{_short(file)}:{func}"
                if name not in seen:
                    seen.add(name)
                    ours[name] += count
    out = [f"{total} samples", "", "Innermost library of each sample (a partition):"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in by_bucket.most_common()]
    out += ["", f"The gateway's functions, inclusive (top {top}):"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in ours.most_common(top)]
    out += ["", f"Self time (top {top}):"]
    out += [f"  {100 * c / total:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    return "\n".join(out)


def _short(file: str) -> str:
    for marker in ("/site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(load(args.paths), args.top))


if __name__ == "__main__":
    main()
