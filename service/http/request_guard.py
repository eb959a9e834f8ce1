"""What every request must satisfy before a view reads it: no NUL in its URL, a body within the size limit,
strict JSON."""
from __future__ import annotations

import json
import math
import re
from typing import Optional
from urllib.parse import parse_qsl

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from .. import json_codec
from ..api_error import ApiError


def reject_nul_in_url() -> None:
    """400 for a NUL character in the path or the query: no id, cursor or filter holds one (and PostgreSQL
    cannot even compare text with it), so both databases answer alike."""
    check_url(request.path, request.query_string)


def check_url(path: str, query_string: bytes) -> None:
    """reject_nul_in_url's rule, for a path and a raw query string."""
    if "\x00" in path:
        raise ApiError(400, "The URL path must not contain NUL (%00) characters.", param="path")
    if b"%00" in query_string or b"\x00" in query_string:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                          errors="replace")
        names = [name for name, value in pairs if "\x00" in name + value]
        raise ApiError(400, "The query must not contain NUL (%00) characters.", param=names[0] if names else None)


def request_body() -> bytes:
    """The whole request body; 413 when it is over the limit (ONEKEYLLM_MAX_BODY_BYTES).

    werkzeug refuses a declared Content-Length over the limit, but cuts a chunked body at the limit without a
    word: a body that fills the limit is taken as one that went past it.
    """
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    return data


class NotStrictJson(ValueError):
    """JSON that parsers disagree on, or that no upstream takes: a non-finite number, a lone surrogate."""

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.param = param


def _refuse_constant(name: str):
    raise NotStrictJson(f"`{name}` is not a JSON number: send a finite number.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise NotStrictJson(f"The number {text[:40]} is too large: send a finite number.")
    return value


STRICT_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
SURROGATE = re.compile("[\ud800-\udfff]")
ESCAPED_BACKSLASH = re.compile(r"\\\\")
# a high surrogate not followed by a low one, or a low one not preceded by a high one (ensure_ascii JSON
# writes every character past U+FFFF as such a pair: those are fine)
LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
                                   r"|[c-fC-F][0-9a-fA-F]{2}(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))")


def strict_json(raw: bytes):
    """The value of a UTF-8 JSON text; ValueError for invalid JSON, NotStrictJson for NaN, Infinity, numbers
    past a double's range and lone surrogates (`"\\ud800"`, which no UTF-8 encoder takes)."""
    text = raw.decode("utf-8-sig")  # strict (a UTF-8-encoded surrogate is refused here); a BOM is dropped
    return json_codec.loads(text, _strict_reading)  # orjson where it reads the same (json_codec.py)


def _strict_reading(text: str):
    value = STRICT_DECODER.decode(text)
    if "\\ud" in text or "\\uD" in text:  # only an escape makes a surrogate: is one of them alone?
        escapes = ESCAPED_BACKSLASH.sub("", text) if "\\\\" in text else text  # each backslash left escapes
        if LONE_SURROGATE_ESCAPE.search(escapes):
            _refuse_lone_surrogates(value)  # which field, for the message
    return value


def _refuse_lone_surrogates(value) -> None:
    stack = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if SURROGATE.search(node):
                raise NotStrictJson(f"`{path or 'body'}` holds a lone UTF-16 surrogate (\\ud800-\\udfff): "
                                    "send valid Unicode text.", path or None)
        elif isinstance(node, dict):
            for name, item in node.items():
                stack.append((name, path))
                stack.append((item, f"{path}.{name}" if path else str(name)))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
