"""Account window limits reserved like budgets: the pick the grant makes among an ordered list of accounts.

An account's `limits` may cap what it serves in a rolling window (`five_hour_requests`, `weekly_usd` in
nano-dollars, …). What a window holds is its request-log rows plus the budget holds in flight on the
account (each hold names the account it reserved, with its worst-case cost and tokens); a request is
given an account only if its worst case fits every limit of that account. The pick runs inside the
grant's statement (PostgreSQL: the function below; SQLite: the same rule in Python, under the write lock
the grant's transaction already holds), so it costs no round trip of its own, and concurrent grants never
overshoot a limit: on PostgreSQL they queue on the limited accounts' rows, locked in one order, and each
statement after the lock sees every hold and row committed before it.

The first candidate that is not cooling down (`cooled_ok`: cooling or not) and fits is the pick; None when
none does.
"""
from __future__ import annotations

import json
from typing import Optional

import peewee as pw

from .models import Account, BudgetHold, RequestLog

WINDOWS = (("five_hour", 5 * 3600), ("weekly", 7 * 24 * 3600))
MEASURES = ("usd", "requests", "tokens")

PICK_ACCOUNT_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION okl_pick_account(candidates text[], worst_nano bigint, worst_tokens bigint,
                                            now_ts double precision, cooled_ok boolean) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    cid text;
    acct record;
    lim json;
    w record;
    lr numeric; lu numeric; lt numeric;
    ur bigint; uu bigint; ut bigint;
    hr bigint; hu bigint; ht bigint;
    fits boolean;
BEGIN
    -- the limited candidates' rows, locked in one order: no two grants wait on each other in a cycle
    PERFORM 1 FROM account WHERE id = ANY(candidates) AND COALESCE(limits, '{}') NOT IN ('{}', '')
        ORDER BY id FOR UPDATE;
    FOREACH cid IN ARRAY candidates LOOP
        SELECT a.name, a.cooldown_until, COALESCE(NULLIF(a.limits, ''), '{}')::json AS lim INTO acct
            FROM account a WHERE a.id = cid AND a.enabled;
        CONTINUE WHEN NOT FOUND OR (acct.cooldown_until > now_ts AND NOT cooled_ok);
        lim := acct.lim;
        fits := true;
        hr := NULL;
        FOR w IN SELECT * FROM (VALUES ('five_hour', 18000), ('weekly', 604800)) AS v(name, seconds) LOOP
            lr := (lim ->> (w.name || '_requests'))::numeric;
            lu := (lim ->> (w.name || '_usd'))::numeric;
            lt := (lim ->> (w.name || '_tokens'))::numeric;
            CONTINUE WHEN lr IS NULL AND lu IS NULL AND lt IS NULL;
            IF hr IS NULL THEN
                SELECT count(*), COALESCE(sum(amount_nano), 0), COALESCE(sum(tokens), 0) INTO hr, hu, ht
                    FROM budget_hold WHERE account_id = cid;
            END IF;
            SELECT count(*), COALESCE(sum(cost_nano), 0), COALESCE(sum(input_tokens + output_tokens), 0)
                INTO ur, uu, ut FROM request_log WHERE account = acct.name AND created_at >= now_ts - w.seconds;
            IF (lr IS NOT NULL AND ur + hr + 1 > lr) OR (lu IS NOT NULL AND uu + hu + worst_nano > lu)
                    OR (lt IS NOT NULL AND ut + ht + worst_tokens > lt) THEN
                fits := false;
                EXIT;
            END IF;
        END LOOP;
        IF fits THEN
            RETURN cid;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
"""


def window_limit(limits: dict, window: str, measure: str) -> Optional[int]:
    """An account's limit for one measure of one window (None: unlimited)."""
    value = (limits or {}).get(f"{window}_{measure}")
    return None if value is None else int(value)


def _fits(account_id: str, name: str, limits: dict, worst_nano: int, worst_tokens: int, now: float) -> bool:
    held = None
    for window, seconds in WINDOWS:
        limit_of = {measure: window_limit(limits, window, measure) for measure in MEASURES}
        if all(limit is None for limit in limit_of.values()):
            continue
        if held is None:
            held = (BudgetHold.select(pw.fn.COUNT(BudgetHold.id), pw.fn.COALESCE(pw.fn.SUM(BudgetHold.amount_nano), 0),
                                      pw.fn.COALESCE(pw.fn.SUM(BudgetHold.tokens), 0))
                    .where(BudgetHold.account_id == account_id).tuples().get())
        log = RequestLog
        used = (log.select(pw.fn.COUNT(log.id), pw.fn.COALESCE(pw.fn.SUM(log.cost_nano), 0),
                           pw.fn.COALESCE(pw.fn.SUM(log.input_tokens + log.output_tokens), 0))
                .where((log.account == name) & (log.created_at >= now - seconds)).tuples().get())
        worst = {"requests": 1, "usd": worst_nano, "tokens": worst_tokens}
        for index, measure in enumerate(("requests", "usd", "tokens")):
            limit = limit_of[measure]
            if limit is not None and int(used[index]) + int(held[index]) + worst[measure] > limit:
                return False
    return True


_CANDIDATES_SQL: dict = {}  # (placeholder, number of candidates) -> the SELECT of their rows


def candidate_rows_sqlite(candidates: list) -> list:
    """(id, name, cooldown_until, limits, enabled, last_headers, last_checked_at) of each candidate account, as
    stored (JSON as text): what the SQLite grant picks from and answers as the accounts' shared state. One
    statement, compiled once per number of candidates (the grant's hot path builds no query); in the database's
    own placeholders, so that the rule can be checked against PostgreSQL's pick on the same rows."""
    if not candidates:
        return []
    db = Account._meta.database
    sql = _CANDIDATES_SQL.get((db.param, len(candidates)))
    if sql is None:
        sql = _CANDIDATES_SQL[(db.param, len(candidates))] = (
            "SELECT id, name, cooldown_until, limits, enabled, last_headers, last_checked_at FROM account "
            "WHERE id IN (" + ", ".join([db.param] * len(candidates)) + ")")
    return db.execute_sql(sql, tuple(candidates)).fetchall()


def _json_object(stored) -> dict:
    return json.loads(stored) if stored and stored != "{}" else {}


def pick_account_sqlite(candidates: list, worst_nano: int, worst_tokens: int, now: float,
                        cooled_ok: bool = False, rows: Optional[list] = None) -> Optional[str]:
    """The rule of `okl_pick_account`, for SQLite: call it inside the grant's (write-locked) transaction.
    `rows`: the candidates' rows as `candidate_rows_sqlite` read them (read here otherwise)."""
    if not candidates:
        return None
    by_id = {row[0]: row for row in (candidate_rows_sqlite(candidates) if rows is None else rows)}
    for account_id in candidates:
        row = by_id.get(account_id)
        if row is None or not row[4] or (float(row[2] or 0) > now and not cooled_ok):
            continue
        if _fits(account_id, row[1], _json_object(row[3]), worst_nano, worst_tokens, now):
            return account_id
    return None


def account_state(rows: list) -> list:
    """[id, cooldown_until, last_headers, last_checked_at] of each candidate row (`candidate_rows_sqlite`), as
    the PostgreSQL grant answers it."""
    return [[row[0], row[2], _json_object(row[5]), row[6]] for row in rows]


# The grant's pick on PostgreSQL (parameters: candidates, worst_nano, worst_tokens, now): the first candidate that is
# enabled and not cooling down is the pick when it has no window limits, found by plain SQL; only when it has
# limits is the function called, which then decides over all the candidates as before. The same rule as
# `okl_pick_account(..., false)`, without a PL/pgSQL call and its queries for the usual account with no limits
# (a fifth of the grant's CPU in the database, bench/README.md).
PICK_ACCOUNT_SQL_POSTGRES = (
    "(SELECT CASE WHEN COALESCE(a.limits, '{}') IN ('{}', '') THEN a.id "
    "ELSE okl_pick_account(c.ids, c.worst_nano, c.worst_tokens, c.now_ts, false) END "
    "FROM (SELECT %s::text[] AS ids, %s::bigint AS worst_nano, %s::bigint AS worst_tokens, "
    "%s::double precision AS now_ts) c "
    "CROSS JOIN LATERAL unnest(c.ids) WITH ORDINALITY AS u(id, ord) JOIN account a ON a.id = u.id "
    "WHERE a.enabled AND NOT COALESCE(a.cooldown_until > c.now_ts, false) ORDER BY u.ord LIMIT 1)")

ACCOUNT_STATE_SQL_POSTGRES = ("(SELECT json_agg(json_build_array(id, cooldown_until, "
                              "COALESCE(NULLIF(last_headers, ''), 'null')::json, last_checked_at))::text "
                              "FROM account WHERE id = ANY(%s::text[]))")
