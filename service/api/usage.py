"""Usage: a key's budget, its request log and summaries, account capacity; every key's log for the admin.

The /v1/usage* routes take a key (`Authorization: Bearer sk-lazytech-…`) or a
user JWT (from /v1/auth/token). A JWT sees every key whose `email` is the
token's: `GET /v1/usage` then answers `{"object": "list", "data": [one
api_key.usage object per live key]}`, the request log and summaries cover all
those keys (revoked ones included: their spend happened) and log rows carry
`key_id`. Money is always a decimal string with nine places.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

import peewee as pw
from flask import Response, current_app, g, jsonify, request, stream_with_context
from flask.views import MethodView

from ..accounts.auth import (
    KEY_PREFIX,
    bearer_token,
    console_session_kind,
    redact,
    require_admin,
    require_key,
    require_user_email,
)
from ..api_error import ApiError
from ..gateway import capacity
from ..gateway.catalog import snapshot
from ..gateway.upstreams.http import Timeouts
from ..money import usd
from ..storage import rollups
from ..storage.db import connected, is_postgres
from ..storage.migrations import OVERAGE_INDEX
from ..storage.models import ApiKey, RequestLog
from ..storage.ratelimit import count_in_window
from .blueprint import Blueprint
from .usage_schemas import (
    AdminSummaryArgsSchema,
    AdminUsageArgsSchema,
    CapacityListSchema,
    KeyUsageListSchema,
    KeyUsageSchema,
    RequestListSchema,
    RequestsArgsSchema,
    SummaryArgsSchema,
    SummarySchema,
)

blp = Blueprint("usage", __name__, url_prefix="/v1", description="Budget, request log, summaries and account capacity")

SECONDS_PER_DAY = 86400
CSV_BATCH = 1000
ROW_FIELDS = ("id", "created_at", "endpoint", "model", "account", "stream", "status_code", "input_tokens",
              "output_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "overage_usd", "latency_ms",
              "response_id", "request_id")
CSV_COLUMNS = ("key_id", "key_name") + ROW_FIELDS
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------- who is asking
@dataclass
class Caller:
    """Whose usage a request may read: the calling key, or every key of a user JWT's email."""

    keys: list
    email: Optional[str] = None
    ids: list = field(init=False)

    def __post_init__(self):
        self.ids = [key.id for key in self.keys]

    @property
    def live_keys(self) -> list:
        return [key for key in self.keys if not key.revoked]

    def scope(self, table: type = RequestLog) -> pw.Expression:
        """The request-log rows (or their daily roll-ups) this caller may read."""
        if self.email is None:
            return table.key_id == self.ids[0]
        return table.key_id.in_(self.ids)


def current_caller() -> Caller:
    """The key of the request, or (for a user JWT) every key of the token's email; 401 otherwise."""
    token = bearer_token()
    is_jwt = token and not token.startswith(KEY_PREFIX) and token.count(".") == 2
    if is_jwt or (not token and console_session_kind()[0] == "user"):
        email = require_user_email()  # the JWT's, or the console user's
        keys = ApiKey.select().where(ApiKey.email == email).order_by(ApiKey.created_at, ApiKey.id)
        return Caller(list(keys), email=email)
    return Caller([require_key()])


@blp.before_request
def _authenticate():
    """Who is asking, settled before the query is read (401/403 before 400)."""
    if request.path.startswith("/v1/admin/"):
        require_admin()
    else:
        g.usage_caller = current_caller()


# ---------------------------------------------------------------- views
def key_usage(row: ApiKey) -> dict:
    """The SPEC's api_key.usage object: remaining = limit - used (never below zero; null without a limit)."""
    limit, used = row.budget_nano, row.used_nano or 0
    return {"object": "api_key.usage", "id": row.id, "name": row.name, "redacted_value": redact(row.last4),
            "created_at": row.created_at, "last_used_at": row.last_used_at, "expires_at": row.expires_at,
            "budget": {"limit_usd": usd(limit), "used_usd": usd(used),
                       "remaining_usd": usd(max(0, limit - used)) if limit is not None else None}}


def request_row(row: RequestLog) -> dict:
    """One request-log row as the API shows it."""
    return {"id": row.id, "created_at": int(row.created_at), "endpoint": row.endpoint, "model": row.model,
            "account": row.account, "stream": bool(row.stream), "status_code": row.status_code,
            "input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
            "cached_tokens": row.cached_tokens, "cache_write_tokens": row.cache_write_tokens or 0,
            "cost_usd": usd(row.cost_nano), "overage_usd": usd(row.overage_nano or 0), "latency_ms": row.latency_ms,
            "response_id": row.response_id, "request_id": row.request_id}


def admin_row(row: RequestLog, names: dict) -> dict:
    """A request-log row as the admin sees it: with its key's id and name."""
    return {"key_id": row.key_id, "key_name": names.get(row.key_id, ""), **request_row(row)}


def _list(data: list, has_more: bool) -> dict:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


# ---------------------------------------------------------------- the request log
def _row_filters(table: type, args: dict) -> Optional[pw.Expression]:
    """The model, account and status filters on the log or its daily roll-up (None: the roll-up cannot tell)."""
    condition = pw.SQL("1 = 1")
    if args.get("model"):
        condition &= table.model == args["model"]
    if args.get("account"):
        condition &= table.account == args["account"]
    status = args.get("status")
    failed = table.status_code >= 400 if table is RequestLog else table.failed
    if status == "ok":
        condition &= ~failed
    elif status == "error":
        condition &= failed
    elif status:
        if table is not RequestLog:
            return None
        condition &= table.status_code == int(status)
    return condition


def _filtered(condition: pw.Expression, args: dict) -> pw.Expression:
    log = RequestLog
    if args.get("since") is not None:
        condition &= log.created_at >= args["since"]
    if args.get("until") is not None:
        condition &= log.created_at < args["until"]
    return condition & _row_filters(log, args)


def _anchor(scope: pw.Expression, after: Optional[str]) -> Optional[RequestLog]:
    """The row named by the cursor `after` (400 when it is not one of the caller's rows)."""
    if not after:
        return None
    anchor = RequestLog.get_or_none((RequestLog.id == after) & scope)
    if anchor is None:
        raise ApiError(400, f"Unknown cursor `after`: '{after}'.", param="after")
    return anchor


def _page(condition: pw.Expression, limit: int, anchor: Optional[RequestLog]) -> tuple:
    """Up to `limit` rows, newest first, after `anchor`; and whether more follow."""
    log = RequestLog
    if anchor is not None:
        condition &= (log.created_at < anchor.created_at) | (
            (log.created_at == anchor.created_at) & (log.id < anchor.id))
    rows = list(log.select().where(condition).order_by(log.created_at.desc(), log.id.desc()).limit(limit + 1))
    return rows[:limit], len(rows) > limit


def _key_names(rows: list) -> dict:
    ids = list({row.key_id for row in rows})
    return dict(ApiKey.select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(ids)).tuples()) if ids else {}


def summarize(scope: Callable[[type], pw.Expression], args: dict, group_by: str) -> list:
    """Requests, tokens and cost per UTC day (oldest first) or per model, account or key_id (costliest first),
    of the rows `scope(table)` selects, filtered by `args`; whole past days come from the daily roll-up."""

    def condition_for(table: type) -> Optional[pw.Expression]:
        filters = _row_filters(table, args)
        return None if filters is None else scope(table) & filters

    totals = rollups.summarize(condition_for, args.get("since"), args.get("until"), group_by)
    rows = []
    for value, sums in totals.items():
        label = value if group_by != "day" else datetime.fromtimestamp(
            value * SECONDS_PER_DAY, tz=timezone.utc).date().isoformat()
        rows.append({group_by: label, "requests": sums.requests, "input_tokens": sums.input_tokens,
                     "output_tokens": sums.output_tokens, "cached_tokens": sums.cached_tokens,
                     "cost_usd": usd(sums.cost_nano), "_cost": sums.cost_nano})
    if group_by == "day":
        rows.sort(key=lambda r: r["day"])
    else:
        rows.sort(key=lambda r: (-r["_cost"], r[group_by] or ""))
    for row in rows:
        del row["_cost"]
    return rows


def _csv_cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return "'" + text if isinstance(value, str) and text.startswith(FORMULA_STARTS) else text


def _csv_stream(condition: pw.Expression) -> Iterator[str]:
    """Every matching row as CSV, newest first, read and sent a batch at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    anchor, more = None, True
    while more:
        with connected():
            rows, more = _page(condition, CSV_BATCH, anchor)
            names = _key_names(rows)
        for row in rows:
            view = request_row(row)
            writer.writerow([_csv_cell(row.key_id), _csv_cell(names.get(row.key_id, ""))]
                            + [_csv_cell(view[name]) for name in ROW_FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        anchor = rows[-1] if rows else None


# ---------------------------------------------------------------- capacity
def serving_accounts(caller: Caller) -> list:
    """Enabled accounts serving a model the caller's keys may use (every enabled one for an unrestricted key)."""
    keys = caller.live_keys
    if not keys:
        return []
    allowed = set().union(*(key.models for key in keys)) if all(key.models for key in keys) else None
    accounts = (a for a in snapshot().accounts.values()
                if a.enabled and (allowed is None or allowed.intersection(a.models)))
    return sorted(accounts, key=lambda a: a.name)


def _probe_accounts(accounts: list) -> None:
    settings = current_app.extensions["onekeyllm"].settings
    capacity.refresh(accounts, Timeouts(connect=settings.upstream_connect_timeout, read=settings.upstream_timeout))


REFRESHES_PER_MINUTE = 2  # per key (or per user JWT); each account is probed once per capacity.PROBE_INTERVAL anyway


def _limit_refreshes(caller: Caller) -> None:
    """429 once the caller asked for more refreshes this minute than allowed (counted in the database)."""
    # an address may be longer than a bucket name: its digest stands for it
    who = (f"email:{hashlib.sha256(caller.email.encode()).hexdigest()[:32]}" if caller.email is not None
           else f"key:{caller.ids[0]}")
    count, retry_after = count_in_window(f"capacity_refresh:{who}", 60)
    if count > REFRESHES_PER_MINUTE:
        raise ApiError(429, f"Capacity refreshes are limited to {REFRESHES_PER_MINUTE} per minute; "
                       f"try again in {retry_after} s (GET /v1/usage/account_capacity shows the last reading).",
                       code="rate_limit_exceeded", headers={"retry-after": str(retry_after)})


def _capacity_body(accounts: list) -> dict:
    return {"object": "list", "data": capacity.capacity_view(accounts)}


# ---------------------------------------------------------------- routes
@blp.route("/usage")
class Usage(MethodView):
    @blp.response(200, KeyUsageSchema)
    @blp.doc(responses={200: {"content": {"application/json": {"schema": {
        "oneOf": [KeyUsageSchema, KeyUsageListSchema]}}}}})
    def get(self):
        """The key's budget: limit, used, remaining (a user JWT gets a list, one object per key of its email)."""
        caller: Caller = g.usage_caller
        if caller.email is None:
            return key_usage(caller.keys[0])
        return jsonify({"object": "list", "data": [key_usage(key) for key in caller.live_keys]})


@blp.route("/usage/requests")
class UsageRequests(MethodView):
    @blp.arguments(RequestsArgsSchema, location="query")
    @blp.response(200, RequestListSchema)
    def get(self, args):
        """The key's request log, newest first; `limit`/`after` pages, `since`/`until`/`model` filter."""
        caller: Caller = g.usage_caller
        scope = caller.scope()
        rows, more = _page(_filtered(scope, args), args["limit"], _anchor(scope, args["after"]))
        data = [request_row(row) for row in rows]
        if caller.email is not None:
            for view, row in zip(data, rows, strict=True):
                view["key_id"] = row.key_id
        return _list(data, more)


@blp.route("/usage/summary")
class UsageSummary(MethodView):
    @blp.arguments(SummaryArgsSchema, location="query")
    @blp.response(200, SummarySchema)
    def get(self, args):
        """Requests, tokens and cost per UTC day or per model (`group_by=day|model`), `since`/`until`/`model` filter."""
        data = summarize(g.usage_caller.scope, args, args["group_by"])
        return {"object": "list", "group_by": args["group_by"], "data": data,
                "has_more": False}


@blp.route("/usage/account_capacity")
class AccountCapacity(MethodView):
    @blp.response(200, CapacityListSchema)
    def get(self):
        """Estimated capacity of each account serving the key's models: windows, upstream limits, health."""
        return _capacity_body(serving_accounts(g.usage_caller))


@blp.route("/usage/account_capacity/refresh")
class AccountCapacityRefresh(MethodView):
    @blp.response(200, CapacityListSchema)
    def post(self):
        """Probe each of those accounts (a cheap model listing), record health and headers; then the same body."""
        caller: Caller = g.usage_caller
        _limit_refreshes(caller)
        accounts = serving_accounts(caller)
        _probe_accounts(accounts)
        return _capacity_body(accounts)


def _admin_scope(table: type, args: dict) -> pw.Expression:
    """Every key's rows, or one key's (`key_id`)."""
    return table.key_id == args["key_id"] if args["key_id"] else pw.SQL("1 = 1")


@blp.route("/admin/usage")
class AdminUsage(MethodView):
    @blp.arguments(AdminUsageArgsSchema, location="query")
    @blp.response(200, RequestListSchema)
    @blp.doc(responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
    def get(self, args):
        """Every key's request log (admin token), rows with `key_id` and `key_name`; `format=csv` streams it all."""
        scope = _admin_scope(RequestLog, args)
        condition = _filtered(scope, args)
        if args["format"] == "csv":
            return Response(stream_with_context(_csv_stream(condition)), mimetype="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="usage.csv"'})
        rows, more = _page(condition, args["limit"], _anchor(scope, args["after"]))
        names = _key_names(rows)
        data = [admin_row(row, names) for row in rows]
        return {**_list(data, more), "overage_usd": usd(_overage_total(condition))}


def _overage_total(condition: pw.Expression) -> int:
    """What upstreams reported past their bounds over every row matching `condition`: the operator's uncharged
    cost, summed over the (rare) rows that have an overage, by their own index (m012). SQLite is told to take
    it (it would rather walk a key's or a model's every row by theirs); PostgreSQL chooses it by itself."""
    log = RequestLog
    query = log.select(pw.fn.SUM(log.overage_nano)).where(condition & (log.overage_nano > pw.SQL("0")))
    if not is_postgres():  # the partial index's own condition is spelled out (a literal): SQLite can take it
        query = query.from_(pw.SQL(f'"request_log" AS "t1" INDEXED BY "{OVERAGE_INDEX}"'))
    return int(query.scalar() or 0)


def export_usage(format: str, *, since: Optional[int] = None, until: Optional[int] = None,
                 key_id: Optional[str] = None) -> Iterator[str]:
    """Every key's request log, newest first, as the admin route gives it: CSV, or JSON lines (`onekeyllm usage
    export`). Needs a bound database; opens its own connections."""
    scope = RequestLog.key_id == key_id if key_id else RequestLog.id.is_null(False)
    condition = _filtered(scope, {"since": since, "until": until})
    if format == "csv":
        yield from _csv_stream(condition)
        return
    anchor, more = None, True
    while more:
        with connected():
            rows, more = _page(condition, CSV_BATCH, anchor)
            names = _key_names(rows)
        yield "".join(json.dumps(admin_row(row, names)) + "\n" for row in rows)
        anchor = rows[-1] if rows else None
@blp.route("/admin/usage/summary")
class AdminUsageSummary(MethodView):
    @blp.arguments(AdminSummaryArgsSchema, location="query")
    @blp.response(200, SummarySchema)
    def get(self, args):
        """Every key's requests, tokens and cost per UTC day, model, account or key (`group_by`), filtered by
        `key_id`, `model`, `account`, `status` and time (admin token)."""
        data = summarize(lambda table: _admin_scope(table, args), args, args["group_by"])
        if args["group_by"] == "key_id":
            names = dict(ApiKey.select(ApiKey.id, ApiKey.name).where(
                ApiKey.id.in_([row["key_id"] for row in data])).tuples()) if data else {}
            for row in data:
                row["key_name"] = names.get(row["key_id"], "")
        return {"object": "list", "group_by": args["group_by"], "data": data, "has_more": False}


@blp.route("/admin/account_capacity")
class AdminAccountCapacity(MethodView):
    @blp.response(200, CapacityListSchema)
    def get(self):
        """Every account's capacity windows, upstream rate limits and health, disabled ones included (admin)."""
        return _capacity_body(sorted(snapshot().accounts.values(), key=lambda a: a.name))


@blp.route("/admin/account_capacity/refresh")
class AdminAccountCapacityRefresh(MethodView):
    @blp.response(200, CapacityListSchema)
    def post(self):
        """Probe every enabled account, record health and headers; then every account's capacity (admin)."""
        accounts = sorted(snapshot().accounts.values(), key=lambda a: a.name)
        _probe_accounts([a for a in accounts if a.enabled])
        return _capacity_body(accounts)
