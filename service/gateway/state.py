"""Responses-API state held by the gateway: stored responses and their threads.

A stored response keeps its whole thread as canonical messages (history,
this turn's input, the output), so `previous_response_id` works whichever
account or wire format served the earlier turn. Instructions are not part of
the thread: as in OpenAI's API, they do not carry over.
"""
from __future__ import annotations

from typing import Optional

from ..api_error import ApiError
from ..models import StoredResponse
from .canonical import Message, ReasoningPart, Response, TextPart, ToolCallPart


def load_thread(response_id: str, key_id: str) -> list:
    """The canonical messages of a stored response's thread (404 for another key's)."""
    row = get_stored(response_id, key_id, param="previous_response_id")
    return [Message.from_dict(m) for m in row.thread or []]


def output_message(response: Response) -> Optional[Message]:
    """The assistant message that a response adds to the thread."""
    parts = [p for p in response.parts if isinstance(p, (TextPart, ToolCallPart, ReasoningPart))]
    return Message(role="assistant", parts=parts) if parts else None


def store_response(response_id: str, key_id: str, model: str, body: dict, input_items: list,
                   messages: list, response: Response) -> None:
    """Keep a response for GET and for the next turn's previous_response_id."""
    thread = list(messages)
    reply = output_message(response)
    if reply is not None:
        thread.append(reply)
    StoredResponse.insert(id=response_id, key_id=key_id, model=model, body=body, input_items=input_items,
                          thread=[m.to_dict() for m in thread]).execute()


def get_stored(response_id: str, key_id: str, param: str = "response_id") -> StoredResponse:
    """A stored response of this key (404, naming `param`, for an unknown id or another key's)."""
    row = StoredResponse.get_or_none((StoredResponse.id == response_id) & (StoredResponse.key_id == key_id))
    if row is None:
        raise ApiError(404, f"No response with id '{response_id}'.", param=param)
    return row
