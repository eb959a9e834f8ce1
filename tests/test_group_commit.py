"""Group commit (service/group_commit.py) with real threads: batches form under contention, nothing is lost.

The gateway's settlements go through it (billing.SETTLEMENTS); the end-to-end ledger checks are in
test_gateway_billing.py and test_concurrency_pg.py. Here: its own promises, with a writer that records.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

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

    def submit(i: int) -> None:
        try:
            commit.submit(i)
            outcomes[i] = "ok"
        except ValueError:
            outcomes[i] = "refused"

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
