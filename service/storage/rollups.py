"""Daily roll-ups of the request log, so that spend summaries over months read thousands of rows, not millions.

`usage_daily` holds, per UTC day, key, model, account and outcome, what the log's rows of that day add up to.
A day is rolled up once no row can still join it: SETTLE_LAG after it ended (a call writes its row when it
starts or ends, within the upstream timeout; a dead process's rows are settled by others within a minute).
The roll-up runs when a summary is asked for and finds days to add (one statement, serialised across
processes); nothing is added to a gateway call. A summary reads whole rolled days from the roll-up and the
edges of its time range (and the days not rolled yet) from the log itself, so it is exact.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import peewee as pw

from .db import database, is_postgres
from .models import RequestLog, Setting, UsageDaily

SECONDS_PER_DAY = 86400
SETTLE_LAG = 6 * 3600
THROUGH_KEY = "usage_rollup_through"  # days before this one are in usage_daily
ROLLUP_LOCK = 710017


def day_number(column: pw.Field) -> pw.Node:
    """Whole UTC days since the epoch of a float unix time, in the database's own arithmetic."""
    days = column / pw.SQL(str(SECONDS_PER_DAY))
    # PostgreSQL rounds a float cast to integer; SQLite truncates (= floor for times after 1970)
    return pw.fn.FLOOR(days) if is_postgres() else days.cast("INTEGER")


def rolled_through() -> Optional[int]:
    """The first day not in the roll-up (None before the first roll-up)."""
    row = Setting.get_or_none(Setting.key == THROUGH_KEY)
    return int(row.value) if row else None


def roll_up(now: Optional[float] = None) -> int:
    """Add every settled day not rolled up yet; returns the first day not rolled up."""
    target = int(((time.time() if now is None else now) - SETTLE_LAG) // SECONDS_PER_DAY)
    through = rolled_through()
    if through is not None and through >= target:
        return through
    with database.atomic() if is_postgres() else database.atomic("IMMEDIATE"):
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        through = rolled_through()  # another process may have rolled up meanwhile
        if through is None:
            first = RequestLog.select(pw.fn.MIN(RequestLog.created_at)).scalar()
            through = int(first // SECONDS_PER_DAY) if first is not None else target
        if through < target:
            log = RequestLog
            day, failed = day_number(log.created_at), log.status_code >= 400
            sums = (log.select(day, log.key_id, log.model, log.account, failed, pw.fn.COUNT(log.id),
                               pw.fn.SUM(log.input_tokens), pw.fn.SUM(log.output_tokens),
                               pw.fn.SUM(log.cached_tokens), pw.fn.SUM(log.cost_nano))
                    .where((log.created_at >= through * SECONDS_PER_DAY) & (log.created_at < target * SECONDS_PER_DAY))
                    .group_by(day, log.key_id, log.model, log.account, failed))
            UsageDaily.insert_from(sums, [UsageDaily.day, UsageDaily.key_id, UsageDaily.model, UsageDaily.account,
                                          UsageDaily.failed, UsageDaily.requests, UsageDaily.input_tokens,
                                          UsageDaily.output_tokens, UsageDaily.cached_tokens,
                                          UsageDaily.cost_nano]).execute()
        through = max(through, target)
        Setting.insert(key=THROUGH_KEY, value=str(through)).on_conflict(
            conflict_target=[Setting.key], update={Setting.value: str(through)}).execute()
    return through


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_nano: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple:
        return (self.requests, self.input_tokens, self.output_tokens, self.cached_tokens, self.cost_nano)


# a group name -> its column in each table ("day" is computed)
GROUPS = {"model": "model", "account": "account", "key_id": "key_id"}


def _grouped(table: type, condition: pw.Expression, group_by: str) -> dict:
    if table is RequestLog:
        bucket = day_number(table.created_at) if group_by == "day" else getattr(table, GROUPS[group_by])
        totals = [pw.fn.COUNT(table.id), pw.fn.SUM(table.input_tokens), pw.fn.SUM(table.output_tokens),
                  pw.fn.SUM(table.cached_tokens), pw.fn.SUM(table.cost_nano)]
    else:
        bucket = table.day if group_by == "day" else getattr(table, GROUPS[group_by])
        totals = [pw.fn.SUM(table.requests), pw.fn.SUM(table.input_tokens), pw.fn.SUM(table.output_tokens),
                  pw.fn.SUM(table.cached_tokens), pw.fn.SUM(table.cost_nano)]
    found = {}
    for value, *sums in table.select(bucket, *totals).where(condition).group_by(bucket).tuples():
        label = int(value) if group_by == "day" else value
        found[label] = found.get(label, Totals()) + Totals(*(int(s or 0) for s in sums))
    return found


def summarize(condition_for: Callable[[type], Optional[pw.Expression]], since: Optional[float],
              until: Optional[float], group_by: str) -> dict:
    """Totals per day number, model, account or key_id over [since, until), for the rows `condition_for(table)`
    selects in either table (None for the roll-up: the filter needs single rows, so the log answers alone)."""
    log = RequestLog
    rolled = condition_for(UsageDaily)
    through = roll_up() if rolled is not None else None
    first_day = math.ceil(since / SECONDS_PER_DAY) if since is not None else 0
    end_day = min(through, math.floor(until / SECONDS_PER_DAY)) if until is not None else through

    def raw(start: Optional[float], end: Optional[float]) -> dict:
        condition = condition_for(log)
        if start is not None:
            condition &= log.created_at >= start
        if end is not None:
            condition &= log.created_at < end
        return _grouped(log, condition, group_by)

    if through is None or first_day >= end_day:
        return raw(since, until)
    parts = [_grouped(UsageDaily, rolled & (UsageDaily.day >= first_day) & (UsageDaily.day < end_day), group_by),
             raw(end_day * SECONDS_PER_DAY, until)]
    if since is not None and since < first_day * SECONDS_PER_DAY:
        parts.append(raw(since, first_day * SECONDS_PER_DAY))
    merged: dict = {}
    for part in parts:
        for label, totals in part.items():
            merged[label] = merged.get(label, Totals()) + totals
    return merged


def reset(db: pw.Database) -> None:
    """Forget the roll-up, after rows were written for days already rolled up (an import of old rows): the next
    summary rolls every day up again from the log."""
    with db.atomic():
        db.execute_sql("DELETE FROM usage_daily")
        db.execute_sql(f"DELETE FROM setting WHERE key = {db.param}", (THROUGH_KEY,))
