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
    """(event name, data) for each complete event in a byte stream.

    Handles CRLF/LF line ends, multi-line data (joined with newlines), comment
    lines and `id:`/`retry:` fields. A trailing half-written event is dropped:
    the caller sees the stream end without it and treats that as a cut.

    The complete lines of what has arrived are decoded and split at once (a newline byte is never part of
    a multi-byte UTF-8 character, so a line is decoded whole, as alone); only a cut line waits for more.
    """
    rest = b""  # a line not yet ended
    event: Optional[str] = None
    data: list[str] = []
    for chunk in chunks:
        end = chunk.rfind(b"\n")
        if end < 0:
            rest += chunk
            continue
        block = rest + chunk[:end] if rest else chunk[:end]
        rest = chunk[end + 1:]
        for line in block.decode("utf-8", errors="replace").split("\n"):
            if line.endswith("\r"):
                line = line.rstrip("\r")
            if not line:
                if data:
                    yield event, "\n".join(data)
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


_DONE = object()


MAX_BATCH = 32  # events per write at most: a client that hung up is noticed within a few writes


def batches_with_keepalive(iterator: Iterator, interval: float) -> Iterator[Optional[list]]:
    """The items of `iterator` in lists of those available at once (up to MAX_BATCH), and None whenever
    `interval` seconds pass without one.

    Under gevent a reader greenlet feeds a queue, so the caller can send a
    keep-alive comment during long upstream silences, and can write all the
    events one upstream read brought in one piece (one send instead of one per
    event); without gevent each item comes alone. Exceptions of the iterator are
    re-raised after the items before them.
    """
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover
        monkey = None
    if monkey is None or not monkey.is_module_patched("socket") or interval <= 0:
        for item in iterator:
            yield [item]
        return
    import gevent
    from gevent.queue import Empty, Queue

    queue: Queue = Queue()

    def pump():
        try:
            for item in iterator:
                queue.put((item, None))
        except BaseException as exc:  # handed to the consumer
            queue.put((_DONE, exc))
        else:
            queue.put((_DONE, None))

    reader = gevent.spawn(pump)
    try:
        while True:
            try:  # what the reader already has needs no timer (gevent makes one for each blocking get)
                item, error = queue.get_nowait()
            except Empty:
                try:
                    item, error = queue.get(timeout=interval)
                except Empty:
                    yield None
                    continue
            batch = []
            while item is not _DONE:
                batch.append(item)
                if len(batch) == MAX_BATCH:
                    break
                try:
                    item, error = queue.get_nowait()
                except Empty:
                    break
            if batch:
                yield batch
            if item is _DONE:
                if error is not None:
                    raise error
                return
    finally:
        reader.kill(block=False)
