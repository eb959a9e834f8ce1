"""The upstream SSE reader (gateway/sse.read_events) gives the events a line-by-line reading gives, however the
stream is cut into chunks: multi-byte characters and CRLF pairs split across reads, invalid UTF-8, comments,
multi-line data, `id:`/`retry:` fields, and a half-written last event (dropped)."""
from __future__ import annotations

import random

import pytest

from service.gateway.sse import read_events


def line_by_line(stream: bytes) -> list:
    """The reference: the stream's ended lines (LF or CRLF; no bare CR) gathered into blocks at each blank
    line, each block's fields read as the SSE specification reads them."""
    events, fields = [], []
    for raw in stream[:stream.rfind(b"\n") + 1].split(b"\n")[:-1]:  # a last piece without its line end: unread
        line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
        if line:
            if not line.startswith(":"):
                name, _, value = line.partition(":")
                fields.append((name, value[1:] if value.startswith(" ") else value))
            continue
        data = [value for name, value in fields if name == "data"]
        names = [value for name, value in fields if name == "event"]
        if data:
            events.append((names[-1] if names else None, "\n".join(data)))
        fields = []
    return events


PIECES = [b"data: {\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"}}]}\n\n",
          b"event: message_start\r\ndata: {\"type\":\"message_start\"}\r\n\r\n",
          b": keep-alive\n\n", b"id: 7\nretry: 100\ndata: one\ndata: two\n\n", b"data:no-space\n\n",
          b"data: [DONE]\n\n", b"data: bad \xff\xfe utf-8 \xe2\x82\n\n", b"data: cut \xe2\x82\r\n\r\n",
          b"event: ping\n\n", b"\n\n", b"data\n\n", b"data: a:b: c\n\n", b"data:  two spaces\n\n",
          b"data: trailing crs\r\r\n\n", b"data: x\r\n\n"]


def split_randomly(stream: bytes, rng: random.Random) -> list:
    cuts = sorted(rng.sample(range(1, len(stream)), k=min(len(stream) - 1, rng.randint(0, 12))))
    return [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]


@pytest.mark.parametrize("seed", range(300))
def test_any_chunking_reads_as_line_by_line(seed):
    rng = random.Random(seed)
    stream = b"".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))
    if rng.random() < 0.3:
        stream += b"data: half-written"  # the stream ends inside an event: it is not given
    chunks = split_randomly(stream, rng)
    if rng.random() < 0.2:
        chunks.insert(rng.randrange(len(chunks) + 1), b"")  # an empty read on the way
    assert list(read_events(iter(chunks))) == line_by_line(stream)


def test_every_byte_alone():
    stream = b"".join(PIECES)
    assert list(read_events(stream[i:i + 1] for i in range(len(stream)))) == line_by_line(stream)
    assert ("message_start", '{"type":"message_start"}') in line_by_line(stream)
    assert (None, "one\ntwo") in line_by_line(stream)
