"""A chunked HTTP/1.1 body (RFC 9112 §7.1) decoded as it arrives: what one read of the socket brought, at once.

Providers stream SSE one event per chunk. urllib3's chunk reader (and http.client's) go through a Python
generator step, a size line read and a body read for each chunk; this reads what the connection has
(`read1`: the buffer, or one receive) and takes every chunk in it, and the part of one that has arrived,
in one pass over the bytes, so the events a read brought leave together.

Size lines may carry extensions (`;name=value`, ignored); trailers are read and dropped. A size that is no
hexadecimal number, a size line or trailer section past its limit, or a chunk not ended by CRLF is a
ProtocolError; the connection closing before the last chunk is an IncompleteRead. Whether bytes followed
the body (which a well-behaved server never sends: the connection is then not reused) is `leftover`.
"""
from __future__ import annotations

from http.client import IncompleteRead
from typing import Callable, Iterator, Optional

MAX_SIZE_LINE = 1024
MAX_TRAILERS = 64 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")


class ProtocolError(ValueError):
    """A chunked body that breaks the framing."""


class ChunkedBody:
    """Decodes the chunked body read from `fp` (a buffered reader with `read1`).

    With `ready` (a wait before each read: True once `fp` has bytes, False after a silence), the iteration
    gives None for each silence, so that its reader can say something meanwhile (a keep-alive)."""

    def __init__(self, fp, read_size: int = 65536, ready: Optional[Callable[[], bool]] = None):
        self._fp = fp
        self._read_size = read_size
        self._ready = ready
        self.done = False  # the last chunk and the trailers were read
        self.leftover = False  # bytes followed the body

    def __iter__(self) -> Iterator[Optional[bytes]]:
        buffer = b""
        state, remaining, seen = "size", 0, 0  # remaining: data bytes of this chunk to come; seen: trailer bytes
        ready = self._ready
        while not self.done:
            if ready is not None and not ready():
                yield None
                continue
            data = self._fp.read1(self._read_size)
            if not data:
                raise IncompleteRead(b"")
            buffer = buffer + data if buffer else data
            pieces, at, end = [], 0, len(buffer)
            while at < end:
                if state == "data":
                    take = min(remaining, end - at)
                    pieces.append(buffer[at:at + take])  # the whole buffer is no copy: bytes slices share it
                    at, remaining = at + take, remaining - take
                    if not remaining:
                        state = "crlf"
                elif state == "crlf":
                    if end - at < 2:
                        break
                    if buffer[at:at + 2] != b"\r\n":
                        raise ProtocolError("a chunk's data is not followed by CRLF")
                    at, state = at + 2, "size"
                elif state == "size":
                    eol = buffer.find(b"\n", at)
                    if eol < 0:
                        if end - at > MAX_SIZE_LINE:
                            raise ProtocolError("a chunk-size line past its limit")
                        break
                    remaining = _chunk_size(buffer[at:eol])
                    at, state = eol + 1, "data" if remaining else "trailers"
                else:  # trailers, up to the empty line that ends the body
                    eol = buffer.find(b"\n", at)
                    if eol < 0:
                        if seen + end - at > MAX_TRAILERS:
                            raise ProtocolError("trailers past their limit")
                        break
                    line, seen, at = buffer[at:eol], seen + eol + 1 - at, eol + 1
                    if line in (b"", b"\r"):
                        self.done, self.leftover = True, at < end
                        break
            buffer = buffer[at:] if at < end else b""
            if pieces:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip(b" \t\r")
    if not size or not _HEX.issuperset(size) or len(size) > 16:
        raise ProtocolError(f"an invalid chunk size {line[:40]!r}")
    return int(size, 16)
