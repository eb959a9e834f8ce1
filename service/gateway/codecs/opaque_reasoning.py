"""Reasoning that must go back to its provider intact, carried through another format's opaque field.

An Anthropic thinking signature (or redacted thinking) shown to a Responses client rides in the reasoning
item's `encrypted_content`; an OpenAI `encrypted_content` shown to an Anthropic client rides in the thinking
block's `signature`; reasoning with neither (an OpenAI-compatible server's `reasoning_content`) gets a
signature that says so. Each is our own envelope, which the client sends back untouched and this module
opens again; the upstream only ever sees its own payload (`provider`).
"""
from __future__ import annotations

import base64
import json
from typing import Optional

from ..canonical import ReasoningPart

PREFIX = "onekeyllm.reasoning.v1:"


def provider(part: ReasoningPart) -> Optional[str]:
    """Whose reasoning this is: "anthropic" (signed or redacted), "openai" (encrypted content), None (plain text)."""
    if part.signature or part.redacted_data:
        return "anthropic"
    return "openai" if part.encrypted_content else None


def wrap(part: ReasoningPart) -> str:
    """The part's resendable payload in our envelope."""
    payload: dict = {"provider": provider(part)}
    if part.redacted_data:
        payload["redacted"] = part.redacted_data
    elif part.signature:
        payload.update(thinking=part.text, signature=part.signature)
    elif part.encrypted_content:
        payload.update(encrypted_content=part.encrypted_content, id=part.id)
    return PREFIX + base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def unwrap(value: object, text: str = "") -> Optional[ReasoningPart]:
    """The reasoning part inside one of our envelopes (None when `value` is not one: the provider's own)."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(value[len(PREFIX):].encode()))
    except ValueError:
        return ReasoningPart(text=text)  # damaged: shown reasoning, resent to no one
    if not isinstance(payload, dict):
        return ReasoningPart(text=text)
    if payload.get("redacted"):
        return ReasoningPart(redacted_data=str(payload["redacted"]))
    if payload.get("signature"):  # the signature covers the thinking as the provider wrote it
        return ReasoningPart(text=str(payload.get("thinking") or ""), signature=str(payload["signature"]))
    if payload.get("encrypted_content"):
        return ReasoningPart(text=text, encrypted_content=str(payload["encrypted_content"]), id=payload.get("id"))
    return ReasoningPart(text=text)


def chat_details(part: ReasoningPart) -> list:
    """The part as Chat `reasoning_details` entries (the OpenRouter convention), empty for plain text."""
    if part.redacted_data:
        return [{"type": "reasoning.encrypted", "data": part.redacted_data, "format": "anthropic-claude-v1"}]
    if part.signature:
        return [{"type": "reasoning.text", "text": part.text, "signature": part.signature,
                 "format": "anthropic-claude-v1"}]
    if part.encrypted_content:
        return [{"type": "reasoning.encrypted", "data": part.encrypted_content, "id": part.id,
                 "format": "openai-responses-v1"}]
    return []


def from_chat_details(details: object) -> list:
    """Chat `reasoning_details` entries as reasoning parts."""
    parts = []
    for entry in details if isinstance(details, list) else []:
        if not isinstance(entry, dict):
            continue
        anthropic = str(entry.get("format") or "").startswith("anthropic")
        if entry.get("type") == "reasoning.text" and entry.get("signature"):
            parts.append(ReasoningPart(text=str(entry.get("text") or ""), signature=str(entry["signature"])))
        elif entry.get("type") == "reasoning.encrypted" and entry.get("data"):
            parts.append(ReasoningPart(redacted_data=str(entry["data"])) if anthropic else
                         ReasoningPart(encrypted_content=str(entry["data"]), id=entry.get("id")))
    return parts


def thread_provider(messages: list) -> Optional[str]:
    """The provider whose resendable reasoning the thread holds last ("anthropic", "openai" or None)."""
    for message in reversed(messages):
        for part in reversed(message.parts):
            if isinstance(part, ReasoningPart) and provider(part):
                return provider(part)
    return None


def same_provider_first(accounts: list, messages: list) -> list:
    """Accounts of the provider whose reasoning the thread carries first (it can read it), the order kept otherwise."""
    wanted = thread_provider(messages)
    if wanted is None:
        return accounts
    reads = {"anthropic": lambda a: a.provider == "anthropic",
             "openai": lambda a: a.provider == "openai" and a.api == "responses"}[wanted]
    return [a for a in accounts if reads(a)] + [a for a in accounts if not reads(a)]
