"""Group commit (service/group_commit.py) with real threads: batches form under contention, nothing is lost.

The gateway's settlements go through it (billing.SETTLEMENTS); the end-to-end ledger checks are in
test_gateway_billing.py and test_concurrency_pg.py. Here: its own promises, with a writer that records.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import run_script

from service.storage.group_commit import GroupCommit


class Ledger:
    """A store whose writes take a while, recording each transaction."""

    def __init__(self, delay: float = 0.02, refuse: frozenset = frozenset()):
        self.delay = delay
        self.refuse = refuse
        self.committed: list = []
        self.transactions: list = []
        self.lock = threading.Lock()

    def write_one(self, item) -> None:
        self.write_many([item])

    def write_many(self, items: list) -> None:
        time.sleep(self.delay)
        if self.refuse & set(items):
            raise ValueError(f"refused {sorted(self.refuse & set(items))}")
        with self.lock:
            self.transactions.append(list(items))
            self.committed.extend(items)


def recording(commit: GroupCommit, outcomes: dict):
    """A submit that notes each item's outcome: "ok", or "refused" for the ValueError its write raised."""
    def submit(item) -> None:
        try:
            commit.submit(item)
            outcomes[item] = "ok"
        except ValueError:
            outcomes[item] = "refused"

    return submit


def test_a_lone_write_is_written_at_once_by_its_caller():
    ledger = Ledger(delay=0)
    commit = GroupCommit(ledger.write_one, ledger.write_many)
    commit.submit("a")
    commit.submit("b")
    assert ledger.transactions == [["a"], ["b"]]


def test_writes_that_queue_share_transactions_and_each_returns_after_its_own_commit():
    ledger = Ledger(delay=0.03)
    commit = GroupCommit(ledger.write_one, ledger.write_many)
    seen_committed: dict = {}

    def submit(i: int) -> None:
        commit.submit(i)
        seen_committed[i] = i in ledger.committed  # what the caller can rely on once submit returns

    with ThreadPoolExecutor(max_workers=40) as pool:
        list(pool.map(submit, range(200)))
    assert sorted(ledger.committed) == list(range(200))  # each exactly once
    assert all(seen_committed.values()) and len(seen_committed) == 200
    assert len(ledger.transactions) < 100  # batches formed (40 writers, each write 30 ms)
    assert max(len(t) for t in ledger.transactions) > 1


def test_a_refused_item_fails_only_its_own_caller():
    ledger = Ledger(delay=0.02, refuse=frozenset({7}))
    commit = GroupCommit(ledger.write_one, ledger.write_many)
    outcomes: dict = {}
    submit = recording(commit, outcomes)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(submit, range(48)))
    assert outcomes[7] == "refused"
    assert [i for i, o in outcomes.items() if o != "ok"] == [7]
    assert sorted(ledger.committed) == [i for i in range(48) if i != 7]


def test_batches_are_capped():
    ledger = Ledger(delay=0.05)
    commit = GroupCommit(ledger.write_one, ledger.write_many, max_batch=5)
    with ThreadPoolExecutor(max_workers=30) as pool:
        list(pool.map(commit.submit, range(60)))
    assert sorted(ledger.committed) == list(range(60))
    assert max(len(t) for t in ledger.transactions) <= 5


def test_an_error_is_raised_in_a_lone_caller():
    ledger = Ledger(delay=0, refuse=frozenset({"x"}))
    commit = GroupCommit(ledger.write_one, ledger.write_many)
    with pytest.raises(ValueError):
        commit.submit("x")
    commit.submit("y")  # the lead was handed back
    assert ledger.committed == ["y"]


class LockedStore:
    """A store behind a write lock another process may hold: BEGIN waits for it, as SQLite's IMMEDIATE does."""

    def __init__(self):
        self.lock = threading.Lock()  # the file's write lock
        self.open: list = []  # the transaction being written
        self.committed: list = []
        self.transactions: list = []
        self.begun = threading.Event()

    def transaction(self):
        store = self

        class Transaction:
            def __enter__(self):
                store.lock.acquire()
                store.begun.set()
                store.open = []

            def __exit__(self, kind, error, tb):
                if kind is None:
                    store.committed.extend(store.open)
                    store.transactions.append(list(store.open))
                store.open = []
                store.lock.release()

        return Transaction()

    def write_many(self, items: list) -> None:
        assert self.lock.locked()  # always inside the transaction the writer opened
        if "bad" in items:
            raise ValueError("refused bad")
        self.open.extend(items)


def test_writes_that_queue_while_the_transaction_waits_for_the_lock_join_it():
    store = LockedStore()
    commit = GroupCommit(lambda item: store.write_many([item]), store.write_many, transaction=store.transaction)
    store.lock.acquire()  # another process is writing
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(commit.submit, 0)]
        time.sleep(0.1)  # the first writer leads, and waits for the lock
        futures += [pool.submit(commit.submit, i) for i in range(1, 10)]
        time.sleep(0.1)  # the others queue meanwhile
        assert not any(f.done() for f in futures)  # nothing returns before its commit
        store.lock.release()
        for future in futures:
            future.result(timeout=5)
    assert sorted(store.committed) == list(range(10))
    # the batch was taken once the lock was held: the nine that queued meanwhile are in the leader's transaction
    assert len(store.transactions) == 1 and sorted(store.transactions[0]) == list(range(10)), store.transactions


def test_a_failed_shared_transaction_is_written_again_item_by_item():
    store = LockedStore()
    commit = GroupCommit(lambda item: store.write_many([item]), store.write_many, transaction=store.transaction)
    store.lock.acquire()
    outcomes: dict = {}
    submit = recording(commit, outcomes)

    with ThreadPoolExecutor(max_workers=6) as pool:
        pool.submit(submit, "a")
        time.sleep(0.1)
        for item in ("b", "bad", "c", "d"):
            pool.submit(submit, item)
        time.sleep(0.1)
        store.lock.release()
    assert outcomes == {"a": "ok", "b": "ok", "bad": "refused", "c": "ok", "d": "ok"}
    assert sorted(store.committed) == ["a", "b", "c", "d"]
    assert all("bad" not in t for t in store.transactions)


def test_a_counted_kind_is_all_the_counters_count():
    store = LockedStore()
    commit = GroupCommit(lambda item: store.write_many([item]), store.write_many, transaction=store.transaction,
                         counted=lambda item: item.startswith("s"))
    for item in ("s1", "g1", "s2"):
        commit.submit(item)
    assert (commit.transactions, commit.items) == (2, 2)


GREEN_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import gevent, json, sys
from service.storage.group_commit import GroupCommit, let_ready_greenlets_run

blocking_sleep = monkey.get_original("time", "sleep")  # a write that holds the whole worker, as SQLite's do
for gather in (None, let_ready_greenlets_run):
    transactions = []
    def write_many(items):
        blocking_sleep(0.002)
        transactions.append(list(items))
    commit = GroupCommit(lambda item: write_many([item]), write_many, gather=gather)
    gevent.joinall([gevent.spawn(commit.submit, n) for n in range(10)], raise_error=True)
    print(json.dumps(transactions))
"""


def test_a_leader_under_gevent_lets_the_ready_requests_join_a_write_that_blocks_the_worker():
    import json

    alone, gathered = (json.loads(line) for line in run_script(GREEN_SCRIPT).splitlines())
    assert alone == [[n] for n in range(10)]  # each leader wrote before anyone else could queue
    assert gathered == [list(range(10))]
