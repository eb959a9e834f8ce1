"""A local token estimate, for upstreams that report no usage and for budget reservations.

No tokenizer ships its vocabulary offline with a license we can vendor here,
so we estimate: about four characters of English (or one CJK character) per
token, plus a few tokens of framing per message, as OpenAI documents for its
chat format. It errs on the high side, which is the safe side for budgets.
"""
from __future__ import annotations

import json
import math

from .canonical import FilePart, ImagePart, Message, ReasoningPart, Request, TextPart, ToolCallPart, ToolResultPart

PER_MESSAGE = 4
PER_IMAGE = 800
PER_FILE_BYTES = 3  # base64 bytes per token for documents, roughly


def estimate_text(text: str) -> int:
    """Tokens in a piece of text (never 0 for non-empty text)."""
    if not text:
        return 0
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    return max(1, math.ceil((len(text) - wide) / 4) + wide)


def _part_tokens(part) -> int:
    if isinstance(part, TextPart):
        return estimate_text(part.text)
    if isinstance(part, ToolCallPart):
        return estimate_text(part.name) + estimate_text(part.arguments) + 3
    if isinstance(part, ToolResultPart):
        return estimate_text(part.text()) + 3
    if isinstance(part, ReasoningPart):
        return estimate_text(part.text)
    if isinstance(part, ImagePart):
        return PER_IMAGE
    if isinstance(part, FilePart):
        return estimate_text(part.text or "") + len(part.data or "") // PER_FILE_BYTES
    return 0


def estimate_message(message: Message) -> int:
    return PER_MESSAGE + sum(_part_tokens(p) for p in message.parts)


def estimate_request(request: Request) -> int:
    """Input tokens of a canonical request: system, messages and tool definitions."""
    total = 3 + estimate_text(request.system or "")
    total += sum(estimate_message(m) for m in request.messages)
    for tool in request.tools:
        total += estimate_text(tool.name) + estimate_text(tool.description or "")
        total += estimate_text(json.dumps(tool.parameters, separators=(",", ":")))
    return total
