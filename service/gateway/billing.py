"""Prices, the atomic budget reservation, settlement and the request log.

A request reserves its worst case before it goes upstream, in one conditional
UPDATE (`used + reserved + worst <= budget`), so concurrent requests can never
spend past the limit; a `budget_hold` row written with it names the process
holding it, so the holds of a crashed process can be given back (holds.py), and
what the call's request-log row will say, so a call that reached an upstream has
its row even if the process is killed. The worst case is a true upper bound
(tokens.bound_request, the output cap), so the real cost fits it. Settlement
releases the reservation and charges the real cost, in the same transaction
that writes the request-log row: the log and the spend always agree. An
upstream that reports more than its bound is charged up to the key's limit
only, the rest recorded as the row's overage and its account flagged.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Optional

from .. import json_codec
from ..ids import new_id
from ..money import cost_nano, usd
from ..storage.account_windows import (
    ACCOUNT_STATE_SQL_POSTGRES,
    PICK_ACCOUNT_SQL_POSTGRES,
    account_state,
    candidate_rows_sqlite,
    pick_account_sqlite,
)
from ..storage.db import database, is_postgres
from ..storage.group_commit import GroupCommit, let_ready_greenlets_run
from ..storage.models import HOLD_PENDING_COLUMNS, Account, ApiKey, BudgetHold, RequestLog
from ..storage.prepared import Prepared, ServerPrepared, model_rows
from . import holds
from .canonical import Usage
from .catalog import VERSION_KEY as CATALOG_VERSION_KEY
from .catalog import ModelInfo
from .pricing import highest_input_price, price_tokens, prices_of

DEFAULT_MAX_OUTPUT = 4096
OUTPUT_TOKENS_MAX = 10**9


def price_usage(model: ModelInfo, usage: Usage) -> int:
    """The exact cost of `usage` in nano-dollars: input, cached input, cache writes and output at their prices."""
    return price_tokens(prices_of(model), usage)


@dataclass
class Reservation:
    key_id: str
    amount: int  # nano-dollars held
    max_output_tokens: int  # what the budget affords (the request is capped at this)
    capped: bool  # whether the budget lowered the request's own limit
    hold_id: Optional[str] = None  # the budget_hold row, once reserved (and the id of the call's log row)
    tokens: int = 0  # the worst case in tokens (the input's bound, and the output allowed)
    candidates: tuple = ()  # ids of the accounts that may serve it, in the order to try them
    account_id: Optional[str] = None  # the account whose window capacity it holds too (account_windows.py)
    pending: Optional["PendingRow"] = None  # what the call's row says if its process dies: kept with the hold


@dataclass
class PendingRow:
    """What a call's request-log row says before the upstream answers: a killed call is settled on it
    (holds.settle_abandoned). Its fields are the hold's HOLD_PENDING_COLUMNS, by name."""

    endpoint: str
    model: str
    stream: bool
    input_tokens: int  # the input's estimate: what a killed call is charged (holds.settle_abandoned)
    prices: str  # the model's prices (pricing.prices_json)
    request_id: Optional[str] = None


class BudgetExhausted(Exception):
    """The key cannot afford even a minimal answer."""


def plan_reservation(key: Optional[ApiKey], model: ModelInfo, input_bound: int,
                     requested_output: Optional[int], cache_writes: bool = False) -> Reservation:
    """The worst case of a request, its output capped at what the key's remaining budget affords.

    `input_bound`: input tokens no upstream can count more of (tokens.bound_request), each priced as the
    dearest kind of input (a cache write where the request asks for caching: `cache_writes`).
    Without the key's row (not read yet: the grant by hash reads it), the worst case is not capped; a grant
    it does not fit is refused, and the request is planned again on the key's own figures.
    """
    try:
        return _plan(key, model, input_bound, requested_output, cache_writes)
    except BudgetExhausted:
        if not holds.sweep_if_due():
            raise
    # holds of a stopped process were just given back: plan again on the key's current figures
    return _plan(ApiKey.get_by_id(key.id), model, input_bound, requested_output, cache_writes)


def _plan(key: Optional[ApiKey], model: ModelInfo, input_bound: int, requested_output: Optional[int],
          cache_writes: bool) -> Reservation:
    # never more than the model can write, nor than a token count holds (rows keep 32-bit counts)
    wanted = min(requested_output or model.max_output_tokens or DEFAULT_MAX_OUTPUT,
                 model.max_output_tokens or OUTPUT_TOKENS_MAX, OUTPUT_TOKENS_MAX)
    input_cost = cost_nano(input_bound, highest_input_price(prices_of(model), cache_writes))
    out_price = model.output_nano_per_mtok
    capped = False
    if key is not None and key.budget_nano is not None:
        remaining = key.budget_nano - key.used_nano - key.reserved_nano
        if remaining <= 0 or input_cost > remaining:
            raise BudgetExhausted()
        if out_price > 0:
            affordable = (remaining - input_cost) * 1_000_000 // out_price
            if affordable < 1:
                raise BudgetExhausted()
            if affordable < wanted:
                wanted, capped = int(affordable), True
    return Reservation(key.id if key is not None else "", input_cost + cost_nano(wanted, out_price), wanted, capped,
                       tokens=input_bound + wanted)


def reserve(reservation: Reservation) -> ApiKey:
    """Hold the worst case atomically, in a hold row named by this process; the key's row as granted.

    BudgetExhausted if the key cannot afford it (after giving back the holds of stopped processes, if due).
    """
    granted = grant(reservation)
    if granted is None and holds.sweep_if_due():
        granted = grant(reservation)
    if granted is None:
        raise BudgetExhausted()
    return granted


# The grant: the conditional reservation, its hold row, the key's row as it now is and the catalog version,
# in one statement on PostgreSQL. By hash, it is also the key's authentication: a key that is revoked,
# disabled or expired is granted nothing. Its commit does not wait for the WAL flush (synchronous_commit off
# for this transaction only): a reservation only ever holds budget back, and the settlement that follows is a
# synchronous commit, which makes it durable too.
# It also picks the account (the first of the call's candidates that is not cooling down and whose window
# limits its worst case fits: the hold names it, storage/account_windows.py) and answers the candidates'
# shared state (cooldowns, rate-limit headers), so that routing follows what every process learned.
_BUDGET_CONDITION = ("(budget_nano IS NULL OR (used_nano < budget_nano AND used_nano + reserved_nano + {p} "
                     "<= budget_nano))")
_MATCH = {"id": "id = {p}",
          "hash": "key_hash = {p} AND NOT revoked AND NOT disabled AND (expires_at IS NULL OR expires_at > {p})"}
_HOLD_FIELDS = ("id", "key_id", "amount_nano", "owner", "created_at", "account_id", "tokens", *HOLD_PENDING_COLUMNS)
_HOLD_COLUMNS = ", ".join(_HOLD_FIELDS)
LOG_FIELDS = ("id", "key_id", "created_at", "endpoint", "model", "account", "stream", "status_code",
              "input_tokens", "output_tokens", "cached_tokens", "cost_nano", "latency_ms", "response_id", "error",
              "request_id", "cache_write_tokens", "cache_write_1h_tokens", "overage_nano", "prices")
_LOG_COLUMNS = ", ".join(f'"{name}"' for name in LOG_FIELDS)


def _pending_values(pending: Optional[PendingRow]) -> tuple:
    """The hold's HOLD_PENDING_COLUMNS: what its call's row says if its process dies before settling it."""
    return tuple(getattr(pending, name) if pending is not None else None for name in HOLD_PENDING_COLUMNS)


GRANT_SQL_POSTGRES = {by: f"""
WITH granted AS (
    UPDATE api_key SET reserved_nano = reserved_nano + %s WHERE {match.format(p="%s")} AND {_BUDGET_CONDITION.format(p="%s")}
    RETURNING *, {PICK_ACCOUNT_SQL_POSTGRES} AS picked_account),
held AS (INSERT INTO budget_hold ({_HOLD_COLUMNS})
    SELECT %s, granted.id, %s, %s, %s, granted.picked_account, %s{", %s" * len(HOLD_PENDING_COLUMNS)} FROM granted)
SELECT granted.*, (SELECT value FROM setting WHERE "key" = %s) AS catalog_version,
    {ACCOUNT_STATE_SQL_POSTGRES} AS account_state, set_config('synchronous_commit', 'off', true) AS async_commit
FROM granted""" for by, match in _MATCH.items()}
GRANT_POSTGRES = {by: ServerPrepared(sql) for by, sql in GRANT_SQL_POSTGRES.items()}
GRANT_SQL_SQLITE = {by: (f"UPDATE api_key SET reserved_nano = reserved_nano + ? WHERE {match} AND {_BUDGET_CONDITION} "
                         'RETURNING *, (SELECT value FROM setting WHERE "key" = ?) AS catalog_version').format(p="?")
                    for by, match in _MATCH.items()}
INSERT_HOLD_SQL_SQLITE = f"INSERT INTO budget_hold ({_HOLD_COLUMNS}) VALUES ({', '.join('?' * len(_HOLD_FIELDS))})"


def grant(reservation: Reservation, key_hash: Optional[str] = None) -> Optional[ApiKey]:
    """One attempt at the reservation, for the key `reservation.key_id` or else the live key `key_hash`.

    The key's row once granted (with `catalog_version`, and `account_state`: [id, cooldown_until, last_headers,
    last_checked_at] of each candidate account), None when not granted. Sets `hold_id`, `key_id`, `account_id`.
    With `reservation.pending`, the hold keeps what its call's request-log row (id `hold_id`) says if its
    process dies before settling it.
    """
    now = time.time()
    by, match = ("hash", (key_hash, int(now))) if key_hash is not None else ("id", (reservation.key_id,))
    amount, hold_id, owner, tokens = reservation.amount, new_id("req"), holds.owner(), reservation.tokens
    candidates = list(reservation.candidates)
    pending = _pending_values(reservation.pending)
    if is_postgres():
        params = (amount, *match, amount, candidates, amount, tokens, now, hold_id, amount, owner, now, tokens,
                  *pending, CATALOG_VERSION_KEY, candidates)
        rows = GRANT_POSTGRES[by].run(lambda sql: model_rows(ApiKey, database.execute_sql(sql, params)))
        row = rows[0] if rows else None
        if row is not None:
            row.account_state = json.loads(row.account_state or "[]")
    else:
        job = _SqliteGrant((by, match, amount, hold_id, owner, tokens, candidates, now, pending))
        SQLITE_WRITES.submit(job)  # committed with whatever else this process writes meanwhile
        row = job.row
    if row is None:
        return None
    row.catalog_version = row.catalog_version or "0"  # no admin write yet
    reservation.key_id, reservation.hold_id, reservation.account_id = row.id, hold_id, row.picked_account
    return row


class _SqliteGrant:
    """A grant for the SQLite writer (SQLITE_WRITES): its arguments, and the key's row once granted."""

    __slots__ = ("args", "row")

    def __init__(self, args: tuple):
        self.args = args
        self.row: Optional[ApiKey] = None

    def write(self) -> None:
        """Inside the writer's transaction (BEGIN IMMEDIATE: the write lock is held)."""
        by, match, amount, hold_id, owner, tokens, candidates, now, pending = self.args
        rows = model_rows(ApiKey, database.execute_sql(GRANT_SQL_SQLITE[by], (amount, *match, amount,
                                                                              CATALOG_VERSION_KEY)))
        if not rows:
            self.row = None
            return
        row = rows[0]
        accounts = candidate_rows_sqlite(candidates)  # one read: the pick's and the shared state's
        row.picked_account = pick_account_sqlite(candidates, amount, tokens, now, rows=accounts)
        database.execute_sql(INSERT_HOLD_SQL_SQLITE, (hold_id, row.id, amount, owner, now, row.picked_account,
                                                      tokens, *pending))
        row.account_state = account_state(accounts)
        self.row = row


RESERVE_ACCOUNT_SQL_POSTGRES = ("UPDATE budget_hold SET account_id = okl_pick_account(%s::text[], %s, %s, %s, true), "
                                "tokens = %s WHERE id = %s RETURNING account_id")


def reserve_account(reservation: Reservation, account_id: str) -> bool:
    """Move the held window capacity to another account (failover, or an account tried although cooling down).

    False when its window limits cannot take the worst case: the account is not to be called.
    """
    if reservation.hold_id is None:
        return True
    now, amount, tokens = time.time(), reservation.amount, reservation.tokens
    if is_postgres():
        row = database.execute_sql(RESERVE_ACCOUNT_SQL_POSTGRES,
                                   ([account_id], amount, tokens, now, tokens, reservation.hold_id)).fetchone()
        picked = row[0] if row else None
    else:
        with database.atomic():
            picked = pick_account_sqlite([account_id], amount, tokens, now, cooled_ok=True)
            BudgetHold.update(account_id=picked, tokens=tokens).where(BudgetHold.id == reservation.hold_id).execute()
    reservation.account_id = picked
    return picked == account_id


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
    request_id: Optional[str] = None
    prices: Optional[str] = None  # pricing.prices_json of the prices `cost` was computed at


# an upsert: a call taken for dead (its hold given back, its row written with status 499) that settles after all
# writes its row over that one
_SETTLED_FIELDS = [name for name in LOG_FIELDS if name not in ("id", "key_id", "created_at")]
INSERT_LOG = Prepared(lambda *values: RequestLog.insert(dict(zip(LOG_FIELDS, values))).on_conflict(
    conflict_target=[RequestLog.id], preserve=[RequestLog._meta.fields[name] for name in _SETTLED_FIELDS]))
_UPSERT_LOG = "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f'"{name}" = EXCLUDED."{name}"' for name in _SETTLED_FIELDS)
COST_AT = LOG_FIELDS.index("cost_nano")
OVERAGE_AT = LOG_FIELDS.index("overage_nano")
DROP_HOLD = Prepared(lambda hold_id: BudgetHold.delete().where(BudgetHold.id == hold_id))
CHARGE = Prepared(lambda charge, held, now, key_id: ApiKey.update(
    reserved_nano=ApiKey.reserved_nano - held, used_nano=ApiKey.used_nano + charge,
    last_used_at=now).where(ApiKey.id == key_id))


@dataclass
class Settlement:
    """What settling one request writes: its hold released, its key charged, its log row."""

    hold_id: Optional[str]  # None: nothing was held (or no key to charge, with key_id None)
    key_id: Optional[str]
    amount: int  # what the hold held
    charge: int
    now: float
    log_row: tuple
    also: Optional["_Statement"] = None  # one more write committed with it (a stored response)


# Deleting the hold is the claim on its amount (see holds.py): released once, by whoever deletes it.
# A key's row is locked for the statement only, never across round trips.
_LOG_VALUES = "(" + ", ".join(["%s"] * len(LOG_FIELDS)) + ")"
SETTLE_SQL_POSTGRES = f"""
WITH dropped AS (DELETE FROM budget_hold WHERE id = %s RETURNING amount_nano),
charged AS (
    UPDATE api_key SET used_nano = used_nano + %s,
        reserved_nano = reserved_nano - COALESCE((SELECT sum(amount_nano) FROM dropped), 0), last_used_at = %s
    WHERE id = %s RETURNING id)
INSERT INTO request_log ({_LOG_COLUMNS}) VALUES {_LOG_VALUES} {_UPSERT_LOG}
"""
SETTLE_POSTGRES = ServerPrepared(SETTLE_SQL_POSTGRES)
# Many settlements in one statement, the batch as one JSON parameter: prepared once per connection whatever its
# size, and one string for psycopg2 to quote instead of 23 values a call (a batch of 2–9: 20–40 % less of the
# database's CPU a settlement than the same batch as VALUES, planned each time; a lone settlement costs less by the
# statement above, whose JSON reading would add ~100 µs: bench/README.md). Each key's row is updated once, by the
# sum of its charges and releases.
SETTLE_MANY_SQL_POSTGRES = f"""
WITH source AS (SELECT %s::json AS batch),
settled AS (SELECT * FROM json_to_recordset((SELECT batch FROM source)) AS s(hold_id text, charged_key text,
                                                                             charge bigint)),
dropped AS (DELETE FROM budget_hold WHERE id IN (SELECT hold_id FROM settled) RETURNING id, amount_nano),
per_key AS (
    SELECT s.charged_key AS key_id, sum(s.charge) AS charge, COALESCE(sum(d.amount_nano), 0) AS released
    FROM settled s LEFT JOIN dropped d ON d.id = s.hold_id WHERE s.charged_key IS NOT NULL GROUP BY s.charged_key),
charged AS (
    UPDATE api_key SET used_nano = used_nano + per_key.charge, reserved_nano = reserved_nano - per_key.released,
        last_used_at = %s
    FROM per_key WHERE api_key.id = per_key.key_id RETURNING api_key.id)
INSERT INTO request_log ({_LOG_COLUMNS})
SELECT {_LOG_COLUMNS} FROM json_populate_recordset(NULL::request_log, (SELECT batch FROM source)) {_UPSERT_LOG}
"""
SETTLE_MANY_POSTGRES = ServerPrepared(SETTLE_MANY_SQL_POSTGRES)


def settle(reservation: Optional[Reservation], entry: LogEntry, also: Optional[tuple] = None) -> int:
    """Release the hold, charge the real cost and settle the log row; returns the charge.

    `also`: one more write statement (SQL, params) committed with it, in the same transaction (on PostgreSQL in
    the same round trip too: `_write_settlements_postgres`).

    The charge is the cost; only a cost past the hold (an upstream that reported more than its bound) is
    charged up to the key's limit, the rest recorded as the row's overage (`_settle_overage`).
    Returns once all of it is committed: requests that settle together share one transaction (group_commit).
    """
    now = time.time()
    usage = entry.usage
    held = reservation is not None
    row_id = reservation.hold_id if held and reservation.hold_id else new_id("req")
    log_row = (row_id, entry.key_id, entry.started, entry.endpoint, entry.model, entry.account, entry.stream,
               entry.status_code, usage.input_tokens, usage.output_tokens, usage.cached_tokens, entry.cost,
               int((now - entry.started) * 1000), entry.response_id, (entry.error or None) and entry.error[:500],
               entry.request_id, usage.cache_write_tokens, usage.cache_write_1h_tokens, 0, entry.prices)
    settlement = Settlement(reservation.hold_id if held else None, reservation.key_id if held else None,
                            reservation.amount if held else 0, entry.cost, now, log_row,
                            _Statement(*also) if also else None)
    if held and entry.cost > reservation.amount:
        return _settle_overage(settlement, entry.account)
    (SETTLEMENTS if is_postgres() else SQLITE_WRITES).submit(settlement)
    return entry.cost


def _settle_overage(s: Settlement, account: Optional[str]) -> int:
    """Settle a cost past its hold: charged up to the key's limit, the rest the row's overage; the account
    flagged. Rare (an upstream past its bound), so written alone, with the key's row locked."""
    cost = s.charge
    with database.atomic():  # SQLite's transactions begin IMMEDIATE (storage/db.py): the key's row is ours
        if s.also is not None:
            s.also.write()
        released = s.amount if s.hold_id is not None and DROP_HOLD.rowcount(s.hold_id) else 0
        query = ApiKey.select(ApiKey.budget_nano, ApiKey.used_nano, ApiKey.reserved_nano).where(ApiKey.id == s.key_id)
        key = (query.for_update() if is_postgres() else query).get()
        if key.budget_nano is None:
            charge = cost
        else:  # what no other hold has reserved: the limit is never passed, others' worst cases still fit
            charge = min(cost, max(0, key.budget_nano - key.used_nano - (key.reserved_nano - released)))
        CHARGE.rowcount(charge, released, int(s.now), s.key_id)
        row = list(s.log_row)
        row[COST_AT], row[OVERAGE_AT] = charge, cost - charge
        INSERT_LOG.rowcount(*row)
        if account is not None:
            note = (f"reported usage past the bound it was given: {usd(cost)} USD for a hold of {usd(s.amount)} "
                    f"(request {s.log_row[0]}; {usd(cost - charge)} USD past the key's limit, not charged)")
            Account.update(last_error=note).where(Account.name == account).execute()
    return charge


def _write_settlements_postgres(batch: list) -> None:
    """The batch's settlement statement, after the statements they carry (`Settlement.also`) in the same query:
    one round trip, and one transaction (several statements in one query string run as one)."""
    carried = [s.also for s in batch if s.also is not None]
    before = "".join(f"{statement.sql}; " for statement in carried)
    before_params = tuple(value for statement in carried for value in statement.params)
    if len(batch) == 1 and batch[0].hold_id is not None:
        s = batch[0]
        params = (*before_params, s.hold_id, s.charge, int(s.now), s.key_id, *s.log_row)
        SETTLE_POSTGRES.run(lambda sql: database.execute_sql(before + sql, params))
        return
    rows = [{**dict(zip(LOG_FIELDS, s.log_row)), "hold_id": s.hold_id, "charged_key": s.key_id, "charge": s.charge}
            for s in batch]
    params = (*before_params, json_codec.dumps(rows).decode("utf-8"), int(max(s.now for s in batch)))
    SETTLE_MANY_POSTGRES.run(lambda sql: database.execute_sql(before + sql, params))


def _write_settlements_sqlite(batch: list) -> None:
    """Inside the writer's transaction: each key's row updated once, by the sum of its charges and releases."""
    now = int(max(s.now for s in batch))
    # the hold may have been given back already (its process was taken for dead): released once only, by
    # whichever deletes it
    dropped = _drop_holds_sqlite([s.hold_id for s in batch if s.key_id is not None and s.hold_id is not None])
    per_key: dict = {}
    for s in batch:
        if s.key_id is None:
            continue
        released = s.amount if s.hold_id in dropped else 0
        charge, total = per_key.get(s.key_id, (0, 0))
        per_key[s.key_id] = (charge + s.charge, total + released)
    for key_id, (charge, released) in per_key.items():
        CHARGE.rowcount(charge, released, now, key_id)
    INSERT_LOG.run_many([s.log_row for s in batch])  # compiled once (prepared.py), one call into the driver


def _drop_holds_sqlite(hold_ids: list) -> set:
    """Delete these holds in one statement; the ids of those that were still there."""
    if not hold_ids:
        return set()
    marks = ", ".join(["?"] * len(hold_ids))
    return {row[0] for row in database.execute_sql(f"DELETE FROM budget_hold WHERE id IN ({marks}) RETURNING id",
                                                   hold_ids)}


class _Statement:
    """One write statement committed with a settlement (a stored response)."""

    __slots__ = ("sql", "params")

    def __init__(self, sql: str, params: tuple):
        self.sql, self.params = sql, params

    def write(self) -> None:
        database.execute_sql(self.sql, self.params)


def _write_sqlite(items: list) -> None:
    """One transaction of the SQLite writer: the settlements first (what they release, grants may use), then
    the grants and other writes, in the order they came."""
    settlements = [item for item in items if isinstance(item, Settlement)]
    if settlements:
        _write_settlements_sqlite(settlements)
        for settlement in settlements:
            if settlement.also is not None:
                settlement.also.write()
    for item in items:
        if not isinstance(item, Settlement):
            item.write()


# PostgreSQL: settlements that queue behind one another (each call waits on the server) share a statement.
SETTLEMENTS: GroupCommit[Settlement] = GroupCommit(lambda s: _write_settlements_postgres([s]),
                                                  _write_settlements_postgres, gather=let_ready_greenlets_run)
# SQLite: one writer per process for the grants and the settlements. Its transaction begins IMMEDIATE (the file's
# write lock, which the other workers' writers hold in turn); what queues while it waits is written with it, so
# under load N calls cost one BEGIN and one commit instead of 2N, and a process's requests never poll the lock
# against each other.
SQLITE_WRITES: GroupCommit = GroupCommit(lambda item: _write_sqlite([item]), _write_sqlite,
                                         transaction=lambda: database.atomic(),
                                         counted=lambda item: isinstance(item, Settlement),
                                         gather=let_ready_greenlets_run)


def settlement_counts() -> tuple:
    """(transactions that wrote settlements, settlements) of this process, for diagnostics."""
    writer = SETTLEMENTS if is_postgres() else SQLITE_WRITES
    return writer.transactions, writer.items


def release(reservation: Reservation) -> None:
    """Give back a hold for a request that never reached an upstream."""
    if reservation.hold_id is not None:
        holds.give_back(reservation.hold_id, reservation.key_id, reservation.amount)
