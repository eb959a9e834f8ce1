"""Fixed-window counters shared by every worker and process (key rpm, login limits, capacity refreshes and probes)."""
from __future__ import annotations

import math
import time
from typing import Optional

from .db import database
from .models import RateCounter


def count_in_window(bucket: str, window_seconds: int, now: Optional[float] = None) -> tuple[int, int]:
    """Count one event in `bucket`'s current fixed window: (events so far in it, seconds until it ends)."""
    now = time.time() if now is None else now
    window = int(now // window_seconds)
    with database.atomic():
        RateCounter.insert(bucket=bucket, window=window, count=1).on_conflict(
            conflict_target=[RateCounter.bucket, RateCounter.window],
            update={RateCounter.count: RateCounter.count + 1}).execute()
        count = (RateCounter.select(RateCounter.count)
                 .where((RateCounter.bucket == bucket) & (RateCounter.window == window)).scalar())
    if count == 1:  # the first event of a new window: forget the old ones
        RateCounter.delete().where((RateCounter.bucket == bucket) & (RateCounter.window < window)).execute()
    return int(count or 0), max(1, math.ceil((window + 1) * window_seconds - now))
