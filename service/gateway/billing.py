"""Prices, the atomic budget reservation, settlement and the request log.

A request reserves its worst case before it goes upstream, in one conditional
UPDATE (`used + reserved + worst <= budget`), so concurrent requests can never
spend past the limit. Settlement releases the reservation and charges the real
cost, capped at the reservation, in the same transaction that writes the
request-log row: the log and the spend always agree.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from ..db import database
from ..ids import new_id
from ..models import ApiKey, RequestLog
from ..money import cost_nano
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


class BudgetExhausted(Exception):
    """The key cannot afford even a minimal answer."""


def plan_reservation(key: ApiKey, model: ModelInfo, input_tokens: int, requested_output: Optional[int]) -> Reservation:
    """The worst case of a request, its output capped at what the key's remaining budget affords."""
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
    """Hold the worst case atomically; BudgetExhausted when the key cannot cover it now."""
    key = ApiKey
    condition = (key.id == reservation.key_id)
    condition &= key.budget_nano.is_null() | (
        (key.used_nano < key.budget_nano)
        & (key.used_nano + key.reserved_nano + reservation.amount <= key.budget_nano))
    updated = key.update(reserved_nano=key.reserved_nano + reservation.amount).where(condition).execute()
    if updated != 1:
        raise BudgetExhausted()


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


def settle(reservation: Optional[Reservation], entry: LogEntry) -> int:
    """Release the hold, charge the real cost (at most the hold) and write the log row; returns the charge."""
    charge = entry.cost if reservation is None else min(entry.cost, reservation.amount)
    now = time.time()
    with database.atomic():
        if reservation is not None:
            ApiKey.update(reserved_nano=ApiKey.reserved_nano - reservation.amount,
                          used_nano=ApiKey.used_nano + charge, last_used_at=int(now)).where(
                ApiKey.id == reservation.key_id).execute()
        RequestLog.insert(
            id=new_id("req"), key_id=entry.key_id, created_at=entry.started, endpoint=entry.endpoint,
            model=entry.model, account=entry.account, stream=entry.stream, status_code=entry.status_code,
            input_tokens=entry.usage.input_tokens, output_tokens=entry.usage.output_tokens,
            cached_tokens=entry.usage.cached_tokens, cost_nano=charge,
            latency_ms=int((now - entry.started) * 1000), response_id=entry.response_id,
            error=(entry.error or None) and entry.error[:500]).execute()
    note_settled(entry.account, charge, entry.usage.input_tokens + entry.usage.output_tokens, entry.started)
    return charge


def release(reservation: Reservation) -> None:
    """Give back a hold for a request that never reached an upstream."""
    ApiKey.update(reserved_nano=ApiKey.reserved_nano - reservation.amount).where(
        ApiKey.id == reservation.key_id).execute()
