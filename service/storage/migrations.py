"""Schema versions: small named steps applied in order and recorded in `setting`.

Never edit a step that has shipped; add the next one. A step that adds a
column to an existing table uses playhouse.migrate so old rows are kept.
"""
from __future__ import annotations

from . import models as m
from .db import database, is_postgres

SCHEMA_VERSION_KEY = "schema_version"
OVERAGE_INDEX = "request_log_overage"  # m012: the request-log rows that have an overage


def m001_initial(db) -> None:
    """Settings, upstream accounts, the model catalog and keys."""
    db.create_tables(m.TABLES_V1, safe=True)


def m002_requests_and_state(db) -> None:
    """The request log, stored responses and conversations."""
    db.create_tables(m.TABLES_V2, safe=True)


def m003_files_login_rates(db) -> None:
    """Files, login codes and shared rate counters."""
    db.create_tables(m.TABLES_V3, safe=True)


def m004_budget_holds(db) -> None:
    """Budget holds, each named by its process, so a crashed process's reservations can be given back."""
    db.create_tables(m.TABLES_V4, safe=True)


def m005_drop_redundant_indexes(db) -> None:
    """Two indexes every gateway call kept up to date for nothing: `request_log(key_id)`, which the
    `(key_id, created_at)` index covers, and `budget_hold(key_id)`, which no query uses."""
    for name in ("request_log_key_id", "budget_hold_key_id"):
        db.execute_sql(f"DROP INDEX IF EXISTS {name}")


def _add_column(db, table: str, name: str, field) -> None:
    """Add a column to an existing table, keeping its rows (a table created from today's model has it already)."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as apply

    if name not in {column.name for column in db.get_columns(table)}:
        apply(SchemaMigrator.from_database(db.obj).add_column(table, name, field))


def m006_user_allowances(db) -> None:
    """Users' allowances: what an email may put on the keys it creates itself, and which keys it created."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as apply

    db.create_tables(m.TABLES_USERS, safe=True)
    if "owner_created" not in {column.name for column in db.get_columns("api_key")}:
        apply(SchemaMigrator.from_database(db.obj).add_column("api_key", "owner_created", m.ApiKey.owner_created))


def m007_conversation_item_ids(db) -> None:
    """Conversation items get the id clients see in a column of its own, unique per conversation (not across
    keys: a foreign id must look free), indexed with the conversation; old rows keep theirs."""
    _add_column(db, "conversation_item", "item_id", m.ConversationItem.item_id)
    m.ConversationItem.update(item_id=m.ConversationItem.id).where(m.ConversationItem.item_id.is_null()).execute()
    db.execute_sql("CREATE INDEX IF NOT EXISTS conversation_item_conversation_id_item_id "
                   "ON conversation_item (conversation_id, item_id)")


def m008_console_sessions(db) -> None:
    """Web console sessions; the daily usage roll-up its charts read (filled by storage/rollups.py); and the
    request-log indexes its filters read by: rows of one model, one account or one status, newest first (the
    account one also serves the capacity windows)."""
    from .rollups import roll_up

    db.create_tables(m.TABLES_CONSOLE, safe=True)
    for column in ("model", "account", "status_code"):
        db.execute_sql(f"CREATE INDEX IF NOT EXISTS request_log_{column}_created_at "
                       f"ON request_log ({column}, created_at)")
    roll_up()  # the log's past days, once, at the upgrade rather than in the first summary asked for


def m009_fleet(db) -> None:
    """Process leases; the account a budget hold also reserves window capacity on (with its worst-case
    tokens); the request-log index the account windows are summed by; on PostgreSQL, the function the
    grant picks and reserves an account with (storage/account_windows.py)."""
    from playhouse.migrate import PostgresqlMigrator, SqliteMigrator
    from playhouse.migrate import migrate as apply

    db.create_tables(m.TABLES_V6, safe=True)
    present = {column.name for column in db.get_columns("budget_hold")}
    migrator = PostgresqlMigrator(db) if is_postgres() else SqliteMigrator(db)
    steps = [migrator.add_column("budget_hold", name, field) for name, field in (
        ("account_id", m.pw.CharField(max_length=40, null=True)),
        ("tokens", m.pw.BigIntegerField(null=True))) if name not in present]
    apply(*steps)
    db.execute_sql("CREATE INDEX IF NOT EXISTS request_log_account_created_at ON request_log (account, created_at)")
    db.execute_sql("CREATE INDEX IF NOT EXISTS budget_hold_account_id ON budget_hold (account_id)")
    if is_postgres():
        from .account_windows import PICK_ACCOUNT_FUNCTION_SQL

        db.execute_sql(PICK_ACCOUNT_FUNCTION_SQL)


def m010_request_id(db) -> None:
    """The request log names each call's `x-request-id`."""
    _add_column(db, "request_log", "request_id", m.RequestLog.request_id)


def m011_money(db) -> None:
    """Exact charges: cache-write prices, each row's cache writes, overage and prices, accounts' `compat`."""
    for model, name in [(m.CatalogModel, "cache_write_nano_per_mtok"), (m.CatalogModel, "cache_write_1h_nano_per_mtok"),
                        (m.Account, "compat"), (m.RequestLog, "cache_write_tokens"),
                        (m.RequestLog, "cache_write_1h_tokens"), (m.RequestLog, "overage_nano"),
                        (m.RequestLog, "prices")]:
        _add_column(db, model._meta.table_name, name, model._meta.fields[name])


def m012_overage_index(db) -> None:
    """The rows whose cost passed their key's limit, indexed apart: the admin log's overage total over every
    matching row read only those (rare) rows instead of all of them (665 ms over 30 days of a million-row
    log, bench/console_queries.py)."""
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {OVERAGE_INDEX} ON request_log (created_at) WHERE overage_nano > 0")


def m013_pending_in_holds(db) -> None:
    """A call's request-log row written once, when it settles: what a killed call's row needs goes in its hold
    instead of an in-flight row that settling rewrote (on PostgreSQL a second version of the row, and an entry
    in each of the log's seven indexes, every call). The in-flight rows of live holds move into them."""
    for name in m.HOLD_PENDING_COLUMNS:
        _add_column(db, "budget_hold", name, m.BudgetHold._meta.fields[name])
    columns = ", ".join(m.HOLD_PENDING_COLUMNS)
    in_flight = f"SELECT id FROM request_log WHERE status_code = {m.IN_FLIGHT}"
    db.execute_sql(f"UPDATE budget_hold SET ({columns}) = (SELECT {columns} FROM request_log "
                   f"WHERE request_log.id = budget_hold.id) WHERE id IN ({in_flight})")
    db.execute_sql(f"DELETE FROM request_log WHERE id IN ({in_flight}) AND id IN (SELECT id FROM budget_hold)")


MIGRATIONS = [m001_initial, m002_requests_and_state, m003_files_login_rates, m004_budget_holds,
              m005_drop_redundant_indexes, m006_user_allowances, m007_conversation_item_ids,
              m008_console_sessions, m009_fleet, m010_request_id, m011_money, m012_overage_index,
              m013_pending_in_holds]


def schema_version() -> int:
    """The version recorded in the database (0 for an empty one)."""
    if not database.table_exists("setting"):
        return 0
    row = m.Setting.get_or_none(m.Setting.key == SCHEMA_VERSION_KEY)
    return int(row.value) if row else 0


def migrate(target: int | None = None) -> tuple[int, int]:
    """Bring the schema up to `target` (default: latest); returns (before, after).

    One transaction, serialised across processes: an advisory lock on
    PostgreSQL, BEGIN IMMEDIATE on SQLite.
    """
    target = len(MIGRATIONS) if target is None else target
    db = database
    with db.atomic() if is_postgres() else db.atomic("IMMEDIATE"):
        if is_postgres():
            db.execute_sql("SELECT pg_advisory_xact_lock(710001)")
        before = schema_version()
        for number in range(before + 1, target + 1):
            MIGRATIONS[number - 1](db)
            m.Setting.insert(key=SCHEMA_VERSION_KEY, value=str(number)).on_conflict(
                conflict_target=[m.Setting.key], update={m.Setting.value: str(number)}).execute()
        return before, max(before, target)
