"""A local token estimate (for upstreams that report no usage) and the input's upper bound (for reservations).

No tokenizer ships its vocabulary offline with a license we can vendor here,
so we estimate: about four characters of English (or one CJK character) per
token, plus a few tokens of framing per message, as OpenAI documents for its
chat format. It errs on the high side, which is the safe side for budgets.
"""
from __future__ import annotations

import json
import math
import re

from .canonical import FilePart, ImagePart, Message, ReasoningPart, Request, TextPart, ToolCallPart, ToolResultPart

PER_MESSAGE = 4
PER_IMAGE = 800
PER_FILE_BYTES = 3  # base64 bytes per token for documents, roughly


WIDE_RUN = re.compile("[\u2e81-\U0010ffff]+")  # CJK and the rest past U+2E80: a token each


def estimate_text(text: str) -> int:
    """Tokens in a piece of text (never 0 for non-empty text).

    The wide characters are counted in C (ASCII has none; the others in runs): a character at a time in
    Python cost 20 µs per KiB of prompt, 2 ms for a coding agent's 100 KiB (bench/README.md)."""
    if not text:
        return 0
    wide = 0 if text.isascii() else sum(map(len, WIDE_RUN.findall(text)))
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


# ---------------------------------------------------------------- the input's upper bound
# A true upper bound on the input tokens of any upstream's tokenizer, for budget reservations, by arithmetic
# only: a byte-level BPE token (OpenAI's, Anthropic's, Llama's byte fallback) covers at least one byte of
# UTF-8, so a text's bytes bound its tokens. What is not text is bounded by its providers' formulas.
FRAMING_PER_MESSAGE = 8  # role and separators: OpenAI documents 3-4 per message; chat templates a few more
FRAMING_PER_REQUEST = 16  # the reply's priming and the system turn's framing
FRAMING_PER_TOOL = 16
TOOL_USE_PROMPT = 400  # the system prompt providers add when tools are given (Anthropic documents 313-346)
# The most one image is counted as, over the providers' documented formulas: OpenAI's patch models cap an
# image at 1,536 patches x 1.62 (2,489), its tiled models at 765 (high detail), Anthropic at about 1,600
# (1.15 megapixels / 750) after resizing. An upstream that counts more is charged as its overage.
IMAGE_BOUND = 2600


def text_bytes(text: str) -> int:
    """The UTF-8 length of `text`, without encoding it when it is ASCII (the common case)."""
    if not text:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _part_bound(part, unknown: int) -> int:
    if isinstance(part, TextPart):
        return text_bytes(part.text)
    if isinstance(part, ToolCallPart):
        return text_bytes(part.name) + text_bytes(part.arguments) + FRAMING_PER_MESSAGE
    if isinstance(part, ToolResultPart):
        if isinstance(part.content, list):
            return FRAMING_PER_MESSAGE + sum(_part_bound(p, unknown) for p in part.content)
        return text_bytes(part.content) + FRAMING_PER_MESSAGE
    if isinstance(part, ReasoningPart):
        return text_bytes(part.text) + text_bytes(part.signature or "") + text_bytes(part.redacted_data or "") \
            + text_bytes(part.encrypted_content or "")
    if isinstance(part, ImagePart):
        return IMAGE_BOUND
    if isinstance(part, FilePart):
        # a document is read as its text and pages: never more tokens than its bytes, of which base64 has more
        if part.data or part.text:
            return len(part.data or "") + text_bytes(part.text or "") + IMAGE_BOUND
        return unknown  # a URL the upstream fetches: only the context window bounds it
    return unknown


def bound_request(request: Request, context_window: int | None = None) -> int:
    """Input tokens that no upstream's count of `request` can exceed (capped at the model's context window).

    A document given by URL alone is bounded by the context window only (a large constant without one).
    """
    unknown = context_window or 1_000_000
    total = FRAMING_PER_REQUEST + text_bytes(request.system or "")
    for message in request.messages:
        total += FRAMING_PER_MESSAGE + sum(_part_bound(p, unknown) for p in message.parts)
    if request.tools:
        total += TOOL_USE_PROMPT
        for tool in request.tools:
            total += FRAMING_PER_TOOL + text_bytes(tool.name) + text_bytes(tool.description or "")
            total += text_bytes(json.dumps(tool.parameters, separators=(",", ":"), ensure_ascii=False))
    if request.response_format:
        total += text_bytes(json.dumps(request.response_format, separators=(",", ":"), ensure_ascii=False))
    return min(total, context_window) if context_window else total


def asks_for_caching(body: dict) -> bool:
    """Whether a request body marks anything `cache_control` (then input may be billed as cache writes)."""
    stack: list = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "cache_control" in value:
                return True
            stack.extend(v for v in value.values() if isinstance(v, (dict, list)))
        elif isinstance(value, list):
            stack.extend(v for v in value if isinstance(v, (dict, list)))
    return False
