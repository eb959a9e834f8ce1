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
from typing import Callable, Generic, Optional, TypeVar

log = logging.getLogger("onekeyllm.db")

Item = TypeVar("Item")


class Interrupted(RuntimeError):
    """The write of a batch was interrupted before it was known to be committed."""


class _Job(Generic[Item]):
    __slots__ = ("item", "done", "error", "lead")

    def __init__(self, item: Item):
        self.item = item
        self.done = threading.Event()
        self.error: Optional[BaseException] = None
        self.lead = False


class GroupCommit(Generic[Item]):
    """Writes items one at a time when alone, in batches when they queue up."""

    def __init__(self, write_one: Callable[[Item], None], write_many: Callable[[list], None], max_batch: int = 64):
        self._write_one = write_one
        self._write_many = write_many
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._busy = False
        self.transactions = 0  # written so far, for diagnostics
        self.items = 0

    def submit(self, item: Item) -> None:
        """Write `item` (with whatever else is queued); returns once it is committed, raises what its write raised."""
        job = _Job(item)
        with self._lock:
            self._queue.append(job)
            leads = not self._busy
            self._busy = True
        if not leads:
            job.done.wait()
        if leads or job.lead:
            self._lead()
        if job.error is not None:
            raise job.error

    def _lead(self) -> None:
        """Write what is queued (this caller's job first), then hand the lead to the next in the queue."""
        with self._lock:
            batch, self._queue = self._queue[:self._max_batch], self._queue[self._max_batch:]
        written = False
        try:
            self._write(batch)
            written = True
        finally:
            with self._lock:
                following = self._queue[0] if self._queue else None
                self._busy = following is not None
            if not written:  # e.g. the leader's greenlet was killed: the others cannot know their fate
                for job in batch[1:]:
                    job.error = job.error or Interrupted("the settlement was interrupted")
            for job in batch[1:]:
                job.done.set()
            if following is not None:
                following.lead = True
                following.done.set()

    def _write(self, batch: list) -> None:
        """One transaction for the batch; if it fails, each item alone, so one bad item fails only itself."""
        if len(batch) > 1:
            try:
                self._write_many([job.item for job in batch])
                self.transactions, self.items = self.transactions + 1, self.items + len(batch)
                return
            except Exception:  # noqa: BLE001 - retried one by one below, each failure kept by its own caller
                log.warning("a batch of %d writes failed: writing them one by one", len(batch), exc_info=True)
        for job in batch:
            try:
                self._write_one(job.item)
                self.transactions, self.items = self.transactions + 1, self.items + 1
            except Exception as error:  # noqa: BLE001 - raised again in the caller that submitted it
                job.error = error
