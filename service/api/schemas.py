"""Shared marshmallow schemas: errors, ping, models, list pages."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import fields


class ErrorBodySchema(ma.Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(allow_none=True, metadata={"description": "OpenAI envelope only"})
    code = fields.String(allow_none=True, metadata={"description": "OpenAI envelope only"})


class ErrorSchema(ma.Schema):
    """Every error answer: `{"error": {"message","type","param","code"}}`, or on `/v1/messages*` the
    Anthropic envelope `{"type": "error", "error": {"type","message"}}`."""

    error = fields.Nested(ErrorBodySchema, required=True)
    type = fields.String(metadata={"description": "`error` (Anthropic envelope only)"})


class PingSchema(ma.Schema):
    object = fields.String()
    status = fields.String()
    version = fields.String()


class ModelObjectSchema(ma.Schema):
    """A model: OpenAI fields (object, created, owned_by) or Anthropic ones (type, display_name, created_at)."""

    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    owned_by = fields.String()
    type = fields.String()
    display_name = fields.String()
    created_at = fields.String()
    lifecycle = fields.String()
    max_input_tokens = fields.Integer()
    max_tokens = fields.Integer()


class ModelListSchema(ma.Schema):
    object = fields.String()
    data = fields.List(fields.Nested(ModelObjectSchema))
    has_more = fields.Boolean()
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)


class ListArgsSchema(ma.Schema):
    """Cursor pagination: `limit` items after the id `after`."""

    class Meta:
        unknown = ma.EXCLUDE

    limit = fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=1000))
    after = fields.String(load_default=None)
    order = fields.String(load_default="desc", validate=ma.validate.OneOf(["asc", "desc"]))
