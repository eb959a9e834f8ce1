"""Settlements written together (the writer's batch, gateway/billing.py) on a real database of the kind under
test: each key charged by the sum of its calls, each hold released once — a hold already given back releases
nothing — and every call's request-log row written, over the 499 row of a call taken for dead; the grant's hold
keeping what a killed call's row needs."""
from __future__ import annotations

import time
from contextlib import contextmanager

from conftest import fresh_database_url

from service.gateway import billing
from service.storage.db import database, init_database, is_postgres
from service.storage.migrations import migrate
from service.storage.models import HOLD_PENDING_COLUMNS, ApiKey, BudgetHold, RequestLog


def log_row(row_id: str, key_id: str, status: int, cost: int) -> tuple:
    values = dict.fromkeys(billing.LOG_FIELDS, 0)
    values.update(id=row_id, key_id=key_id, created_at=time.time(), endpoint="/v1/chat/completions", model="m",
                  account="acc_1", stream=False, status_code=status, cost_nano=cost, response_id=None, error=None,
                  request_id=f"req_{row_id}", prices=None)
    return tuple(values[name] for name in billing.LOG_FIELDS)


@contextmanager
def database_with_key(tmp_path, name: str, key_id: str, reserved_nano: int = 0):
    """A fresh database of the kind under test, migrated, with one key of no budget; closed after the block."""
    init_database(fresh_database_url(tmp_path, name))
    try:
        with database.connection_context():
            migrate()
            ApiKey.create(id=key_id, name=key_id, key_hash=key_id[-1] * 8, last4="abcd", budget_nano=None,
                          used_nano=0, reserved_nano=reserved_nano)
            yield
    finally:
        database.obj.close_all()


def write(batch: list) -> None:
    if is_postgres():
        billing._write_settlements_postgres(batch)
    else:
        with database.atomic():
            billing._write_sqlite(batch)


def test_a_batch_charges_each_key_once_and_releases_each_hold_once(tmp_path):
    init_database(fresh_database_url(tmp_path, "settlebatch"))
    try:
        with database.connection_context():
            migrate()
            for key_id in ("key_a", "key_b"):
                ApiKey.create(id=key_id, name=key_id, key_hash=key_id * 8, last4="abcd", budget_nano=10_000,
                              used_nano=0, reserved_nano=600)
            now = time.time()
            holds = {"h1": ("key_a", 100), "h2": ("key_a", 200), "h3": ("key_b", 300), "h4": ("key_a", 300)}
            for hold_id, (key_id, amount) in holds.items():
                if hold_id != "h4":
                    BudgetHold.create(id=hold_id, key_id=key_id, amount_nano=amount, owner="p", created_at=now)
                else:  # given back already, its row written as abandoned: its process was taken for dead
                    RequestLog.insert(dict(zip(billing.LOG_FIELDS, log_row(hold_id, key_id, 499, 0)))).execute()
            batch = [billing.Settlement(hold_id, key_id, amount, 10 * amount, now, log_row(hold_id, key_id, 200,
                                                                                              10 * amount))
                     for hold_id, (key_id, amount) in holds.items()]
            batch.append(billing.Settlement(None, None, 0, 0, now, log_row("r5", "key_b", 401, 0)))  # nothing held
            write(batch)

            a, b = ApiKey.get_by_id("key_a"), ApiKey.get_by_id("key_b")
            assert (a.used_nano, a.reserved_nano) == (6000, 600 - 300)  # h4's 300 was released by its sweep
            assert (b.used_nano, b.reserved_nano) == (3000, 600 - 300)
            assert BudgetHold.select().count() == 0
            rows = {row.id: row for row in RequestLog.select()}
            assert set(rows) == {"h1", "h2", "h3", "h4", "r5"}
            assert {row.id: (row.status_code, row.cost_nano) for row in rows.values()} == {
                "h1": (200, 1000), "h2": (200, 2000), "h3": (200, 3000), "h4": (200, 3000), "r5": (401, 0)}

            write([billing.Settlement("h1", "key_a", 100, 0, now, log_row("h1", "key_a", 200, 1000))])
            assert ApiKey.get_by_id("key_a").reserved_nano == 300, "a hold is released once, settled twice or not"
    finally:
        database.obj.close_all()


def test_every_value_of_a_batch_is_stored_as_given(tmp_path):
    """A batch travels as one JSON parameter on PostgreSQL: text with quotes, backslashes and any character,
    exact floats and big integers, NULLs and booleans come out of the database as they went in."""
    with database_with_key(tmp_path, "settlevalues", "key_v"):
        started = 1764633600.123456789  # a float whose every digit counts
        rows = {}
        for n, (error, account, prices) in enumerate([
                ('a "quoted" \\ back\\slash \' and \n newline', None, '{"input":"1.25","output":"10"}'),
                ("émoji 😀 ∑ ‮ U+2028 \u2028 tab \t", "acc é", None),
                (None, "acc_1", '{"input":"0.000000001"}')]):
            values = dict(zip(billing.LOG_FIELDS, log_row(f"v{n}", "key_v", 502, 2 ** 62 + n)))
            values.update(created_at=started + n, error=error, account=account, prices=prices, stream=bool(n % 2),
                          overage_nano=2 ** 63 - 1 - n, response_id=f"resp_{n}", latency_ms=n)
            rows[f"v{n}"] = values
        write([billing.Settlement(None, "key_v", 0, 7, started, tuple(values[name] for name in billing.LOG_FIELDS))
               for values in rows.values()])
        for row_id, values in rows.items():
            stored = RequestLog.get_by_id(row_id)
            assert {name: getattr(stored, name) for name in billing.LOG_FIELDS} == values
        assert ApiKey.get_by_id("key_v").used_nano == 21


def test_statements_carried_by_settlements_share_their_transaction(tmp_path):
    """A Responses call's stored response rides with its settlement (`Settlement.also`): written with it — alone
    or in a batch, in the same query on PostgreSQL — and a carried statement that fails undoes the whole batch
    (which the writer then retries one settlement at a time, each failing only itself)."""
    from service.gateway.state import STORE_RESPONSE_SQL
    from service.storage.models import StoredResponse

    def store(response_id: str) -> "billing._Statement":
        return billing._Statement(STORE_RESPONSE_SQL[is_postgres()],
                                  (response_id, "key_s", 1, "m", '{"id":"' + response_id + '"}', "[]", "[]"))

    with database_with_key(tmp_path, "settlecarried", "key_s", reserved_nano=400):
        now = time.time()
        for hold_id in ("c1", "c2", "c3", "c4"):
            BudgetHold.create(id=hold_id, key_id="key_s", amount_nano=100, owner="p", created_at=now)

        def settlement(hold_id: str, response_id: str) -> billing.Settlement:
            return billing.Settlement(hold_id, "key_s", 100, 10, now, log_row(hold_id, "key_s", 200, 10),
                                      store(response_id))

        write([settlement("c1", "resp_1")])  # alone
        write([settlement("c2", "resp_2"), settlement("c3", "resp_3")])  # a batch
        assert {r.id for r in StoredResponse.select()} == {"resp_1", "resp_2", "resp_3"}
        assert StoredResponse.get_by_id("resp_2").body == {"id": "resp_2"}
        key = ApiKey.get_by_id("key_s")
        assert (key.used_nano, key.reserved_nano) == (30, 100)

        failed = False
        try:  # resp_1 is stored already: the batch's transaction fails as a whole
            write([settlement("c4", "resp_4"), billing.Settlement(None, "key_s", 0, 5, now,
                                                                  log_row("r9", "key_s", 200, 5), store("resp_1"))])
        except Exception:  # noqa: BLE001 - the driver's integrity error, whichever database
            failed = True
        assert failed
        assert not StoredResponse.select().where(StoredResponse.id == "resp_4").exists()
        assert BudgetHold.select().where(BudgetHold.id == "c4").exists(), "the failed batch released nothing"
        assert not RequestLog.select().where(RequestLog.id == "c4").exists()
        assert ApiKey.get_by_id("key_s").used_nano == 30


def test_the_grant_keeps_what_a_killed_calls_row_needs_in_its_hold_and_writes_no_row(tmp_path):
    """The grant (one statement on PostgreSQL, the writer's transaction on SQLite) writes the hold with what its
    call's request-log row will say, and no row: the row is written once, when the call settles."""
    with database_with_key(tmp_path, "grantpending", "key_g"):
        reservation = billing.Reservation("key_g", 700, 50, False, tokens=80)
        reservation.pending = billing.PendingRow("/v1/responses", "m-1", True, 30, '{"input":"1"}', "req_g")
        granted = billing.grant(reservation)
        assert granted is not None and granted.id == "key_g" and reservation.hold_id
        hold = BudgetHold.get_by_id(reservation.hold_id)
        assert (hold.key_id, hold.amount_nano, hold.tokens) == ("key_g", 700, 80)
        assert {name: getattr(hold, name) for name in HOLD_PENDING_COLUMNS} == {
            "endpoint": "/v1/responses", "model": "m-1", "stream": True, "input_tokens": 30,
            "prices": '{"input":"1"}', "request_id": "req_g"}
        assert RequestLog.select().count() == 0
        assert ApiKey.get_by_id("key_g").reserved_nano == 700
