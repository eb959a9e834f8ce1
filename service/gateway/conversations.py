"""Conversations: a key's threads of Responses items, kept by the gateway.

Items are stored as the Responses API shows them (`msg_…`, `fc_…` ids with a
`status`), in the order they were added. A response created with
`conversation` sees these items before its own input, and its input and
output items are appended afterwards, whichever account served it.
"""
from __future__ import annotations

from typing import Any, Optional

from ..api_error import ApiError
from ..ids import new_id
from ..storage.db import database
from ..storage.models import Conversation, ConversationItem, now
from .canonical import Message, Response
from .codecs import CodecError, openai_responses

MAX_ITEM_ID = 80  # the id column's width


def conversation_object(row: Conversation) -> dict:
    """The conversation as the API shows it."""
    return {"id": row.id, "object": "conversation", "created_at": row.created_at, "metadata": row.metadata or {}}


def create_conversation(key_id: str, items: Optional[list], metadata: Optional[dict]) -> Conversation:
    """A new conversation of the key, holding `items` (Responses input items) from the start."""
    normalized = normalize_items(items or [])
    with database.atomic():
        row = Conversation.create(id=new_id("conv"), key_id=key_id, metadata=metadata or {})
        _insert_items(row.id, normalized)
    return row


def get_conversation(conversation_id: str, key_id: str, param: str = "conversation_id") -> Conversation:
    """The key's conversation (404 for an unknown one or another key's)."""
    row = Conversation.get_or_none((Conversation.id == conversation_id) & (Conversation.key_id == key_id))
    if row is None:
        raise ApiError(404, f"Conversation with id '{conversation_id}' not found.", param=param)
    return row


def update_metadata(row: Conversation, metadata: Optional[dict]) -> Conversation:
    """Replace the conversation's metadata."""
    row.metadata = metadata or {}
    Conversation.update(metadata=row.metadata).where(Conversation.id == row.id).execute()
    return row


def delete_conversation(row: Conversation) -> dict:
    """Delete the conversation and its items; the deleted object."""
    with database.atomic():
        ConversationItem.delete().where(ConversationItem.conversation_id == row.id).execute()
        Conversation.delete().where(Conversation.id == row.id).execute()
    return {"id": row.id, "object": "conversation.deleted", "deleted": True}


def items_query(row: Conversation):
    """The conversation's items (unordered query, for pagination)."""
    return ConversationItem.select().where(ConversationItem.conversation_id == row.id)


def add_items(row: Conversation, items: list) -> list[dict]:
    """Append Responses input items; the stored items, in order."""
    normalized = normalize_items(items)
    with database.atomic():
        return _insert_items(row.id, normalized)


def get_item(row: Conversation, item_id: str) -> ConversationItem:
    """One item of the conversation (404 otherwise)."""
    item = ConversationItem.get_or_none((ConversationItem.item_id == item_id)
                                        & (ConversationItem.conversation_id == row.id))
    if item is None:
        raise ApiError(404, f"Item with id '{item_id}' not found in conversation '{row.id}'.", param="item_id")
    return item


def delete_item(row: Conversation, item_id: str) -> Conversation:
    """Remove one item; the conversation."""
    item = get_item(row, item_id)
    ConversationItem.delete().where(ConversationItem.id == item.id).execute()
    return row


def normalize_items(items: Any, param: str = "items") -> list[dict]:
    """Client items as stored items: ids and status added; 400 for a malformed one."""
    if not isinstance(items, list):
        raise ApiError(400, f"'{param}' must be a list of items.", param=param)
    try:
        normalized = openai_responses.input_items({"input": items})
    except CodecError as error:
        raise ApiError(400, error.message.replace("input[", f"{param}["),
                       param=(error.param or param).replace("input[", f"{param}[")) from None
    # a reference names an item stored elsewhere; the conversation keeps only items it can replay
    return [item for item in normalized if item.get("type") != "item_reference"]


# ---------------------------------------------------------------- responses in a conversation
def conversation_param(body: dict) -> Optional[str]:
    """The conversation id a Responses request names (`"conv_…"` or `{"id": "conv_…"}`), or None."""
    value = body.get("conversation")
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise ApiError(400, "'conversation' must be a conversation id or an object with an 'id'.",
                       param="conversation")
    return value


def load_messages(conversation_id: str, key_id: str) -> list[Message]:
    """The conversation's items as canonical messages, oldest first (404 for another key's)."""
    row = get_conversation(conversation_id, key_id, param="conversation")
    items = [r.item for r in items_query(row).order_by(ConversationItem.seq, ConversationItem.id)]
    return openai_responses.items_to_messages(items)


def append_response(conversation_id: str, input_items: list, body: Optional[dict], response: Response) -> None:
    """Append a finished turn: its input items, then its output items (as the response object shows them)."""
    output = (body or {}).get("output")
    if not isinstance(output, list):
        output = openai_responses.output_items(response)
    items = [i for i in list(input_items) + output if isinstance(i, dict) and i.get("type") != "item_reference"]
    with database.atomic():
        if Conversation.get_or_none(Conversation.id == conversation_id) is None:
            return  # deleted while the response was running
        _insert_items(conversation_id, items)


def _insert_items(conversation_id: str, items: list[dict]) -> list[dict]:
    """Store items after the conversation's last one; an id already taken in this conversation gets a fresh one.

    Only this conversation's ids count: an id another key (or conversation) used is as free as any other,
    so that what happens to a client's id tells nothing about anyone else's items.
    """
    if not items:
        return []
    last = (ConversationItem.select(ConversationItem.seq).where(ConversationItem.conversation_id == conversation_id)
            .order_by(ConversationItem.seq.desc()).limit(1).scalar())
    ids = [i["id"] for i in items if isinstance(i.get("id"), str) and i["id"]]
    taken = set()
    if ids:
        taken = {r.item_id for r in ConversationItem.select(ConversationItem.item_id).where(
            (ConversationItem.conversation_id == conversation_id) & ConversationItem.item_id.in_(ids))}
    stored, created = [], now()
    for offset, item in enumerate(items, start=1):
        item = dict(item)
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id or len(item_id) > MAX_ITEM_ID or item_id in taken:
            item["id"] = openai_responses.new_id(openai_responses.ITEM_ID_PREFIXES.get(item.get("type"), "item_"))
        taken.add(item["id"])
        item.setdefault("status", "completed")
        stored.append(item)
        ConversationItem.insert(id=new_id("citem"), item_id=item["id"], conversation_id=conversation_id,
                                seq=(last or 0) + offset, created_at=created, item=item).execute()
    return stored
