"""Responses-API state held by the gateway: stored responses and their threads.

A stored response keeps its whole thread as canonical messages (history,
this turn's input, the output), so `previous_response_id` works whichever
account or wire format served the earlier turn. Instructions are not part of
the thread: as in OpenAI's API, they do not carry over.
"""
from __future__ import annotations

import time
from typing import Optional

from .. import json_codec
from ..api_error import ApiError
from ..storage.db import is_postgres
from ..storage.models import Conversation, ConversationItem, StoredResponse
from .canonical import Message, ReasoningPart, Response, TextPart, ToolCallPart


def load_thread(response_id: str, key_id: str) -> list:
    """The canonical messages of a stored response's thread (404 for another key's)."""
    row = get_stored(response_id, key_id, param="previous_response_id")
    return [Message.from_dict(m) for m in row.thread or []]


def output_message(response: Response) -> Optional[Message]:
    """The assistant message that a response adds to the thread."""
    parts = [p for p in response.parts if isinstance(p, (TextPart, ToolCallPart, ReasoningPart))]
    return Message(role="assistant", parts=parts) if parts else None


def stored_response(response_id: str, key_id: str, model: str, body: dict, input_items: list,
                    messages: list, response: Response) -> tuple:
    """The statement that keeps a response for GET and for the next turn's previous_response_id: (SQL, params),
    written with the call's settlement (billing.settle)."""
    thread = list(messages)
    reply = output_message(response)
    if reply is not None:
        thread.append(reply)
    row = (response_id, key_id, int(time.time()), model, _json(body), _json(input_items),
           _json([m.to_dict(by_reference=True) for m in thread]))
    return STORE_RESPONSE_SQL[is_postgres()], row


_STORE_RESPONSE = ('INSERT INTO "stored_response" ("id", "key_id", "created_at", "model", "body", "input_items", '
                   '"thread") VALUES (%s, %s, %s, %s, %s, %s, %s)')
STORE_RESPONSE_SQL = {True: _STORE_RESPONSE, False: _STORE_RESPONSE.replace("%s", "?")}  # by is_postgres()


def _json(value) -> str:
    return json_codec.dumps(value).decode("utf-8")  # JSON as the model's JSONField reads it


def get_stored(response_id: str, key_id: str, param: str = "response_id") -> StoredResponse:
    """A stored response of this key (404, naming `param`, for an unknown id or another key's)."""
    row = StoredResponse.get_or_none((StoredResponse.id == response_id) & (StoredResponse.key_id == key_id))
    if row is None:
        raise ApiError(404, f"No response with id '{response_id}'.", param=param)
    return row


# ---------------------------------------------------------------- item references
REFERENCE_SCAN = 200  # a key's most recent stored responses searched for a referenced item
CHAIN_LIMIT = 100  # earlier responses followed back from previous_response_id


def _items_of(row: StoredResponse) -> list:
    """The Responses items of a stored turn: its input items, then its output."""
    output = (row.body or {}).get("output") if isinstance(row.body, dict) else None
    return [i for i in list(row.input_items or []) + list(output or []) if isinstance(i, dict)]


def referenced_items(ids: set, key_id: str, previous_response_id: Optional[str],
                     conversation_id: Optional[str]) -> tuple[dict, set]:
    """What `item_reference`s name, among this key's items: `{id: item}` for those found outside the
    request's context, and the ids already in it (the previous responses' chain, or its conversation)."""
    in_context: set = set()
    found: dict = {}
    response_id = previous_response_id
    for _ in range(CHAIN_LIMIT):
        if not response_id:
            break
        row = (StoredResponse.select(StoredResponse.body, StoredResponse.input_items)
               .where((StoredResponse.id == response_id) & (StoredResponse.key_id == key_id)).first())
        if row is None:
            break
        in_context |= {item.get("id") for item in _items_of(row)} & ids
        response_id = row.body.get("previous_response_id") if isinstance(row.body, dict) else None
    rows = (ConversationItem.select(ConversationItem.item_id, ConversationItem.item, ConversationItem.conversation_id)
            .join(Conversation, on=(ConversationItem.conversation_id == Conversation.id))
            .where(ConversationItem.item_id.in_(sorted(ids)) & (Conversation.key_id == key_id)))
    for row in rows:
        if row.conversation_id == conversation_id:
            in_context.add(row.item_id)
        else:
            found.setdefault(row.item_id, row.item)
    missing = ids - in_context - found.keys()
    if missing:
        recent = (StoredResponse.select(StoredResponse.body, StoredResponse.input_items)
                  .where(StoredResponse.key_id == key_id).order_by(StoredResponse.created_at.desc())
                  .limit(REFERENCE_SCAN))
        for row in recent:
            for item in _items_of(row):
                if item.get("id") in missing:
                    found.setdefault(item["id"], item)
            if not missing - found.keys():
                break
    return found, in_context
