"""Query and answer schemas of the usage API."""
from __future__ import annotations

from datetime import datetime, timezone

import marshmallow as ma
from marshmallow import fields, validate

from .admin_schemas import ID


class Instant(fields.String):
    """A moment as unix seconds (a number) or ISO 8601 (`2025-03-01`, `2025-03-01T12:00:00Z`; UTC when no offset)."""

    default_error_messages = {"invalid": "Not a time: send unix seconds or an ISO 8601 date or datetime."}

    def _deserialize(self, value, attr, data, **kwargs) -> float:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise self.make_error("invalid") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = moment.timestamp()
        if not 0 <= seconds < 2**40:
            raise self.make_error("invalid")
        return seconds


class _Filters(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    since = Instant(load_default=None, metadata={"description": "only requests at or after this time"})
    until = Instant(load_default=None, metadata={"description": "only requests before this time"})
    model = fields.String(load_default=None, validate=ID)

    @ma.validates_schema
    def _range(self, data, **kwargs):
        if data.get("since") is not None and data.get("until") is not None and data["since"] > data["until"]:
            raise ma.ValidationError("must not be after `until`", "since")


class RequestsArgsSchema(_Filters):
    """The request log, newest first: `limit` rows after the row id `after`, filtered."""

    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=1000))
    after = fields.String(load_default=None, validate=ID)


class SummaryArgsSchema(_Filters):
    group_by = fields.String(load_default="day", validate=validate.OneOf(["day", "model"]))


STATUS = validate.Regexp(r"^(ok|error|[1-5][0-9][0-9])$", error="must be `ok`, `error` or an HTTP status code")


class _AdminFilters(ma.Schema):
    """What an admin may narrow every key's log to, besides time and model."""

    key_id = fields.String(load_default=None, validate=ID)
    account = fields.String(load_default=None, validate=ID)
    status = fields.String(load_default=None, validate=STATUS, metadata={
        "description": "`ok` (below 400), `error` (400 and above) or one status code"})


class AdminUsageArgsSchema(RequestsArgsSchema, _AdminFilters):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]),
                           metadata={"description": "`csv` streams every matching row as text/csv"})


class AdminSummaryArgsSchema(_Filters, _AdminFilters):
    group_by = fields.String(load_default="day", validate=validate.OneOf(["day", "model", "account", "key_id"]))


class BudgetSchema(ma.Schema):
    limit_usd = fields.String(allow_none=True)
    used_usd = fields.String()
    remaining_usd = fields.String(allow_none=True)


class KeyUsageSchema(ma.Schema):
    object = fields.String()
    id = fields.String()
    name = fields.String()
    redacted_value = fields.String()
    created_at = fields.Integer()
    last_used_at = fields.Integer(allow_none=True)
    expires_at = fields.Integer(allow_none=True)
    budget = fields.Nested(BudgetSchema)


class KeyUsageListSchema(ma.Schema):
    """What a user JWT gets from GET /v1/usage: one api_key.usage object per live key of its email."""

    object = fields.String()
    data = fields.List(fields.Nested(KeyUsageSchema))


class RequestRowSchema(ma.Schema):
    id = fields.String()
    created_at = fields.Integer()
    endpoint = fields.String()
    model = fields.String()
    account = fields.String(allow_none=True)
    stream = fields.Boolean()
    status_code = fields.Integer()
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    cache_write_tokens = fields.Integer()
    cost_usd = fields.String()
    overage_usd = fields.String(metadata={"description": "what the tokens cost past the key's limit, not charged"})
    latency_ms = fields.Integer()
    response_id = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True, metadata={"description": "the answer's x-request-id"})
    key_id = fields.String(metadata={"description": "admin usage and user JWTs only"})
    key_name = fields.String(metadata={"description": "admin usage only"})


class RequestListSchema(ma.Schema):
    object = fields.String()
    data = fields.List(fields.Nested(RequestRowSchema))
    has_more = fields.Boolean()
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    overage_usd = fields.String(metadata={"description": "admin usage only: the overage of every matching row"})


class SummaryRowSchema(ma.Schema):
    day = fields.String(metadata={"description": "YYYY-MM-DD (UTC), with group_by=day"})
    model = fields.String(metadata={"description": "with group_by=model"})
    account = fields.String(allow_none=True, metadata={"description": "with group_by=account (admin)"})
    key_id = fields.String(metadata={"description": "with group_by=key_id (admin)"})
    key_name = fields.String(metadata={"description": "with group_by=key_id (admin)"})
    requests = fields.Integer()
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    cost_usd = fields.String()


class SummarySchema(ma.Schema):
    object = fields.String()
    group_by = fields.String()
    data = fields.List(fields.Nested(SummaryRowSchema))
    has_more = fields.Boolean()


class WindowSchema(ma.Schema):
    window = fields.String()
    seconds = fields.Integer()
    limit_usd = fields.String(allow_none=True)
    used_usd = fields.String()
    remaining_usd = fields.String(allow_none=True)
    limit_requests = fields.Integer(allow_none=True)
    used_requests = fields.Integer()
    remaining_requests = fields.Integer(allow_none=True)
    limit_tokens = fields.Integer(allow_none=True)
    used_tokens = fields.Integer()
    remaining_tokens = fields.Integer(allow_none=True)
    exhausted = fields.Boolean()
    resets_at = fields.Integer(allow_none=True, metadata={"description": "when the window frees capacity"})


class AccountCapacitySchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    name = fields.String()
    provider = fields.String()
    models = fields.List(fields.String())
    windows = fields.List(fields.Nested(WindowSchema))
    rate_limits = fields.Dict(metadata={"description": "the last upstream rate-limit headers, raw and parsed"})
    healthy = fields.Boolean()
    cooldown_until = fields.Float(allow_none=True)
    last_error = fields.String(allow_none=True)
    last_checked_at = fields.Integer(allow_none=True)


class CapacityListSchema(ma.Schema):
    object = fields.String()
    data = fields.List(fields.Nested(AccountCapacitySchema))
