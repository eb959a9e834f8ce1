"""Server-sent events: one writer for our streams, one reader for upstream streams."""
from __future__ import annotations

import json
from typing import Iterable, Iterator, Optional, Union

Payload = Union[dict, str]


def encode_event(event: Optional[str], payload: Payload) -> bytes:
    """One SSE event: an optional `event:` line and one `data:` line, ended by a blank line."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if event:
        return f"event: {event}\ndata: {data}\n\n".encode("utf-8")
    return f"data: {data}\n\n".encode("utf-8")


KEEPALIVE = b": keep-alive\n\n"


def read_events(chunks: Iterable[bytes]) -> Iterator[tuple[Optional[str], str]]:
    """(event name, data) for each complete event in a byte stream (EventReader's, chunk after chunk)."""
    reader = EventReader()
    for chunk in chunks:
        yield from reader.feed(chunk)


class EventReader:
    """Server-sent events read from a byte stream as it arrives: `feed` each piece, get the events it completed.

    Handles CRLF/LF line ends, multi-line data (joined with newlines), comment
    lines and `id:`/`retry:` fields. A trailing half-written event is never
    given: the caller sees the stream end without it and treats that as a cut.

    The complete lines of what has arrived are decoded and split at once (a newline byte is never part of
    a multi-byte UTF-8 character, so a line is decoded whole, as alone); only a cut line waits for more.
    """

    __slots__ = ("_rest", "_event", "_data")

    def __init__(self) -> None:
        self._rest = b""  # a line not yet ended
        self._event: Optional[str] = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[Optional[str], str]]:
        """The events `chunk` completed, in order."""
        end = chunk.rfind(b"\n")
        if end < 0:
            self._rest += chunk
            return []
        block = self._rest + chunk[:end] if self._rest else chunk[:end]
        self._rest = chunk[end + 1:]
        events = []
        event, data = self._event, self._data
        for line in block.decode("utf-8", errors="replace").split("\n"):
            if line.endswith("\r"):
                line = line.rstrip("\r")
            if not line:
                if data:
                    events.append((event, "\n".join(data)))
                event, data = None, []
                continue
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        self._event, self._data = event, data
        return events
