"""The gateway's output cap: sent upstream in the field that upstream honours, and enforced on streams.

Every upstream request carries the cap its reservation was planned on. OpenAI's
own API wants `max_completion_tokens` on Chat; most OpenAI-compatible servers
(llama.cpp, older vLLM, many proxies) honour only `max_tokens` and ignore the
other: an account's `compat.max_tokens_field` says which (`auto`: by host).
Where an upstream streams past the cap anyway, `OutputWatch` tells the pipeline
to stop there.
"""
from __future__ import annotations

from typing import Iterable, Optional
from urllib.parse import urlsplit

from .canonical import STOP_MAX_TOKENS, StreamEvent, Usage
from .catalog import AccountInfo

CHAT_CAP_FIELDS = ("max_tokens", "max_completion_tokens")
OPENAI_API_HOST = "api.openai.com"
COUNTED = ("text", "reasoning", "tool_args")  # stream events that carry output tokens


def chat_cap_field(account: AccountInfo) -> str:
    """The Chat Completions field that caps `account`'s output (`compat.max_tokens_field`, `auto` by host)."""
    chosen = (account.compat or {}).get("max_tokens_field") or "auto"
    if chosen in CHAT_CAP_FIELDS:
        return chosen
    host = (urlsplit(account.base_url).hostname or "").lower()
    return "max_completion_tokens" if host == OPENAI_API_HOST else "max_tokens"


def apply_cap(body: dict, wire_name: str, account: AccountInfo, cap: int) -> None:
    """Set the output cap of an upstream request body in `wire_name`'s field (the other Chat field dropped)."""
    if wire_name == "chat":
        for name in CHAT_CAP_FIELDS:
            body.pop(name, None)
        body[chat_cap_field(account)] = cap
    elif wire_name == "responses":
        body["max_output_tokens"] = cap
    else:
        body["max_tokens"] = cap


class OutputWatch:
    """Counts a stream's output as it arrives, to stop an upstream that generates past the cap.

    Every delta of text, reasoning or tool arguments carries at least one token, so counting deltas never
    counts more than the upstream generated: an upstream that honours the cap is never cut short.
    """

    def __init__(self, cap: Optional[int]):
        self.cap = cap
        self.seen = 0
        self.stopped = False  # the stream was ended at the cap

    def passes(self, events: Iterable[StreamEvent]) -> bool:
        """Whether `events` take the stream past the cap (they are then not to be sent)."""
        if self.cap is None:
            return False
        for event in events:
            if event.type in COUNTED and event.text:
                self.seen += 1
        return self.seen > self.cap

    def ending(self) -> list:
        """The events that end a stream stopped at the cap: its output tokens, and a length stop."""
        self.stopped = True
        return [StreamEvent("usage", usage=Usage(output_tokens=self.cap or 0)),
                StreamEvent("finish", stop_reason=STOP_MAX_TOKENS)]
