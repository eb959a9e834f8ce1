"""What SQLite's per-connection page cache costs a pool of connections in WAL mode, with and without mmap.

In WAL mode a connection empties its page cache at the start of a transaction whenever another connection
has written since its own last one: under load, a worker's pooled connections (one per greenlet) and the
other workers write in turn, so nearly every transaction starts cold. This writes a gateway-like
transaction (a conditional key update, a request-log row with six indexes) over one connection, then
rotating over four, with `mmap_size` off and at 256 MB, and prints the CPU per transaction. On the bench
machine (2026-12-02): 138 µs over one connection, 180–195 µs rotating over four, and mmap changes neither
(130–138, 190–210): the gateway sets no mmap_size; a writer on one dedicated connection would save the
difference where one process writes several transactions in a row.

    python bench/sqlite_reads.py [--transactions 4000]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

INDEXES = ("created_at", "key_id, created_at", "model, created_at", "account, created_at", "status, created_at")


def connect(path: str, mmap_size: int) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode = wal", "synchronous = normal", f"mmap_size = {mmap_size}"):
        connection.execute(f"PRAGMA {pragma}")
    return connection


def measure(path: str, mmap_size: int, connections: int, transactions: int) -> float:
    """CPU µs per transaction, `connections` connections written in turn."""
    pool = [connect(path, mmap_size) for _ in range(connections)]
    started = time.process_time()
    for i in range(transactions):
        connection = pool[i % connections]
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("UPDATE key SET reserved = reserved + 1 WHERE hash = 'h' RETURNING *").fetchall()
        connection.execute("INSERT INTO log VALUES (?, 'k', ?, 'm', NULL, 0, 1, 2, 3)", (f"x{mmap_size}-{connections}-{i}",
                                                                                     1e6 + i))
        connection.execute("COMMIT")
    cpu = (time.process_time() - started) / transactions * 1e6
    for connection in pool:
        connection.close()
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okl-sqlite-") as folder:
        path = os.path.join(folder, "bench.db")
        setup = connect(path, 0)
        setup.execute("CREATE TABLE log (id TEXT PRIMARY KEY, key_id TEXT, created_at REAL, model TEXT, "
                      "account TEXT, status INT, a INT, b INT, c INT)")
        for i, columns in enumerate(INDEXES):
            setup.execute(f"CREATE INDEX log_{i} ON log ({columns})")
        setup.execute("CREATE TABLE key (id TEXT PRIMARY KEY, hash TEXT UNIQUE, used INT, reserved INT)")
        setup.execute("INSERT INTO key VALUES ('k', 'h', 0, 0)")
        setup.execute("BEGIN")
        for i in range(100_000):
            setup.execute("INSERT INTO log VALUES (?, 'k', ?, 'm', 'a', 200, 1, 2, 3)", (f"r{i:09d}", i))
        setup.execute("COMMIT")
        setup.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        print("| mmap_size | connections written in turn | CPU µs per transaction |\n| --- | --- | --- |")
        for mmap_size in (0, 256 * 1024 * 1024):
            for connections in (1, 4):
                cpu = measure(path, mmap_size, connections, args.transactions)
                print(f"| {mmap_size // (1024 * 1024)} MB | {connections} | {cpu:.1f} |", flush=True)
        setup.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
