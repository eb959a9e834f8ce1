"""The web console's queries over a big request log: fills N rows (default 1 million) fast, then times every
admin usage call the console's Usage page makes, on SQLite or PostgreSQL.

    python bench/console_queries.py                       # SQLite in a temporary folder
    python bench/console_queries.py --database-url postgresql://postgres@127.0.0.1:5432/okl_bench
    python bench/console_queries.py --rows 200000 --repeat 7

The PostgreSQL database is emptied first (every table dropped). Calls go through the real app (Flask's test
client, the admin bearer), so what is timed is the route: parsing, the SQL, rendering; not the network.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ADMIN_TOKEN = "sk-admin-bench-console"
DAY = 86400
KEYS, MODELS, ACCOUNTS = 300, 12, 6


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="postgresql://… (emptied first); default: SQLite in a temp folder")
    parser.add_argument("--rows", type=int, default=1_000_000, help="request-log rows to fill")
    parser.add_argument("--days", type=int, default=90, help="the rows spread over this many days up to now")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per call (the median is printed)")
    return parser.parse_args()


def reset_postgres(url: str) -> None:
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cur:
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    connection.close()


def rows(count: int, days: int, keys: list):
    """Request-log rows as a team makes them: a few busy keys (Pareto), each using its own one to three models,
    each model served by two of the accounts (routing picks one), 3 % errors, spread over `days` up to now."""
    rng = random.Random(7)
    now = time.time()
    models = [f"model-{i}" for i in range(MODELS)]
    accounts = [f"account-{i}" for i in range(ACCOUNTS)]
    serving = {model: [accounts[i % ACCOUNTS], accounts[(i + 1) % ACCOUNTS]] for i, model in enumerate(models)}
    uses = {key: rng.sample(models, rng.randint(1, 3)) for key in keys}
    for number in range(count):
        key = keys[min(int(rng.paretovariate(1.2)) - 1, len(keys) - 1)]
        model = rng.choice(uses[key])
        status = 200 if rng.random() > 0.03 else rng.choice((429, 500, 502))
        tokens_in, tokens_out = rng.randint(10, 4000), rng.randint(1, 1500)
        yield (f"req_{number:024x}", key, now - rng.random() * days * DAY, "/v1/chat/completions", model,
               rng.choice(serving[model]), False, status, tokens_in, tokens_out, rng.randint(0, tokens_in // 2),
               (tokens_in * 3 + tokens_out * 15) * 1000 if status == 200 else 0, rng.randint(80, 9000))


COLUMNS = ("id", "key_id", "created_at", "endpoint", "model", "account", "stream", "status_code", "input_tokens",
           "output_tokens", "cached_tokens", "cost_nano", "latency_ms")


def fill_sqlite(path: str, count: int, days: int, keys: list) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("PRAGMA synchronous=off")
    with connection:
        connection.executemany(f"INSERT INTO request_log ({', '.join(COLUMNS)}) VALUES "
                               f"({', '.join('?' * len(COLUMNS))})", rows(count, days, keys))
    connection.execute("ANALYZE")
    connection.close()


def fill_postgres(url: str, count: int, days: int, keys: list) -> None:
    import io

    import psycopg2

    connection = psycopg2.connect(url)
    batch = 100_000
    source = rows(count, days, keys)
    with connection, connection.cursor() as cur:
        while True:
            buffer = io.StringIO()
            written = 0
            for row in source:
                buffer.write("\t".join("f" if value is False else str(value) for value in row) + "\n")
                written += 1
                if written == batch:
                    break
            if not written:
                break
            buffer.seek(0)
            cur.copy_expert(f"COPY request_log ({', '.join(COLUMNS)}) FROM STDIN", buffer)
        cur.execute("ANALYZE request_log")
    connection.close()


def calls(keys: list, now: float) -> list:
    """Every call the Usage page makes (summaries for its four charts, the log's first page), with and without
    filters, and a page deep in the log."""
    month = time.strftime("%Y-%m-%d", time.gmtime(now - 29 * DAY))
    base = "/v1/admin/usage"
    out = []
    for label, query in (("last 30 days", f"since={month}T00:00:00Z"), ("all time", ""),
                         ("30 days, one key", f"since={month}T00:00:00Z&key_id={keys[0]}"),
                         ("30 days, one model", f"since={month}T00:00:00Z&model=model-5"),
                         ("30 days, errors", f"since={month}T00:00:00Z&status=error")):
        for group in ("day", "model", "key_id", "account"):
            out.append((f"summary by {group:<7} {label}", f"{base}/summary?group_by={group}&{query}"))
        out.append((f"log page 1         {label}", f"{base}?limit=25&{query}"))
    out.append(("log page 1         30 days, rare account+model",
                f"{base}?limit=25&since={month}T00:00:00Z&account=account-3&model=model-11"))
    return out


def main() -> None:
    args = parse_args()
    folder = tempfile.mkdtemp(prefix="okl-console-bench-")
    url = args.database_url or f"sqlite:///{folder}/bench.db"
    if url.startswith("postgres"):
        reset_postgres(url)
    os.environ.update({"ONEKEYLLM_DATABASE_URL": url, "ONEKEYLLM_ADMIN_TOKEN": ADMIN_TOKEN,
                       "ONEKEYLLM_FILES_DIR": f"{folder}/files"})
    from service.app import build_app

    app = build_app()  # creates the schema and its indexes
    keys = [f"key_{i:024x}" for i in range(KEYS)]
    started = time.perf_counter()
    if url.startswith("postgres"):
        fill_postgres(url, args.rows, args.days, keys)
    else:
        fill_sqlite(url.removeprefix("sqlite:///"), args.rows, args.days, keys)
    print(f"{'postgresql' if url.startswith('postgres') else 'sqlite'}: {args.rows:,} request-log rows over "
          f"{args.days} days filled in {time.perf_counter() - started:.1f} s")

    from service.storage import db, rollups

    with db.connected():
        begun = time.perf_counter()
        rollups.reset(db.database)  # the rows were imported behind the gateway's back (see docs/operations.md)
        rollups.roll_up()
        rolled = db.database.execute_sql("SELECT COUNT(*) FROM usage_daily").fetchone()[0]
    print(f"daily roll-up of the settled days: {time.perf_counter() - begun:.1f} s, {rolled:,} roll-up rows "
          "(once; afterwards one day at a time)")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first_page = client.get("/v1/admin/usage?limit=25", headers=headers).get_json()
    deep = "/v1/admin/usage?limit=25&after=" + first_page["data"][-1]["id"]
    print(f"{'call':<55} {'first ms':>9} {'median ms':>10}", flush=True)
    for label, path in calls(keys, time.time()) + [("log page 2 (cursor)", deep)]:
        timings = []
        for _ in range(args.repeat + 1):
            begun = time.perf_counter()
            answer = client.get(path, headers=headers)
            timings.append((time.perf_counter() - begun) * 1000)
            assert answer.status_code == 200, (path, answer.status_code, answer.get_data(as_text=True)[:300])
        print(f"{label:<55} {timings[0]:>9.1f} {statistics.median(timings[1:]):>10.1f}")


if __name__ == "__main__":
    main()
