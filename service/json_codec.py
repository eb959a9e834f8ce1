"""JSON on the gateway's hot path: orjson where it gives what the standard library gives, the library otherwise.

Every call reads and writes JSON several times (the client's body, the upstream's request and answer, each
event of a stream); orjson itself takes a quarter of the time (bench/README.md). Its values are the standard
library's for every valid JSON text but one case, integers past 64 bits (it makes them floats): a text with
19 digits in a row is read by the standard library, as is any text orjson refuses (NaN, lone surrogates:
`json.loads` accepts those, or raises its own ValueError), and any long text (the look for long numbers costs
as much as orjson saves there). Written, orjson's bytes are `json.dumps`'s compact,
non-ASCII-escaping form (some floats spelled otherwise, `1e-05` as `0.00001`); what it cannot write (an
integer past 64 bits, a key that is not a string, a lone surrogate) the standard library writes, in ASCII
(escaped, so that any string can be written). Non-finite floats, which only a lenient upstream's answer can
hold, are written as `null`, valid JSON, not as `NaN`.
"""
from __future__ import annotations

import json
from typing import Callable, Union

import orjson

_DIGITS_AS_NINES = bytes.maketrans(b"0123456789", b"9" * 10)
_LONG_NUMBER = b"9" * 19  # 19 digits in a row: an integer there may be past 64 bits
SMALL = 8192  # characters: past this, looking for long numbers costs what orjson saves (bench/README.md)


def exact_for_orjson(text: Union[bytes, str]) -> bool:
    """Whether orjson is worth it on `text` and reads it to the standard library's value: a small text with no
    integer that can be past 64 bits (found by two passes in C; a regular expression takes six times as long)."""
    if len(text) > SMALL:
        return False
    data = text if type(text) is bytes else text.encode("utf-8", "surrogatepass")
    return _LONG_NUMBER not in data.translate(_DIGITS_AS_NINES)


def loads(text: Union[bytes, str], reading: Callable = json.loads):
    """`reading(text)` (`json.loads`, or a stricter reading built on it): the same value, or the same error.

    A stricter reading refuses no text orjson takes: orjson itself refuses NaN, Infinity, numbers past a double
    and lone surrogates, which the standard library accepts (or says why not)."""
    if exact_for_orjson(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return reading(text)


def dumps(value) -> bytes:
    """`value` as compact JSON in UTF-8 (`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`)."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, a key that is not a string, a surrogate
        return json.dumps(value, separators=(",", ":")).encode("ascii")
