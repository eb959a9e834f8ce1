"""Budget holds: who holds each in-flight reservation, so the holds of a crashed process can be given back.

Every reservation is a `budget_hold` row named by its owner process (host and
pid namespace, pid, start time). A process that dies with requests in flight
(kill -9, out of memory, power loss, its machine gone) leaves its holds behind.
Every serving process keeps a lease (leases.py); an owner whose lease lapsed is
dead wherever it ran, and any process gives its holds back at its next
heartbeat. A process of the same host and pid namespace can tell sooner: an
owner whose pid no longer runs is dead at once (at start, and before a 402).
Deleting the row is the claim: whoever deletes it (the settling request or the
sweep) is the one that releases its amount.

A hold shares its id with its call's request-log row, written when the call
settles; the hold keeps what that row will say (billing.grant): a hold of a
stopped process writes it as abandoned (status 499), charged what was known: its
input's estimate. (Processes older than schema 13 wrote the row `IN_FLIGHT` with
the hold instead; their holds settle that row.)
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Optional

import peewee as pw

from ..storage.db import database
from ..storage.models import HOLD_PENDING_COLUMNS, IN_FLIGHT, ApiKey, BudgetHold, RequestLog
from . import leases
from .canonical import Usage
from .pricing import price_tokens

log = logging.getLogger("onekeyllm.billing")

SWEEP_INTERVAL = 30.0  # seconds between sweeps a process makes on its own (after a 402)
ABANDONED = 499  # the status of a call whose process stopped before it settled
ABANDONED_NOTE = "the gateway process serving this call stopped before it settled; charged the input's estimate"
LEASELESS_PERIODS = 2  # a hold whose owner wrote no lease is an orphan once this many lease periods old

_identity: dict = {}
_next_sweep = 0.0


def _start_ticks(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (tells a pid from its reuse), None if unknown.

    A zombie (dead, not yet reaped by its parent) counts as gone: "-".
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return "-" if fields[0] in ("Z", "X") else fields[19]


def _place() -> str:
    """Where pids mean the same process: this host and pid namespace (containers may share a hostname)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}"


def owner() -> str:
    """This process's name on its holds, `place:pid:start-ticks` (recomputed after a fork)."""
    pid = os.getpid()
    if _identity.get("pid") != pid:
        _identity.update(pid=pid, place=_place(), name=f"{_place()}:{pid}:{_start_ticks(pid) or 0}")
    return _identity["name"]


def _runs_here(name: str) -> Optional[bool]:
    """Whether an owner of this host and pid namespace still runs; None for an owner of another place."""
    parts = name.rsplit(":", 2)
    owner()  # this process's place, known
    if len(parts) != 3 or parts[0] != _identity["place"] or not parts[1].isdigit():
        return None
    pid, ticks = int(parts[1]), parts[2]
    if pid == os.getpid():
        return name == owner()
    current = _start_ticks(pid)
    if current is not None:  # the same pid started later is another process
        return current != "-" and (ticks == "0" or current == ticks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, it is just not ours to signal
        return True
    return True


def owner_runs(name: str, created_at: float, now: float, lease_expires: Optional[float] = None) -> bool:
    """Whether the owner of a hold may still be running (when in doubt, yes).

    `lease_expires`: when the owner's lease lapses (None: it has no lease row). A lapsed lease is a dead
    owner wherever it ran; an owner of this place whose pid is gone is dead before its lease lapses.
    """
    here = _runs_here(name)
    if here is False:
        return False
    if lease_expires is not None:
        return lease_expires > now
    if here:
        return True
    # every serving process writes its lease before its first hold: none after a while, none renews it
    return now - created_at < LEASELESS_PERIODS * leases.period()


def give_back(hold_id: str, key_id: Optional[str] = None, amount: Optional[int] = None) -> int:
    """Delete one hold and release its amount from its key; the amount released (0 if already gone).

    `key_id` and `amount`, when the caller knows them (its own hold), spare reading the hold first.
    """
    if key_id is None or amount is None:
        hold = BudgetHold.get_or_none(BudgetHold.id == hold_id)  # a hold never changes: read it outside
        if hold is None:
            return 0
        key_id, amount = hold.key_id, hold.amount_nano
    with database.atomic():  # writes first: SQLite cannot turn a read transaction into a write under load
        if BudgetHold.delete().where(BudgetHold.id == hold_id).execute() != 1:
            return 0
        ApiKey.update(reserved_nano=ApiKey.reserved_nano - amount).where(ApiKey.id == key_id).execute()
    return amount


def settle_abandoned(hold_id: str) -> int:
    """Give back the hold of a stopped process and write its call's row (status 499), charged the input's
    estimate (never more than the hold); the amount released (0 if already gone)."""
    hold = BudgetHold.get_or_none(BudgetHold.id == hold_id)  # it never changes while its owner is gone
    if hold is None:
        return 0
    legacy = None if hold.endpoint is not None else RequestLog.get_or_none(
        (RequestLog.id == hold_id) & (RequestLog.status_code == IN_FLIGHT))  # a process older than schema 13's
    known = legacy or hold
    charge = 0
    if known.endpoint is not None and known.prices:
        charge = min(price_tokens(json.loads(known.prices), Usage(input_tokens=known.input_tokens)), hold.amount_nano)
    settled = dict(status_code=ABANDONED, cost_nano=charge, error=ABANDONED_NOTE,
                   latency_ms=int((time.time() - known.created_at) * 1000))
    with database.atomic():
        if BudgetHold.delete().where(BudgetHold.id == hold_id).execute() != 1:
            return 0
        if hold.endpoint is not None:
            RequestLog.insert(id=hold_id, key_id=hold.key_id, created_at=hold.created_at, **settled,
                              **{name: getattr(hold, name) for name in HOLD_PENDING_COLUMNS}).execute()
        elif legacy is None or not RequestLog.update(**settled).where(
                (RequestLog.id == hold_id) & (RequestLog.status_code == IN_FLIGHT)).execute():
            charge = 0
        ApiKey.update(reserved_nano=ApiKey.reserved_nano - hold.amount_nano,
                      used_nano=ApiKey.used_nano + charge).where(ApiKey.id == hold.key_id).execute()
    return hold.amount_nano


def reclaim_orphaned_holds() -> int:
    """Give back every hold whose owner no longer runs, settling its call's row (settle_abandoned); returns
    how many (0 if the database said no)."""
    now = time.time()
    try:
        held = list(BudgetHold.select(BudgetHold.id, BudgetHold.owner, BudgetHold.created_at).tuples())
        owners = {name for _, name, _ in held}
        expiries = leases.expiries(owners)
        orphans = [hold_id for hold_id, name, created_at in held
                   if not owner_runs(name, created_at, now, expiries.get(name))]
        released = sum(1 for hold_id in orphans if settle_abandoned(hold_id))
        leases.forget_lapsed(now, keep=owners)
    except pw.DatabaseError:  # a busy database: the next sweep will do it; never fail a start or a request
        log.warning("could not give back budget holds now", exc_info=True)
        return 0
    if released:
        log.warning("gave back %d budget holds of stopped processes", released)
    return released


def give_back_own_holds() -> int:
    """Give back every hold this process still has (a stop, once its calls are ended), settling their calls'
    rows as abandoned (status 499); how many."""
    mine = [hold_id for (hold_id,) in BudgetHold.select(BudgetHold.id).where(BudgetHold.owner == owner()).tuples()]
    return sum(1 for hold_id in mine if settle_abandoned(hold_id))


def sweep_if_due() -> int:
    """reclaim_orphaned_holds(), at most once per SWEEP_INTERVAL in this process."""
    global _next_sweep
    now = time.monotonic()
    if now < _next_sweep:
        return 0
    _next_sweep = now + SWEEP_INTERVAL
    return reclaim_orphaned_holds()
