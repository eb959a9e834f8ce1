"""Reading server-sent events from a byte stream, as the OpenAI SDK does."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional


@dataclass
class ServerEvent:
    """One event: the `event:` name (or None) and the joined `data:` lines."""

    event: Optional[str]
    data: str


def iter_events(chunks: Iterable[bytes]) -> Iterator[ServerEvent]:
    """Events from raw chunks; a blank line ends an event, `:` lines are comments."""
    buffer = b""
    name: Optional[str] = None
    data: list[str] = []
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
            if not line:
                if data or name:
                    yield ServerEvent(name, "\n".join(data))
                name, data = None, []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
    if data:
        yield ServerEvent(name, "\n".join(data))
