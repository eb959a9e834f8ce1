"""What one worker process holds right now: greenlets, file descriptors, pooled connections."""
from __future__ import annotations

import gc
import os

from ..gateway.billing import settlement_counts
from ..storage.db import CHECKPOINTER, database


def _live_greenlets() -> int:
    try:
        from greenlet import greenlet
    except ImportError:  # pragma: no cover
        return 0
    return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet) and not obj.dead)


def process_diagnostics() -> dict:
    """Counts for this process (the answering worker, under gunicorn)."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = None
    pool = database.obj
    transactions, settlements = settlement_counts()
    return {"object": "diagnostics", "pid": os.getpid(), "greenlets": _live_greenlets(), "open_fds": fds,
            "db_connections_in_use": len(getattr(pool, "_in_use", {}) or {}),
            "db_connections_idle": len(getattr(pool, "_connections", []) or []),
            "settlement_transactions": transactions, "settlements": settlements,
            "wal_checkpoints": CHECKPOINTER.runs}
