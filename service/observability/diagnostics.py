"""What one worker process holds right now: greenlets, file descriptors, pooled connections."""
from __future__ import annotations

import gc
import os

from ..gateway.billing import settlement_counts
from ..storage.db import CHECKPOINTER, database


def _root(glet):
    while glet.parent is not None:
        glet = glet.parent
    return glet


def _live_greenlets() -> int:
    """Live greenlets of the serving thread: those of the hub's pool threads (each has a hub and a worker
    greenlet of its own) are counted as `pool_threads`."""
    try:
        from greenlet import getcurrent, greenlet
    except ImportError:  # pragma: no cover
        return 0
    here = _root(getcurrent())
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead and _root(obj) is here)


def _pool_threads() -> int:
    """Native threads of the gevent hub's pool, which looks host names up and checkpoints SQLite's WAL (at
    most its maxsize, 10 by default; kept once made)."""
    try:
        from gevent import get_hub
    except ImportError:  # pragma: no cover
        return 0
    pool = getattr(get_hub(), "_threadpool", None)  # made on first use
    return 0 if pool is None else pool.size


def process_diagnostics() -> dict:
    """Counts for this process (the answering worker, under gunicorn)."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    pool = database.obj
    transactions, settlements = settlement_counts()
    return {"object": "diagnostics", "pid": os.getpid(), "greenlets": _live_greenlets(),
            "pool_threads": _pool_threads(), "open_fds": fds,
            "db_connections_in_use": len(getattr(pool, "_in_use", {}) or {}),
            "db_connections_idle": len(getattr(pool, "_connections", []) or []),
            "settlement_transactions": transactions, "settlements": settlements,
            "wal_checkpoints": CHECKPOINTER.runs}
