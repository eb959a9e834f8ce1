"""Request and answer schemas of the admin API."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from ..accounts.addresses import normalize_address
from ..money import to_nano
from .schemas import ListArgsSchema


class Money(fields.Field):
    """USD as a decimal string or a number in, nano-dollars inside, a decimal string out."""

    default_error_messages = {"invalid": "Not a valid amount of USD (a decimal string or number, 0 to 1e9)."}

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return to_nano(value)
        except (ValueError, TypeError):
            raise self.make_error("invalid") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Email(fields.String):
    """An ordinary deliverable email address (accounts/addresses.py), trimmed and lower-cased (how login compares
    addresses)."""

    default_error_messages = {"address": "Not a valid email address: {reason}"}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_address(value)
        except ValueError as error:
            raise self.make_error("address", reason=str(error)) from None


class UnixTime(fields.Field):
    """A moment as unix seconds (a number) or an ISO 8601 string; unix seconds out."""

    default_error_messages = {"invalid": "Not a valid time: send unix seconds or an ISO 8601 string."}

    def _deserialize(self, value, attr, data, **kwargs):
        from datetime import datetime, timezone

        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, (int, float)):
            seconds = value
        elif isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise self.make_error("invalid") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            seconds = moment.timestamp()
        else:
            raise self.make_error("invalid")
        if not 0 <= seconds <= 2**40:
            raise self.make_error("invalid")
        return int(seconds)

    def _serialize(self, value, attr, obj, **kwargs):
        return value


ID = validate.Length(min=1, max=200)
PROVIDERS = ("openai", "anthropic", "echo")
TOKENS_MAX = 10**9  # token counts are 32-bit integer columns


class LimitsSchema(ma.Schema):
    """Caps over rolling windows; an account that reaches one is skipped until the window frees up."""

    five_hour_usd = Money(allow_none=True)
    weekly_usd = Money(allow_none=True)
    five_hour_requests = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10**12))
    weekly_requests = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10**12))
    five_hour_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10**15))
    weekly_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=10**15))


class CompatSchema(ma.Schema):
    """What an OpenAI-compatible server needs said differently."""

    max_tokens_field = fields.String(validate=validate.OneOf(("auto", "max_tokens", "max_completion_tokens")),
                                     metadata={"description": "the Chat field that caps output; `auto`: "
                                               "`max_completion_tokens` for api.openai.com, `max_tokens` elsewhere"})


class AccountInSchema(ma.Schema):
    name = fields.String(required=True, validate=ID)
    provider = fields.String(required=True, validate=validate.OneOf(PROVIDERS))
    base_url = fields.String(validate=validate.Length(max=2000))
    api_key = fields.String(load_only=True, validate=validate.Length(max=4000))
    api = fields.String(load_default="chat", validate=validate.OneOf(("chat", "responses")))
    models = fields.List(fields.String(validate=ID), load_default=list)
    model_map = fields.Dict(keys=fields.String(validate=ID), values=fields.String(validate=ID), load_default=dict)
    weight = fields.Integer(load_default=1, validate=validate.Range(min=0, max=1000))
    enabled = fields.Boolean(load_default=True)
    limits = fields.Nested(LimitsSchema, load_default=dict)
    compat = fields.Nested(CompatSchema, load_default=dict)

    @ma.validates_schema
    def _url(self, data, **kwargs):
        url = data.get("base_url")
        if url and not url.startswith(("http://", "https://")):
            raise ma.ValidationError("must be an http:// or https:// URL", "base_url")

    @ma.post_load
    def _limits(self, data, **kwargs):
        if "limits" in data:
            data["limits"] = {k: v for k, v in data["limits"].items() if v is not None}
        return data


class AccountPatchSchema(AccountInSchema):
    """Every field optional; fields not sent are kept."""

    name = fields.String(validate=ID)
    provider = fields.String(validate=validate.OneOf(PROVIDERS))
    api = fields.String(validate=validate.OneOf(("chat", "responses")))
    models = fields.List(fields.String(validate=ID))
    model_map = fields.Dict(keys=fields.String(validate=ID), values=fields.String(validate=ID))
    weight = fields.Integer(validate=validate.Range(min=0, max=1000))
    enabled = fields.Boolean()
    limits = fields.Nested(LimitsSchema)
    compat = fields.Nested(CompatSchema)


class AccountOutSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    name = fields.String()
    provider = fields.String()
    base_url = fields.String()
    api_key = fields.String(allow_none=True, metadata={"description": "redacted"})
    api = fields.String()
    models = fields.List(fields.String())
    model_map = fields.Dict(keys=fields.String(), values=fields.String())
    weight = fields.Integer()
    enabled = fields.Boolean()
    limits = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), metadata={
        "description": "`*_usd` as decimal strings, `*_requests` and `*_tokens` as integers"})
    created_at = fields.Integer()
    healthy = fields.Boolean(metadata={"description": "false while cooling down or within 5 minutes after an error"})
    cooldown_until = fields.Integer(allow_none=True, metadata={"description": "unix seconds; null when not cooling"})
    last_error = fields.String(allow_none=True)
    compat = fields.Nested(CompatSchema)


class ModelInSchema(ma.Schema):
    id = fields.String(required=True, validate=ID)
    display_name = fields.String(validate=validate.Length(max=200))
    owned_by = fields.String(validate=validate.Length(max=100))
    context_window = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=TOKENS_MAX))
    max_output_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=TOKENS_MAX))
    input_usd_per_mtok = Money(data_key="input_usd_per_mtok", attribute="input_nano_per_mtok")
    output_usd_per_mtok = Money(data_key="output_usd_per_mtok", attribute="output_nano_per_mtok")
    cached_input_usd_per_mtok = Money(allow_none=True, data_key="cached_input_usd_per_mtok",
                                      attribute="cached_input_nano_per_mtok")
    cache_write_usd_per_mtok = Money(allow_none=True, data_key="cache_write_usd_per_mtok",
                                     attribute="cache_write_nano_per_mtok",
                                     metadata={"description": "5-minute cache writes; null: 1.25x input"})
    cache_write_1h_usd_per_mtok = Money(allow_none=True, data_key="cache_write_1h_usd_per_mtok",
                                        attribute="cache_write_1h_nano_per_mtok",
                                        metadata={"description": "1-hour cache writes; null: 2x input"})


class ModelPatchSchema(ModelInSchema):
    class Meta:
        exclude = ("id",)


class ModelOutSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    display_name = fields.String()
    owned_by = fields.String()
    context_window = fields.Integer(allow_none=True)
    max_output_tokens = fields.Integer(allow_none=True)
    input_usd_per_mtok = fields.String()
    output_usd_per_mtok = fields.String()
    cached_input_usd_per_mtok = fields.String(allow_none=True)
    cache_write_usd_per_mtok = fields.String(allow_none=True)
    cache_write_1h_usd_per_mtok = fields.String(allow_none=True)
    created_at = fields.Integer()


class KeyInSchema(ma.Schema):
    name = fields.String(load_default="", validate=validate.Length(max=200))
    budget_usd = Money(allow_none=True, attribute="budget_nano", load_default=None)
    expires_at = UnixTime(allow_none=True, metadata={"description": "unix seconds or ISO 8601; null: never"})
    models = fields.List(fields.String(validate=ID), allow_none=True)
    rpm = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=10**7))
    email = Email(allow_none=True, validate=validate.Length(max=320),
                  metadata={"description": "the user who owns the key (they manage it with a login JWT)"})


class KeyPatchSchema(KeyInSchema):
    name = fields.String(validate=validate.Length(max=200))
    budget_usd = Money(allow_none=True, attribute="budget_nano")
    disabled = fields.Boolean()


class KeySearchArgsSchema(ListArgsSchema):
    search = fields.String(load_default=None, validate=validate.Length(min=1, max=200))


class KeyOutSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    name = fields.String()
    redacted_value = fields.String()
    budget_usd = fields.String(allow_none=True)
    used_usd = fields.String()
    created_at = fields.Integer()
    last_used_at = fields.Integer(allow_none=True)
    expires_at = fields.Integer(allow_none=True)
    models = fields.List(fields.String(), allow_none=True)
    rpm = fields.Integer(allow_none=True)
    disabled = fields.Boolean()
    email = fields.String(allow_none=True)
    key = fields.String(metadata={"description": "the plaintext key, in the creation answer only"})


class DiagnosticsSchema(ma.Schema):
    object = fields.String()
    pid = fields.Integer()
    greenlets = fields.Integer(metadata={"description": "Live greenlets of the serving thread"})
    pool_threads = fields.Integer(metadata={"description": "Threads of gevent's pool, which looks host names up and "
                                                          "checkpoints SQLite (bounded: 10)"})
    open_fds = fields.Integer(allow_none=True)
    db_connections_in_use = fields.Integer()
    db_connections_idle = fields.Integer()
    settlement_transactions = fields.Integer(metadata={"description": "Settlement transactions this process wrote"})
    settlements = fields.Integer(metadata={"description": "Requests they settled (more than transactions: batched)"})
    wal_checkpoints = fields.Integer(metadata={"description": "SQLite: WAL checkpoints by this process's thread"})


class DeletedSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    deleted = fields.Boolean()


def list_schema(item_schema: type, name: str) -> type:
    """An OpenAI-style list page of `item_schema`."""
    return ma.Schema.from_dict({
        "object": fields.String(), "data": fields.List(fields.Nested(item_schema)),
        "has_more": fields.Boolean(), "first_id": fields.String(allow_none=True),
        "last_id": fields.String(allow_none=True)}, name=name)


AccountListSchema = list_schema(AccountOutSchema, "AccountList")
ModelListAdminSchema = list_schema(ModelOutSchema, "ModelAdminList")
KeyListSchema = list_schema(KeyOutSchema, "KeyList")


class UserInSchema(ma.Schema):
    email = Email(required=True, validate=validate.Length(max=320))
    budget_usd = Money(required=True, attribute="budget_nano",
                       metadata={"description": "the lifetime total the user may put on keys they create"})
    max_keys = fields.Integer(validate=validate.Range(min=0, max=10**6),
                              metadata={"description": "live keys at most; default ONEKEYLLM_USER_MAX_KEYS"})
    used_usd = Money(attribute="used_nano", metadata={
        "description": "what the user's keys were given so far (revoked ones too); default: what their own keys had"})


class UserPatchSchema(UserInSchema):
    class Meta:
        exclude = ("email",)

    budget_usd = Money(attribute="budget_nano")


class UserOutSchema(ma.Schema):
    id = fields.String(metadata={"description": "the email"})
    object = fields.String()
    email = fields.String()
    budget_usd = fields.String()
    max_keys = fields.Integer()
    used_usd = fields.String()
    remaining_usd = fields.String()
    live_keys = fields.Integer()
    source = fields.String(metadata={"description": "`admin` or `self_service` (granted at first login)"})
    created_at = fields.Integer()


UserListSchema = list_schema(UserOutSchema, "UserList")
