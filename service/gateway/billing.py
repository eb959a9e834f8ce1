"""Prices, the atomic budget reservation, settlement and the request log.

A request reserves its worst case before it goes upstream, in one conditional
UPDATE (`used + reserved + worst <= budget`), so concurrent requests can never
spend past the limit; a `budget_hold` row written with it names the process
holding it, so the holds of a crashed process can be given back (holds.py).
Settlement releases the reservation and charges the real cost, capped at the
reservation, in the same transaction that writes the request-log row: the log
and the spend always agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import peewee as pw

from ..db import database, is_postgres
from ..ids import new_id
from ..models import ApiKey, BudgetHold, RequestLog
from ..money import cost_nano
from ..prepared import Prepared
from . import holds
from .canonical import Usage
from .capacity import note_settled
from .catalog import ModelInfo

INPUT_MARGIN = 1.25  # the input estimate may be short of the upstream's count
DEFAULT_MAX_OUTPUT = 4096


def price_usage(model: ModelInfo, usage: Usage) -> int:
    """The cost of `usage` in nano-dollars."""
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_price = model.cached_input_nano_per_mtok
    if cached_price is None:
        cached_price = model.input_nano_per_mtok
    return (cost_nano(usage.input_tokens - cached, model.input_nano_per_mtok)
            + cost_nano(cached, cached_price) + cost_nano(usage.output_tokens, model.output_nano_per_mtok))


@dataclass
class Reservation:
    key_id: str
    amount: int  # nano-dollars held
    max_output_tokens: int  # what the budget affords (the request is capped at this)
    capped: bool  # whether the budget lowered the request's own limit
    hold_id: Optional[str] = None  # the budget_hold row, once reserved


class BudgetExhausted(Exception):
    """The key cannot afford even a minimal answer."""


def plan_reservation(key: ApiKey, model: ModelInfo, input_tokens: int, requested_output: Optional[int]) -> Reservation:
    """The worst case of a request, its output capped at what the key's remaining budget affords."""
    try:
        return _plan(key, model, input_tokens, requested_output)
    except BudgetExhausted:
        if not holds.sweep_if_due():
            raise
    # holds of a stopped process were just given back: plan again on the key's current figures
    return _plan(ApiKey.get_by_id(key.id), model, input_tokens, requested_output)


def _plan(key: ApiKey, model: ModelInfo, input_tokens: int, requested_output: Optional[int]) -> Reservation:
    wanted = requested_output or model.max_output_tokens or DEFAULT_MAX_OUTPUT
    input_cost = cost_nano(int(input_tokens * INPUT_MARGIN) + 1, model.input_nano_per_mtok)
    out_price = model.output_nano_per_mtok
    capped = False
    if key.budget_nano is not None:
        remaining = key.budget_nano - key.used_nano - key.reserved_nano
        if remaining <= 0 or input_cost > remaining:
            raise BudgetExhausted()
        if out_price > 0:
            affordable = (remaining - input_cost) * 1_000_000 // out_price
            if affordable < 1:
                raise BudgetExhausted()
            if affordable < wanted:
                wanted, capped = int(affordable), True
    return Reservation(key.id, input_cost + cost_nano(wanted, out_price), wanted, capped)


def reserve(reservation: Reservation) -> None:
    """Hold the worst case atomically, in a hold row named by this process; BudgetExhausted if the key cannot."""
    if not _hold(reservation) and not (holds.sweep_if_due() and _hold(reservation)):
        raise BudgetExhausted()


def _grant_query(amount: int, key_id: str, worst: int) -> pw.Query:
    key = ApiKey
    condition = (key.id == key_id) & (key.budget_nano.is_null() | (
        (key.used_nano < key.budget_nano) & (key.used_nano + key.reserved_nano + worst <= key.budget_nano)))
    return key.update(reserved_nano=key.reserved_nano + amount).where(condition)


def _hold_fields(hold_id: str, key_id: str, amount: int, owner: str, created_at: float) -> dict:
    return {"id": hold_id, "key_id": key_id, "amount_nano": amount, "owner": owner, "created_at": created_at}


def _grant_and_hold_query(amount: int, key_id: str, worst: int, hold_id: str, hold_key_id: str, hold_amount: int,
                          owner: str, created_at: float) -> pw.Query:
    """PostgreSQL: the grant and its hold row in one statement (one round trip, as without holds)."""
    granted = _grant_query(amount, key_id, worst).returning(ApiKey.id).cte("granted")
    values = _hold_fields(hold_id, hold_key_id, hold_amount, owner, created_at)
    row = granted.select(*[pw.Value(value) for value in values.values()])
    return BudgetHold.insert_from(row, [getattr(BudgetHold, name) for name in values]).with_cte(granted)


GRANT = Prepared(_grant_query)
INSERT_HOLD = Prepared(lambda *values: BudgetHold.insert(_hold_fields(*values)))
GRANT_AND_HOLD = Prepared(_grant_and_hold_query)


def _hold(reservation: Reservation) -> bool:
    """One attempt at the conditional reservation; whether it was granted."""
    amount, key_id = reservation.amount, reservation.key_id
    hold = (new_id("hold"), key_id, amount, holds.owner(), time.time())
    if is_postgres():
        if not GRANT_AND_HOLD.rowcount(amount, key_id, amount, *hold):
            return False
    else:
        with database.atomic():
            if GRANT.rowcount(amount, key_id, amount) != 1:
                return False
            INSERT_HOLD.rowcount(*hold)
    reservation.hold_id = hold[0]
    return True


@dataclass
class LogEntry:
    key_id: str
    endpoint: str
    model: str
    account: Optional[str]
    stream: bool
    status_code: int
    usage: Usage
    cost: int
    started: float
    response_id: Optional[str] = None
    error: Optional[str] = None


LOG_FIELDS = ("id", "key_id", "created_at", "endpoint", "model", "account", "stream", "status_code",
              "input_tokens", "output_tokens", "cached_tokens", "cost_nano", "latency_ms", "response_id", "error")
INSERT_LOG = Prepared(lambda *values: RequestLog.insert(dict(zip(LOG_FIELDS, values))))
DROP_HOLD = Prepared(lambda hold_id: BudgetHold.delete().where(BudgetHold.id == hold_id))
CHARGE = Prepared(lambda charge, held, now, key_id: ApiKey.update(
    reserved_nano=ApiKey.reserved_nano - held, used_nano=ApiKey.used_nano + charge,
    last_used_at=now).where(ApiKey.id == key_id))


# Deleting the hold is the claim on its amount (see holds.py): released once, by whoever deletes it.
SETTLE_SQL_POSTGRES = """
WITH dropped AS (DELETE FROM budget_hold WHERE id = %s RETURNING amount_nano),
charged AS (
    UPDATE api_key SET used_nano = used_nano + %s,
        reserved_nano = reserved_nano - COALESCE((SELECT sum(amount_nano) FROM dropped), 0), last_used_at = %s
    WHERE id = %s RETURNING id)
INSERT INTO request_log ({columns}) VALUES ({values})
""".format(columns=", ".join(f'"{name}"' for name in LOG_FIELDS), values=", ".join(["%s"] * len(LOG_FIELDS)))


def settle(reservation: Optional[Reservation], entry: LogEntry) -> int:
    """Release the hold, charge the real cost (at most the hold) and write the log row; returns the charge."""
    charge = entry.cost if reservation is None else min(entry.cost, reservation.amount)
    now = time.time()
    usage = entry.usage
    log_row = (new_id("req"), entry.key_id, entry.started, entry.endpoint, entry.model, entry.account, entry.stream,
               entry.status_code, usage.input_tokens, usage.output_tokens, usage.cached_tokens, charge,
               int((now - entry.started) * 1000), entry.response_id, (entry.error or None) and entry.error[:500])
    if reservation is not None and reservation.hold_id is not None and is_postgres():
        # one statement: the key's row is locked for the statement only, never across round trips
        database.execute_sql(SETTLE_SQL_POSTGRES, (reservation.hold_id, charge, int(now), reservation.key_id,
                                                   *log_row))
    else:
        with database.atomic():
            if reservation is not None:
                # the hold may have been given back already (its process was taken for dead): release it once only
                held = _drop_hold(reservation)
                CHARGE.rowcount(charge, held, int(now), reservation.key_id)
            INSERT_LOG.rowcount(*log_row)
    note_settled(entry.account, charge, entry.usage.input_tokens + entry.usage.output_tokens, entry.started)
    return charge


def _drop_hold(reservation: Reservation) -> int:
    """Delete the reservation's hold row; the amount to release (0 when it was already given back)."""
    if reservation.hold_id is None:
        return 0
    return reservation.amount if DROP_HOLD.rowcount(reservation.hold_id) else 0


def release(reservation: Reservation) -> None:
    """Give back a hold for a request that never reached an upstream."""
    with database.atomic():
        held = _drop_hold(reservation)
        if held:
            ApiKey.update(reserved_nano=ApiKey.reserved_nano - held).where(ApiKey.id == reservation.key_id).execute()
