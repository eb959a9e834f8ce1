"""The grant's account pick on PostgreSQL: the plain-SQL path the grant runs (an unlimited first candidate
needs no PL/pgSQL call) picks exactly what `okl_pick_account` and the SQLite rule pick, over random
candidate lists of enabled, disabled, cooling, unlimited and limited accounts — limits that fit and limits
already used up by request-log rows and holds in flight."""
from __future__ import annotations

import json
import random
import time

import pytest
from conftest import fresh_database_url, is_postgres

from service.storage.account_windows import PICK_ACCOUNT_SQL_POSTGRES, candidate_rows_sqlite, pick_account_sqlite
from service.storage.db import database, init_database
from service.storage.migrations import migrate
from service.storage.models import Account, BudgetHold, RequestLog

ACCOUNTS = 6
LIMITS = [None, {}, {"five_hour_requests": 2}, {"five_hour_requests": 50}, {"weekly_usd": 1000},
          {"five_hour_tokens": 100}, {"weekly_requests": 1}]


def _accounts(rng: random.Random, now: float) -> None:
    Account.delete().execute()
    BudgetHold.delete().execute()
    RequestLog.delete().execute()
    for number in range(ACCOUNTS):
        limits = rng.choice(LIMITS)
        Account.create(id=f"acc_{number}", name=f"a{number}", provider="openai", base_url="http://x",
                       enabled=rng.random() > 0.2, cooldown_until=now + rng.choice([-60, 0, 60]) * rng.random(),
                       limits=limits or {})
        if limits is None:  # stored as empty text, which both the function and the plain path read as none
            database.execute_sql("UPDATE account SET limits = '' WHERE id = %s", (f"acc_{number}",))
        for row in range(rng.randint(0, 3)):
            RequestLog.create(id=f"r{number}_{row}", key_id="k", created_at=now - rng.choice([10, 7200, 10**6]),
                              endpoint="/v1/chat/completions", model="m", account=f"a{number}", status_code=200,
                              input_tokens=20, output_tokens=20, cost_nano=300)
        for hold in range(rng.randint(0, 2)):
            BudgetHold.create(id=f"h{number}_{hold}", key_id="k", amount_nano=200, owner="p", created_at=now,
                              account_id=f"acc_{number}", tokens=30)


@pytest.mark.skipif(not is_postgres(), reason="the plain-SQL pick and okl_pick_account are PostgreSQL's")
def test_the_plain_sql_pick_agrees_with_the_function_and_the_sqlite_rule(tmp_path):
    init_database(fresh_database_url(tmp_path, "accountpick"))
    rng = random.Random(18)
    try:
        with database.connection_context():
            migrate()
            compared = limited_first = 0
            for _ in range(40):
                now = time.time()
                _accounts(rng, now)
                for _ in range(15):
                    candidates = rng.sample([f"acc_{n}" for n in range(ACCOUNTS)] + ["acc_missing"],
                                            rng.randint(1, 4))
                    worst_nano, worst_tokens = rng.choice([(1, 1), (500, 40), (10**6, 10**4)])
                    params = (candidates, worst_nano, worst_tokens, now)
                    plain = database.execute_sql(f"SELECT {PICK_ACCOUNT_SQL_POSTGRES}", params).fetchone()[0]
                    function = database.execute_sql("SELECT okl_pick_account(%s::text[], %s, %s, %s, false)",
                                                    params).fetchone()[0]
                    rows = candidate_rows_sqlite(candidates)
                    rule = pick_account_sqlite(candidates, worst_nano, worst_tokens, now, rows=rows)
                    assert plain == function == rule, (candidates, worst_nano, worst_tokens, rows, now)
                    by_id = {row[0]: row for row in rows}
                    first = next((by_id[c] for c in candidates
                                  if c in by_id and by_id[c][4] and by_id[c][2] <= now), None)
                    limited_first += first is not None and first[3] not in ("", "{}")
                    compared += 1
            assert compared == 600 and limited_first > 50  # the function's path was taken too, often
    finally:
        init_database("sqlite:///:memory:")


def test_limits_as_stored_are_what_the_pick_reads():
    """The plain path's test for "no limits" is on the stored text: what an account's empty limits are stored as."""
    assert Account.limits.db_value({}) in ("{}", "")
    assert json.loads(Account.limits.db_value({"five_hour_requests": 1})) == {"five_hour_requests": 1}
