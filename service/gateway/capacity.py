"""Account capacity: the last upstream rate-limit headers, and (later) windows of spend."""
from __future__ import annotations

import threading
import time

from ..db import connected, database
from ..models import Account

PERSIST_EVERY = 10.0  # seconds between writes of one account's headers

_last: dict = {}
_persisted: dict = {}
_lock = threading.Lock()


def remember_headers(account_id: str, headers: dict) -> None:
    """Keep an upstream's rate-limit headers (in memory; in the account row now and then)."""
    now = time.time()
    with _lock:
        _last[account_id] = (now, headers)
        due = now - _persisted.get(account_id, 0) >= PERSIST_EVERY
        if due:
            _persisted[account_id] = now
    if due:
        with connected():
            Account.update(last_headers=headers, last_checked_at=int(now), healthy=True).where(
                Account.id == account_id).execute()


def last_headers(account_id: str) -> dict:
    entry = _last.get(account_id)
    return entry[1] if entry else {}
