"""service/json_codec.py reads every text to the standard library's value (or the same refusal), and writes
what the standard library reads back as the same value; the request guard's strict reading is unchanged."""
from __future__ import annotations

import json
import math
import random

import pytest

from service import json_codec
from service.http.request_guard import STRICT_DECODER, NotStrictJson, strict_json

EDGE_TEXTS = ["18446744073709551615", "18446744073709551616", "-9223372036854775808", "-9223372036854775809",
              "123456789012345678901234567890", '{"n": 99999999999999999999.5}', "1e308", "1e400", "-1e400", "NaN",
              "[Infinity, -Infinity]", '"\\ud800"', '"\\ud83d\\ude00"', '"\\udc00\\ud800"', '{"a": 1, "a": 2}',
              "[1,]", "\ufeff{}", "01", '"a\tb"', "", " ", "[" * 1500 + "]" * 1500,
              '{"id": "chatcmpl-12345678901234567890"}', "0.1", "-0.0",
              "5e-324", '"\\u0000\\n\\u2028é"', "true", "null", '{"x": [1, 2.5, "three", false]}']


def same(a, b) -> bool:
    """Equal values of the same types all the way down (1 is not 1.0; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def has_float(value) -> bool:
    if isinstance(value, dict):
        return any(has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(has_float(item) for item in value)
    return isinstance(value, float)


def has_big_int(value) -> bool:
    if isinstance(value, dict):
        return any(has_big_int(item) for item in value.values())
    if isinstance(value, list):
        return any(has_big_int(item) for item in value)
    return isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value < 2 ** 64


def outcome(read, text):
    try:
        return "value", read(text)
    except RecursionError:
        return "error", "RecursionError"
    except ValueError as error:
        return "error", type(error).__name__


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([0, 1, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 2 ** 64, -2 ** 63 - 1, 10 ** 30,
                           rng.randint(-10 ** 25, 10 ** 25), rng.randint(-1000, 1000)])
    if kind == 1:
        return rng.choice([0.1, -0.0, 1e-7, 1e-5, 1e16, 1e22, 5e-324, 1.7976931348623157e308, rng.uniform(-1e6, 1e6)])
    if kind == 2:
        return "".join(rng.choice(["a", "é", "€", "😀", "\n", "\t", '"', "\\", "\x00", "\u2028", "1234567890"])
                       for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return str(rng.randrange(10 ** rng.randrange(1, 25)))
    if kind in (6, 7):
        return {f"k{rng.randrange(5)}{rng.choice(['', 'é', '😀'])}": random_value(rng, depth + 1)
                for _ in range(rng.randrange(5))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_edge_texts_read_as_the_standard_library_reads_them(text):
    for form in (text, text.encode("utf-8")):
        mine, theirs = outcome(json_codec.loads, form), outcome(json.loads, form)
        assert mine[0] == theirs[0] and (mine[0] == "error" or same(mine[1], theirs[1])), (form, mine, theirs)


@pytest.mark.parametrize("seed", range(200))
def test_random_values_round_trip_as_the_standard_library_writes_and_reads_them(seed):
    rng = random.Random(seed)
    value = random_value(rng)
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value, indent=1)):
        assert same(json_codec.loads(text), json.loads(text))
        assert same(json_codec.loads(text.encode("utf-8")), json.loads(text))
    written = json_codec.dumps(value)
    assert same(json.loads(written), value)
    if not has_float(value):  # orjson spells some floats otherwise (1e-05 as 0.00001); all else byte for byte
        ascii_only = has_big_int(value)  # written by the standard library, escaped
        assert written == json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only).encode("utf-8")


def test_what_orjson_cannot_write_is_written_by_the_standard_library():
    assert json_codec.dumps({"big": 2 ** 64, 1: "int key"}) == b'{"big":18446744073709551616,"1":"int key"}'
    assert json_codec.dumps({"lone": "\ud800"}) == b'{"lone":"\\ud800"}'  # escaped: still a JSON text
    assert json_codec.dumps({"text": "é"}) == '{"text":"é"}'.encode("utf-8")  # UTF-8, not escaped
    assert json_codec.dumps({"inf": math.inf}) == b'{"inf":null}'  # valid JSON, not `Infinity`


@pytest.mark.parametrize("text", EDGE_TEXTS + [json.dumps(random_value(random.Random(s))) for s in range(100)])
def test_the_strict_reading_of_request_bodies_is_unchanged(text):
    def reference(raw: bytes):  # the strict reading before orjson: the standard library's decoder, then the checks
        decoded = raw.decode("utf-8-sig")
        value = STRICT_DECODER.decode(decoded)
        if "\\ud" in decoded or "\\uD" in decoded:
            from service.http.request_guard import _refuse_lone_surrogates

            _refuse_lone_surrogates(value)
        return value

    def result(read):
        try:
            return "value", read(text.encode("utf-8"))
        except NotStrictJson:
            return "refused", None
        except RecursionError:
            return "error", None
        except ValueError:
            return "error", None

    mine, theirs = result(strict_json), result(reference)
    assert mine[0] == theirs[0] and same(mine[1], theirs[1]), (text[:60], mine, theirs)
