"""Group commit: writes that arrive while one is being committed share the next transaction.

A caller hands its item to `GroupCommit.submit` and gets control back once the
item is committed, exactly as if it had written alone: the durability of each
item is unchanged. When nobody is writing, the caller writes its item at once
(no waiting, no batch). While a write is under way, new items queue; when it
ends, the first of them leads: it writes everything queued in one transaction,
and the others wake up done. Under load, N settling requests cost one statement
and one commit instead of N.

It needs nothing but locks and events, which gevent's monkey-patching makes
cooperative; the leader writes on its own database connection.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, ContextManager, Generic, Optional, TypeVar

log = logging.getLogger("onekeyllm.db")

Item = TypeVar("Item")


_yield = None  # gevent's sleep under its monkey-patching, else a no-op: found at the first call (after patching)


def let_ready_greenlets_run() -> None:
    """Under gevent's monkey-patching, let every greenlet that is ready to run take its turn first (a no-op
    in a process without it, whose threads run anyway)."""
    global _yield
    if _yield is None:
        try:
            from gevent import monkey, sleep
        except ImportError:  # pragma: no cover
            monkey = None
        _yield = (lambda: sleep(0)) if monkey is not None and monkey.is_module_patched("threading") else (lambda: None)
    _yield()


class Interrupted(RuntimeError):
    """The write of a batch was interrupted before it was known to be committed."""


class _Job(Generic[Item]):
    __slots__ = ("item", "done", "error", "lead")

    def __init__(self, item: Item):
        self.item = item
        self.done: Optional[threading.Event] = None  # made for a job that waits (a leader's never does)
        self.error: Optional[BaseException] = None
        self.lead = False


class GroupCommit(Generic[Item]):
    """Writes items one at a time when alone, in batches when they queue up.

    With `transaction` (a context manager factory: SQLite's `database.atomic`, whose BEGIN IMMEDIATE may wait
    for another process's write lock), the leader opens the transaction first and only then takes what is
    queued: the writes that arrived while it waited for the lock join its transaction. `write_many` then runs
    inside it, and an item written alone after a failed batch gets a transaction of its own.

    With `gather` (gevent's `sleep(0)`), a leader first lets the other greenlets that are ready to run reach
    their own `submit`. A write that blocks the worker (SQLite's are calls into C) otherwise leaves nobody
    the time to queue behind it: batches of 1.5 items under load, 9 with it (bench/README.md).
    """

    def __init__(self, write_one: Callable[[Item], None], write_many: Callable[[list], None], max_batch: int = 64,
                 transaction: Optional[Callable[[], ContextManager]] = None,
                 counted: Optional[Callable[[Item], bool]] = None, gather: Optional[Callable[[], None]] = None):
        self._write_one = write_one
        self._gather = gather
        self._write_many = write_many
        self._max_batch = max_batch
        self._transaction = transaction
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._busy = False
        self._counted = counted  # which items the counters count (all by default)
        self.transactions = 0  # written so far, for diagnostics: transactions that wrote a counted item
        self.items = 0

    def submit(self, item: Item) -> None:
        """Write `item` (with whatever else is queued); returns once it is committed, raises what its write raised."""
        job = _Job(item)
        with self._lock:
            leads = not self._busy
            if not leads:
                job.done = threading.Event()
            self._queue.append(job)
            self._busy = True
        if not leads:
            job.done.wait()
        if leads or job.lead:
            self._lead(job)
        if job.error is not None:
            raise job.error

    def _take(self) -> list:
        with self._lock:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
        return batch

    def _lead(self, own: _Job) -> None:
        """Write what is queued (this caller's job first), then hand the lead to the next in the queue."""
        batch: list = []
        written = False
        try:
            if self._gather is not None:
                self._gather()
            if self._transaction is None:
                batch = self._take()
                self._write(batch)
            else:
                batch = self._write_in_transaction()
            written = True
        finally:
            with self._lock:
                if own not in batch and own in self._queue:  # stopped before its job was taken: nobody waits for it
                    self._queue.remove(own)
                following = self._queue[0] if self._queue else None
                self._busy = following is not None
            if not written:  # e.g. the leader's greenlet was killed: the others cannot know their fate
                for job in batch:
                    if job is not own:
                        job.error = job.error or Interrupted("the write was interrupted")
            for job in batch:
                if job is not own:
                    job.done.set()
            if following is not None:
                following.lead = True
                following.done.set()

    def _write(self, batch: list) -> None:
        """One transaction for the batch; if it fails, each item alone, so one bad item fails only itself."""
        if len(batch) > 1:
            try:
                self._write_many([job.item for job in batch])
                self._count(batch)
                return
            except Exception:  # noqa: BLE001 - retried one by one below, each failure kept by its own caller
                log.warning("a batch of %d writes failed: writing them one by one", len(batch), exc_info=True)
        self._write_alone(batch)

    def _count(self, batch: list) -> None:
        counted = len(batch) if self._counted is None else sum(1 for job in batch if self._counted(job.item))
        if counted:
            self.transactions, self.items = self.transactions + 1, self.items + counted

    def _write_in_transaction(self) -> list:
        """The queue's batch written in one transaction opened before it was taken; the batch."""
        batch: list = []
        try:
            with self._transaction():
                batch = self._take()  # once the write lock is held: whatever queued meanwhile shares it
                self._write_many([job.item for job in batch])
            self._count(batch)
            return batch
        except Exception as error:  # noqa: BLE001 - kept by the callers (alone) or retried one by one
            if not batch:  # the transaction could not even begin: its writes would fail alike
                batch = self._take()
                for job in batch:
                    job.error = error
                return batch
            if len(batch) == 1:
                batch[0].error = error
                return batch
            log.warning("a batch of %d writes failed: writing them one by one", len(batch), exc_info=True)
        self._write_alone(batch)
        return batch

    def _write_alone(self, batch: list) -> None:
        for job in batch:
            try:
                if self._transaction is None:
                    self._write_one(job.item)
                else:
                    with self._transaction():
                        self._write_one(job.item)
                self._count([job])
            except Exception as error:  # noqa: BLE001 - raised again in the caller that submitted it
                job.error = error
