"""`onekeyllm audit`: checks that the money adds up, straight on the database (SQLite or PostgreSQL).

Three rules, each discrepancy a line: every key's used amount is the sum of its
settled request-log rows (and its reserved amount the sum of its holds); no hold
(nor an in-flight row, as releases before schema 13 wrote them) outlives the
process that wrote it; every row costs its tokens
at the prices stored with it (what it was charged plus its overage). Rows older
than the prices column (m011_money) cannot be priced again and are only counted.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import peewee as pw

from ..money import usd
from ..storage.db import database, is_postgres
from ..storage.models import IN_FLIGHT, ApiKey, BudgetHold, RequestLog
from . import leases
from .canonical import Usage
from .holds import owner_runs
from .pricing import price_tokens

BATCH = 5000


@dataclass
class AuditReport:
    discrepancies: list = field(default_factory=list)
    keys: int = 0
    rows: int = 0
    unpriced_rows: int = 0  # written before rows kept their prices
    holds: int = 0
    overage_by_account: dict = field(default_factory=dict)  # account -> nano-dollars not charged

    def lines(self) -> list:
        """The report as printed: discrepancies first, then the totals."""
        out = list(self.discrepancies)
        out.append(f"checked {self.keys} keys, {self.rows} request-log rows ({self.unpriced_rows} without stored "
                    f"prices), {self.holds} holds: {len(self.discrepancies)} discrepancies")
        for account, nano in sorted(self.overage_by_account.items(), key=lambda item: -item[1]):
            out.append(f"overage {usd(nano)} USD on account {account}: reported past its bounds, not charged")
        return out


def _sums(column: pw.Field, key_column: pw.Field, condition) -> dict:
    query = key_column.model.select(key_column, pw.fn.SUM(column)).where(condition).group_by(key_column).tuples()
    return {key_id: int(total or 0) for key_id, total in query}


def _check_keys(report: AuditReport) -> None:
    charged = _sums(RequestLog.cost_nano, RequestLog.key_id, RequestLog.status_code != IN_FLIGHT)
    held = _sums(BudgetHold.amount_nano, BudgetHold.key_id, BudgetHold.id.is_null(False))
    for key_id, used, reserved in ApiKey.select(ApiKey.id, ApiKey.used_nano, ApiKey.reserved_nano).tuples():
        report.keys += 1
        if used != charged.get(key_id, 0):
            report.discrepancies.append(f"key {key_id}: used {usd(used)} USD, its rows sum to "
                                        f"{usd(charged.get(key_id, 0))} USD")
        if reserved != held.get(key_id, 0):
            report.discrepancies.append(f"key {key_id}: reserved {usd(reserved)} USD, its holds sum to "
                                        f"{usd(held.get(key_id, 0))} USD")


def _check_holds(report: AuditReport) -> None:
    now = time.time()
    holding: set = set()
    held = list(BudgetHold.select(BudgetHold.id, BudgetHold.owner, BudgetHold.created_at).tuples())
    lapses = leases.expiries({owner for _, owner, _ in held})
    for hold_id, owner, created_at in held:
        report.holds += 1
        holding.add(hold_id)
        if not owner_runs(owner, created_at, now, lapses.get(owner)):
            report.discrepancies.append(f"hold {hold_id}: its process {owner} no longer runs")
    for (row_id,) in RequestLog.select(RequestLog.id).where(RequestLog.status_code == IN_FLIGHT).tuples():
        if row_id not in holding:
            report.discrepancies.append(f"row {row_id}: in flight, but no process holds it")


def _check_rows(report: AuditReport) -> None:
    log = RequestLog
    columns = (log.id, log.status_code, log.input_tokens, log.output_tokens, log.cached_tokens,
               log.cache_write_tokens, log.cache_write_1h_tokens, log.cost_nano, log.overage_nano, log.prices,
               log.account)
    after = ""
    while True:  # by id, a batch at a time: a large log is never read whole
        batch = list(log.select(*columns).where(log.id > after).order_by(log.id).limit(BATCH).tuples())
        if not batch:
            return
        after = batch[-1][0]
        for row_id, status, inp, out, cached, writes, hour, cost, overage, prices, account in batch:
            report.rows += 1
            if overage:
                report.overage_by_account[account or "?"] = report.overage_by_account.get(account or "?", 0) + overage
            if status == IN_FLIGHT:
                continue
            if not prices:
                report.unpriced_rows += 1
                continue
            usage = Usage(input_tokens=inp, output_tokens=out, cached_tokens=cached, cache_write_tokens=writes or 0,
                          cache_write_1h_tokens=hour or 0)
            due = price_tokens(json.loads(prices), usage)
            if cost + (overage or 0) != due:
                report.discrepancies.append(f"row {row_id}: charged {usd(cost)} + overage {usd(overage or 0)} USD, "
                                            f"its tokens cost {usd(due)} USD")


def run_audit() -> AuditReport:
    """Every check, on the bound database, in one read-only snapshot (a live gateway may keep writing)."""
    report = AuditReport()
    with database.atomic() if is_postgres() else database.atomic("DEFERRED"):
        if is_postgres():
            database.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        _check_keys(report)
        _check_holds(report)
        _check_rows(report)
    return report
