"""Peewee tables. Money is stored as integer nano-dollars (1e-9 USD): exact on every backend.

Fractional unix times are DoubleField: a FloatField is a 4-byte REAL on PostgreSQL (±64 s today).
"""
from __future__ import annotations

import json
import time

import peewee as pw

from .db import database


class JSONField(pw.TextField):
    """JSON in a text column (portable across SQLite and PostgreSQL)."""

    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value):
        return None if value is None else json.loads(value)


def now() -> int:
    return int(time.time())


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Setting(BaseModel):
    """Key-value settings: schema version, admin token hash, JWT secret, key pepper."""

    key = pw.CharField(primary_key=True, max_length=64)
    value = pw.TextField()


class Account(BaseModel):
    """An upstream provider account. `api_key` is write-only: never rendered."""

    id = pw.CharField(primary_key=True, max_length=40)
    name = pw.CharField(unique=True, max_length=200)
    provider = pw.CharField(max_length=20)
    base_url = pw.TextField(default="")
    api_key = pw.TextField(default="")
    api = pw.CharField(max_length=20, default="chat")
    models = JSONField(default=list)
    model_map = JSONField(default=dict)
    weight = pw.IntegerField(default=1)
    enabled = pw.BooleanField(default=True)
    limits = JSONField(default=dict)
    compat = JSONField(default=dict, constraints=[pw.SQL("DEFAULT '{}'")])  # per-server differences (max_tokens_field)
    created_at = pw.BigIntegerField(default=now)
    # health, written by the router and the capacity probe
    cooldown_until = pw.DoubleField(default=0)
    healthy = pw.BooleanField(default=True)
    last_error = pw.TextField(null=True)
    last_headers = JSONField(default=dict)
    last_checked_at = pw.BigIntegerField(null=True)


class CatalogModel(BaseModel):
    """A public model name with its metadata and prices (nano-USD per million tokens)."""

    id = pw.CharField(primary_key=True, max_length=200)
    display_name = pw.CharField(max_length=200, default="")
    owned_by = pw.CharField(max_length=100, default="")
    context_window = pw.IntegerField(null=True)
    max_output_tokens = pw.IntegerField(null=True)
    input_nano_per_mtok = pw.BigIntegerField(default=0)
    output_nano_per_mtok = pw.BigIntegerField(default=0)
    cached_input_nano_per_mtok = pw.BigIntegerField(null=True)
    cache_write_nano_per_mtok = pw.BigIntegerField(null=True)  # null: 1.25x input (5-minute writes)
    cache_write_1h_nano_per_mtok = pw.BigIntegerField(null=True)  # null: 2x input
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "catalog_model"


class ApiKey(BaseModel):
    """A user key: only a keyed hash of the secret is kept."""

    id = pw.CharField(primary_key=True, max_length=40)
    name = pw.CharField(max_length=200, default="")
    key_hash = pw.CharField(unique=True, max_length=64)
    last4 = pw.CharField(max_length=8)
    budget_nano = pw.BigIntegerField(null=True)  # null: no limit
    used_nano = pw.BigIntegerField(default=0)
    reserved_nano = pw.BigIntegerField(default=0)  # in-flight worst cases
    created_at = pw.BigIntegerField(default=now)
    last_used_at = pw.BigIntegerField(null=True)
    expires_at = pw.BigIntegerField(null=True)
    models = JSONField(null=True)
    rpm = pw.IntegerField(null=True)
    disabled = pw.BooleanField(default=False)
    revoked = pw.BooleanField(default=False)
    email = pw.CharField(max_length=320, null=True, index=True)
    owner_created = pw.BooleanField(default=False)  # created by the user within their allowance (accounts/users.py)

    class Meta:
        table_name = "api_key"


class RequestLog(BaseModel):
    """One row per request that reached an upstream, written once, when it settles (that of a call whose process
    died, from its hold: gateway/holds.py)."""

    id = pw.CharField(primary_key=True, max_length=40)
    key_id = pw.CharField(max_length=40)  # looked up by (key_id, created_at), the index below
    created_at = pw.DoubleField(index=True)
    endpoint = pw.CharField(max_length=100)
    model = pw.CharField(max_length=200)
    account = pw.CharField(max_length=200, null=True)
    stream = pw.BooleanField(default=False)
    status_code = pw.IntegerField()
    input_tokens = pw.IntegerField(default=0)
    output_tokens = pw.IntegerField(default=0)
    cached_tokens = pw.IntegerField(default=0)
    cost_nano = pw.BigIntegerField(default=0)  # what the key was charged
    latency_ms = pw.IntegerField(default=0)
    response_id = pw.CharField(max_length=80, null=True)
    error = pw.TextField(null=True)
    request_id = pw.CharField(max_length=128, null=True)  # the answer's x-request-id (m006)
    # the database's own default too: rows written by other statements than billing's need not name them
    cache_write_tokens = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # of input_tokens (5 m, 1 h)
    cache_write_1h_tokens = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # of those, 1-hour writes
    overage_nano = pw.BigIntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])  # cost past the key's limit
    prices = pw.TextField(null=True)  # JSON: the model's prices when the call was made (pricing.PRICE_FIELDS)

    class Meta:
        table_name = "request_log"
        indexes = ((("key_id", "created_at"), False),)


class StoredResponse(BaseModel):
    """A Responses-API response kept for previous_response_id and GET."""

    id = pw.CharField(primary_key=True, max_length=80)
    key_id = pw.CharField(max_length=40, index=True)
    created_at = pw.BigIntegerField(default=now)
    model = pw.CharField(max_length=200)
    body = JSONField()  # the rendered response object
    input_items = JSONField(default=list)  # Responses items of this turn's input
    thread = JSONField(default=list)  # canonical messages: history + input + output

    class Meta:
        table_name = "stored_response"


class Conversation(BaseModel):
    id = pw.CharField(primary_key=True, max_length=80)
    key_id = pw.CharField(max_length=40, index=True)
    created_at = pw.BigIntegerField(default=now)
    metadata = JSONField(default=dict)


class ConversationItem(BaseModel):
    """One item of a conversation. `item_id` is the id clients see (theirs, or ours), unique in its conversation
    only, so an id another key chose is free for this one; `id` names the row."""

    id = pw.CharField(primary_key=True, max_length=80)
    conversation_id = pw.CharField(max_length=80, index=True)
    item_id = pw.CharField(max_length=80, null=True)  # null only in rows older than m007: their id is `id`
    seq = pw.BigIntegerField()
    created_at = pw.BigIntegerField(default=now)
    item = JSONField()

    class Meta:
        table_name = "conversation_item"
        indexes = ((("conversation_id", "item_id"), False),)


class StoredFile(BaseModel):
    id = pw.CharField(primary_key=True, max_length=80)
    key_id = pw.CharField(max_length=40, index=True)
    filename = pw.TextField()
    path = pw.TextField()
    purpose = pw.CharField(max_length=40, default="user_data")
    bytes = pw.BigIntegerField(default=0)
    content_type = pw.CharField(max_length=200, null=True)
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "stored_file"


class LoginCode(BaseModel):
    email = pw.CharField(max_length=320, index=True)
    code_hash = pw.CharField(max_length=64)
    created_at = pw.DoubleField()
    expires_at = pw.DoubleField()
    attempts = pw.IntegerField(default=0)
    used = pw.BooleanField(default=False)
    client_ip = pw.CharField(max_length=64, null=True)

    class Meta:
        table_name = "login_code"


class RateCounter(BaseModel):
    """Fixed-window counters shared by every worker (key rpm, login sends)."""

    bucket = pw.CharField(max_length=200)
    window = pw.BigIntegerField()
    count = pw.IntegerField(default=0)

    class Meta:
        table_name = "rate_counter"
        primary_key = pw.CompositeKey("bucket", "window")


class BudgetHold(BaseModel):
    """One in-flight request's reserved worst case, named by the process holding it (see gateway/holds.py)."""

    id = pw.CharField(primary_key=True, max_length=40)
    key_id = pw.CharField(max_length=40)  # never looked up by: holds are found by id, or all of them
    amount_nano = pw.BigIntegerField()
    owner = pw.CharField(max_length=300)
    created_at = pw.DoubleField()
    account_id = pw.CharField(max_length=40, null=True)  # the account whose window capacity it also holds
    tokens = pw.BigIntegerField(null=True)  # the worst-case tokens it holds on that account
    # what its call's request-log row says if its process dies before settling it (m013; null in holds of a
    # process older than that, which wrote an `IN_FLIGHT` row instead): holds.settle_abandoned
    endpoint = pw.CharField(max_length=100, null=True)
    model = pw.CharField(max_length=200, null=True)
    stream = pw.BooleanField(null=True)
    input_tokens = pw.IntegerField(null=True)  # the input's estimate: what an abandoned call is charged
    prices = pw.TextField(null=True)  # pricing.prices_json
    request_id = pw.CharField(max_length=128, null=True)

    class Meta:
        table_name = "budget_hold"


class UserAllowance(BaseModel):
    """What one email may put on keys it creates itself: a lifetime total (`used_nano` only grows) and a
    number of live keys. Granted by the admin, or at first login to the self-service domains."""

    email = pw.CharField(primary_key=True, max_length=320)
    budget_nano = pw.BigIntegerField()
    max_keys = pw.IntegerField()
    used_nano = pw.BigIntegerField(default=0)  # the budgets of every key the user created, revoked ones too
    source = pw.CharField(max_length=20, default="admin")  # "admin" | "self_service"
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "user_allowance"


class ProcessLease(BaseModel):
    """A running gateway process, renewed while it runs: a lapsed lease is a dead owner (gateway/leases.py)."""

    owner = pw.CharField(primary_key=True, max_length=300)  # the name on its budget holds (holds.owner)
    started_at = pw.DoubleField()
    expires_at = pw.DoubleField()

    class Meta:
        table_name = "process_lease"


TABLES_V1 = [Setting, Account, CatalogModel, ApiKey]
TABLES_V2 = [RequestLog, StoredResponse, Conversation, ConversationItem]
TABLES_V3 = [StoredFile, LoginCode, RateCounter]
TABLES_V4 = [BudgetHold]
TABLES_USERS = [UserAllowance]


class ConsoleSession(BaseModel):
    """A signed-in web console: the browser holds the token in an HttpOnly cookie, the table its keyed hash."""

    id = pw.CharField(primary_key=True, max_length=64)  # hash_secret(pepper, cookie value)
    kind = pw.CharField(max_length=10)  # "admin" or "user"
    email = pw.CharField(max_length=320, null=True)  # the user's, for kind "user"
    admin_token_hash = pw.CharField(max_length=64, null=True)  # kind "admin": the token it was opened with
    created_at = pw.DoubleField()
    expires_at = pw.DoubleField(index=True)

    class Meta:
        table_name = "console_session"


class UsageDaily(BaseModel):
    """The request log summed per UTC day, key, model, account and outcome, for days no row can still join
    (storage/rollups.py): what the console's spend charts read instead of a million rows."""

    day = pw.IntegerField()  # whole days since 1970-01-01 UTC
    key_id = pw.CharField(max_length=40)
    model = pw.CharField(max_length=200)
    account = pw.CharField(max_length=200, null=True)
    failed = pw.BooleanField()  # status_code >= 400
    requests = pw.BigIntegerField()
    input_tokens = pw.BigIntegerField()
    output_tokens = pw.BigIntegerField()
    cached_tokens = pw.BigIntegerField()
    cost_nano = pw.BigIntegerField()

    class Meta:
        table_name = "usage_daily"
        primary_key = False
        indexes = ((("day",), False), (("key_id", "day"), False))


TABLES_CONSOLE = [ConsoleSession, UsageDaily]
TABLES_V6 = [ProcessLease]

HOLD_PENDING_COLUMNS = ("endpoint", "model", "stream", "input_tokens", "prices", "request_id")  # of BudgetHold
IN_FLIGHT = 0  # request_log.status_code of a call not settled yet, as processes older than m013 wrote it
