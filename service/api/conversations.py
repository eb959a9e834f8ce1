"""OpenAI Conversations: threads of Responses items kept by the gateway, per key."""
from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from marshmallow import fields

from ..accounts.auth import require_key
from ..gateway import conversations
from ..storage.models import ConversationItem
from .blueprint import Blueprint
from .openapi import json_object_response
from .pagination import list_page
from .schemas import ListArgsSchema

blp = Blueprint("conversations", __name__, url_prefix="/v1", description="OpenAI Conversations")

METADATA = {"keys": fields.String(validate=ma.validate.Length(max=64)),
            "values": fields.String(validate=ma.validate.Length(max=512)),
            "validate": ma.validate.Length(max=16, error="'metadata' holds at most 16 pairs."), "allow_none": True}


class ConversationCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    items = fields.List(fields.Dict(), allow_none=True, load_default=None)
    metadata = fields.Dict(load_default=None, **METADATA)


class ConversationUpdateSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    metadata = fields.Dict(required=True, **METADATA)


class ItemsCreateSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    items = fields.List(fields.Dict(), required=True)


class ConversationSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    created_at = fields.Integer()
    metadata = fields.Dict()


class ConversationDeletedSchema(ma.Schema):
    id = fields.String()
    object = fields.String()
    deleted = fields.Boolean()


class ItemListSchema(ma.Schema):
    """Items are Responses items (`message`, `function_call`, …) with ids and status."""

    object = fields.String()
    data = fields.List(fields.Dict())
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


@blp.before_request
def _key_required():
    require_key()  # before the body is read: a caller without a key learns nothing about it


def _list(items: list[dict]) -> dict:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": False}


@blp.route("/conversations")
class Conversations(MethodView):
    @blp.arguments(ConversationCreateSchema)
    @blp.response(200, ConversationSchema)
    def post(self, args):
        """Create a conversation, optionally with `metadata` and initial `items`."""
        key = require_key()
        return conversations.conversation_object(
            conversations.create_conversation(key.id, args.get("items"), args.get("metadata")))


@blp.route("/conversations/<conversation_id>")
class ConversationResource(MethodView):
    @blp.response(200, ConversationSchema)
    def get(self, conversation_id):
        """One conversation of the calling key."""
        return conversations.conversation_object(conversations.get_conversation(conversation_id, require_key().id))

    @blp.arguments(ConversationUpdateSchema)
    @blp.response(200, ConversationSchema)
    def post(self, args, conversation_id):
        """Replace the conversation's metadata."""
        row = conversations.get_conversation(conversation_id, require_key().id)
        return conversations.conversation_object(conversations.update_metadata(row, args["metadata"]))

    @blp.response(200, ConversationDeletedSchema)
    def delete(self, conversation_id):
        """Delete the conversation and its items."""
        return conversations.delete_conversation(conversations.get_conversation(conversation_id, require_key().id))


@blp.route("/conversations/<conversation_id>/items")
class ConversationItems(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, ItemListSchema)
    def get(self, args, conversation_id):
        """The conversation's items, newest first unless `order=asc` (`include` is accepted)."""
        row = conversations.get_conversation(conversation_id, require_key().id)
        args["limit"] = min(args["limit"], 100)
        return list_page(conversations.items_query(row), ConversationItem, args, lambda item: item.item,
                         order_field=ConversationItem.seq, key=ConversationItem.item_id)

    @blp.arguments(ItemsCreateSchema)
    @blp.response(200, ItemListSchema)
    def post(self, args, conversation_id):
        """Append items; the list of the created items."""
        row = conversations.get_conversation(conversation_id, require_key().id)
        return _list(conversations.add_items(row, args["items"]))


@blp.route("/conversations/<conversation_id>/items/<item_id>")
class ConversationItemResource(MethodView):
    @blp.doc(responses={"200": json_object_response("The item (a Responses item)")})
    def get(self, conversation_id, item_id):
        """One item of the conversation."""
        row = conversations.get_conversation(conversation_id, require_key().id)
        return conversations.get_item(row, item_id).item

    @blp.response(200, ConversationSchema)
    def delete(self, conversation_id, item_id):
        """Delete one item; the conversation."""
        row = conversations.get_conversation(conversation_id, require_key().id)
        return conversations.conversation_object(conversations.delete_item(row, item_id))
