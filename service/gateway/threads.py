"""Responses state in one call: item references, `previous_response_id` threads, conversations, storage.

The generic pipeline knows none of this: for a Responses call it opens a `Thread`
(`open_thread`, before the body is parsed) and asks it what the call carries and
what to keep afterwards. Other formats have no thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from ..api_error import ApiError
from ..storage.db import connected
from . import conversations, state
from .canonical import Message, Request, Response
from .codecs import openai_responses


@dataclass
class Thread:
    """A Responses call's place in the gateway's state."""

    body: dict  # the client's body, its item references resolved
    key_id: Callable[[], str]  # the caller's key id, asked only when state must be read or written
    input_items: list = field(default_factory=list)  # this turn's input, normalized
    extra: dict = field(default_factory=dict)  # previous_response_id / conversation / store, echoed in the answer
    held_messages: int = 0  # leading messages of the request that the gateway held (its thread)

    @property
    def store(self) -> bool:
        return self.body.get("store", True) is not False

    def prepend_history(self, request: Request) -> None:
        """Put the messages of the earlier turns (a stored response's thread or a conversation) before the
        request's own (400 for both at once, 404 for one the key does not own)."""
        body = self.body
        self.input_items = openai_responses.input_items(body) if body.get("input") is not None else []
        previous = body.get("previous_response_id")
        conversation = conversations.conversation_param(body)
        if previous and conversation:
            raise ApiError(400, "Mutually exclusive parameters: send only one of 'previous_response_id' and "
                                "'conversation'.", param="conversation", code="mutually_exclusive_parameters")
        held: list[Message] = []
        if previous:
            if not isinstance(previous, str):
                raise ApiError(400, "previous_response_id must be a string.", param="previous_response_id")
            held = state.load_thread(previous, self.key_id())
            self.extra["previous_response_id"] = previous
        if conversation:
            held = conversations.load_messages(conversation, self.key_id())
            self.extra["conversation"] = {"id": conversation}
        self.extra["store"] = self.store
        request.messages = held + request.messages
        self.held_messages = len(held)

    def passthrough_input(self, messages: list[Message]):
        """The input for an upstream that speaks Responses itself: the thread the gateway holds, then the
        client's own input as it sent it (item types we cannot translate, such as Codex's custom tool calls,
        and unknown fields kept).

        Input that names files of ours goes the canonical way: only there are file ids made inline content.
        """
        raw = self.body.get("input")
        if _names_file_ids(raw):
            return openai_responses.messages_to_items(messages)
        held = openai_responses.messages_to_items(messages[:self.held_messages])
        if not held:
            return raw if raw is not None else []
        own = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else list(raw or [])
        return held + own

    def stored(self, response_id: str, model: str, body: dict, messages: list[Message],
               response: Response) -> Optional[tuple]:
        """The statement that stores the answer (SQL, params), written with the call's settlement; None when
        `store` is false."""
        if not self.store:
            return None
        return state.stored_response(response_id, self.key_id(), model, body, self.input_items, messages, response)

    def record_conversation(self, body: dict, response: Response) -> None:
        """Add the answer to its conversation, if it has one (always: the conversation is the client's own
        record)."""
        conversation = self.extra.get("conversation")
        if conversation:
            with connected():
                conversations.append_response(conversation["id"], self.input_items, body, response)


def open_thread(body: dict, key_id: Callable[[], str]) -> Thread:
    """The thread of a Responses call, its item references resolved (400 `item_not_found`)."""
    return Thread(body=_resolve_item_references(body, key_id), key_id=key_id)


def _is_reference(item) -> bool:
    """Whether a Responses input item is an `item_reference` (its `type` may be left out: an id, no role)."""
    return isinstance(item, dict) and isinstance(item.get("id"), str) and (
        item.get("type") == "item_reference" or ("type" not in item and "role" not in item))


def _resolve_item_references(body: dict, key_id: Callable[[], str]) -> dict:
    """Replace each `item_reference` of a Responses input by the item it names, among the key's stored
    responses and conversations (400 when none has it); one already in the request's context (its
    previous responses or its conversation) adds nothing."""
    raw = body.get("input")
    if not isinstance(raw, list) or not any(_is_reference(item) for item in raw):
        return body
    ids = {item["id"] for item in raw if _is_reference(item)}
    previous = body.get("previous_response_id")
    conversation = conversations.conversation_param(body)
    found, in_context = state.referenced_items(ids, key_id(), previous if isinstance(previous, str) else None,
                                               conversation)
    missing = sorted(ids - in_context - found.keys())
    if missing:
        raise ApiError(400, f"Item with id '{missing[0]}' not found.", param="input", code="item_not_found")
    return {**body, "input": [found[item["id"]] if _is_reference(item) else item for item in raw
                              if not _is_reference(item) or item["id"] in found]}


def _names_file_ids(value) -> bool:
    """Whether Responses input holds a part with a `file_id` (ours are resolved on the canonical messages)."""
    if isinstance(value, dict):
        return "file_id" in value or any(_names_file_ids(v) for v in value.values() if isinstance(v, (dict, list)))
    if isinstance(value, list):
        return any(_names_file_ids(v) for v in value)
    return False


__all__ = ["Thread", "open_thread"]
