"""Which account serves a request: capacity and weight first, failed accounts cooled down."""
from __future__ import annotations

import random
import threading
import time
from typing import Callable, Optional

from .catalog import AccountInfo

COOLDOWN_SECONDS = 15.0
COOLDOWN_MAX = 300.0


class Cooldowns:
    """Failed accounts until when: written to the account row, and learned back from it at every grant, so
    that every process routes around an account any of them cooled down."""

    def __init__(self):
        self._until: dict = {}
        self._lock = threading.Lock()

    def cool(self, account_id: str, seconds: Optional[float] = None) -> float:
        until = time.time() + min(COOLDOWN_MAX, max(1.0, seconds if seconds is not None else COOLDOWN_SECONDS))
        with self._lock:
            self._until[account_id] = until
        return until

    def learn(self, account_id: str, until: float) -> None:
        """What the account's row says (written by any process): the shared cooldown replaces this one's."""
        with self._lock:
            if until > time.time():
                self._until[account_id] = until
            else:
                self._until.pop(account_id, None)

    def clear(self, account_id: str) -> None:
        if account_id in self._until:
            with self._lock:
                self._until.pop(account_id, None)

    def until(self, account_id: str) -> float:
        return self._until.get(account_id, 0.0)

    def is_cool(self, account_id: str, now: Optional[float] = None) -> bool:
        return self._until.get(account_id, 0.0) > (now or time.time())


cooldowns = Cooldowns()


def order_accounts(accounts: list, headroom: Optional[Callable[[AccountInfo], float]] = None,
                   rng: random.Random = random) -> list:
    """Accounts in the order to try them.

    Healthy accounts first, drawn at random in proportion to weight × headroom
    (the fraction of capacity left, 1.0 when unknown); accounts with no
    headroom are left out; cooling ones go last, soonest-recovering first.
    """
    now = time.time()
    ready, cooling = [], []
    for account in accounts:
        share = 1.0 if headroom is None else headroom(account)
        if share <= 0:
            continue
        if cooldowns.is_cool(account.id, now):
            cooling.append(account)
        elif account.weight > 0:
            ready.append((account, account.weight * share))
    ordered = []
    while ready:
        total = sum(w for _, w in ready)
        pick = rng.random() * total
        for i, (account, weight) in enumerate(ready):
            pick -= weight
            if pick <= 0 or i == len(ready) - 1:
                ordered.append(account)
                ready.pop(i)
                break
    cooling.sort(key=lambda a: cooldowns.until(a.id))
    return ordered + cooling
