"""The chunked-body decoder of upstream streams (gateway/upstreams/chunked.py): whatever way the bytes are cut
into reads, it gives the body the chunks carry — with extensions, trailers, one-byte reads and chunks split
anywhere — and it refuses framing errors and a body cut short."""
from __future__ import annotations

import random
from http.client import IncompleteRead

import pytest

from service.gateway.upstreams.chunked import ChunkedBody, ProtocolError


class Reads:
    """A reader whose read1 gives the given pieces one by one, then EOF."""

    def __init__(self, pieces: list):
        self.pieces = list(pieces)

    def read1(self, _size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def encode(parts: list, extension: bool = False, trailers: bytes = b"") -> bytes:
    out = b""
    for part in parts:
        out += b"%x%s\r\n%s\r\n" % (len(part), b";name=value" if extension else b"", part)
    return out + b"0\r\n" + trailers + b"\r\n"


def cut(data: bytes, rng: random.Random) -> list:
    pieces, at = [], 0
    while at < len(data):
        step = rng.choice([1, 2, 3, 5, 8, 13, 64, 1000])
        pieces.append(data[at:at + step])
        at += step
    return pieces


def decoded(pieces: list) -> tuple:
    body = ChunkedBody(Reads(pieces))
    out = list(body)
    return b"".join(out), out, body


def test_any_cutting_of_a_chunked_body_decodes_to_its_data():
    rng = random.Random(18)
    for round_ in range(400):
        parts = [bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 10, 100, 300]))) for _ in
                 range(rng.randrange(1, 12))]
        trailers = b"X-Trailer: 1\r\nX-Other: two\r\n" if round_ % 3 == 0 else b""
        data = encode(parts, extension=round_ % 2 == 0, trailers=trailers)
        whole, _, body = decoded(cut(data, rng))
        assert whole == b"".join(parts), round_
        assert body.done and not body.leftover


def test_what_arrives_together_leaves_together():
    events = [b"data: {\"n\": %d}\n\n" % n for n in range(20)]
    whole, out, _ = decoded([encode(events)])  # one read brought every chunk
    assert out == [b"".join(events)]
    whole, out, _ = decoded([encode(events[:5])[:-5], encode(events[:5])[-5:]])
    assert whole == b"".join(events[:5])


def test_a_part_of_a_chunk_is_given_as_it_arrives():
    data = encode([b"x" * 1000])
    _, out, _ = decoded([data[:300], data[300:]])
    assert out[0] == b"x" * (300 - len(b"3e8\r\n")) and b"".join(out) == b"x" * 1000


def test_bytes_after_the_body_are_noticed():
    _, _, body = decoded([encode([b"abc"]) + b"HTTP/1.1 200 OK\r\n"])
    assert body.done and body.leftover


@pytest.mark.parametrize("data, error", [
    (b"zz\r\nab\r\n0\r\n\r\n", ProtocolError),  # no hexadecimal size
    (b"\r\nab\r\n0\r\n\r\n", ProtocolError),  # an empty size
    (b"-2\r\nab\r\n0\r\n\r\n", ProtocolError),
    (b"2\r\nabXY0\r\n\r\n", ProtocolError),  # data not followed by CRLF
    (b"1" * 2000, ProtocolError),  # a size line past its limit
    (b"5\r\nab", IncompleteRead),  # the connection closed mid-chunk
    (b"2\r\nab\r\n", IncompleteRead),  # closed before the last chunk
    (b"", IncompleteRead),
])
def test_broken_framing_and_cut_bodies_are_errors(data, error):
    with pytest.raises(error):
        decoded([data])
    with pytest.raises(error):
        decoded([data[i:i + 1] for i in range(len(data))])  # the same, a byte per read
