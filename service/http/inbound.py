"""A request as the gateway routes read it, straight from its WSGI environ: no Flask request object.

The three gateway routes are served without Flask's request machinery (api/gateway_wsgi.py); what they
read of a request — its path, query, a few headers, its body within the size limit — is read here, by the
same rules werkzeug applies to every other route.
"""
from __future__ import annotations

import re
from typing import Optional

from ..api_error import ApiError

SMALL_BODY_BYTES = 64 * 1024
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
TOO_LARGE = "Request body too large."


class Inbound:
    """One request's environ, read the way the gateway routes need it."""

    __slots__ = ("environ", "max_body_bytes", "_body")

    def __init__(self, environ: dict, max_body_bytes: Optional[int]):
        self.environ = environ
        self.max_body_bytes = max_body_bytes
        self._body: Optional[bytes] = None

    @property
    def method(self) -> str:
        return self.environ.get("REQUEST_METHOD", "GET")

    @property
    def path(self) -> str:
        return self.environ.get("PATH_INFO", "")

    @property
    def query_string(self) -> bytes:
        return self.environ.get("QUERY_STRING", "").encode("latin-1")

    def header(self, name: str, default: str = "") -> str:
        """A request header by its name (any case)."""
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        return self.environ.get(key, default)

    def has_header(self, name: str) -> bool:
        return self.header(name, None) is not None

    @property
    def content_length(self) -> Optional[int]:
        """The declared body length; None for a chunked body (the server checked the header is plain digits)."""
        value = self.environ.get("CONTENT_LENGTH")
        if not value:
            return None
        try:
            return max(0, int(value))
        except ValueError:
            return None

    def body_is_small(self) -> bool:
        """Whether the request declares a body of at most SMALL_BODY_BYTES (a chunked one is never small).

        A route that authenticates as part of its work (the gateway's grant) does so after the body only when
        it is small: a larger body waits for the key to be checked, so that nobody can make the server read
        32 MB for a key it does not know.
        """
        length = self.content_length
        return length is not None and length <= SMALL_BODY_BYTES

    def body(self) -> bytes:
        """The whole body; 413 past the limit (ONEKEYLLM_MAX_BODY_BYTES), declared or not.

        As werkzeug does: a declared length over the limit is refused unread; a chunked body is read up to
        the limit, and one that fills it is taken as one that went past it.
        """
        if self._body is not None:
            return self._body
        limit, length = self.max_body_bytes, self.content_length
        try:
            data = self._read_body(self.environ["wsgi.input"], limit, length)
        except (OSError, ValueError):  # cut off or stalled (the server closes the connection): as werkzeug, a 400
            raise ApiError(400, "The request body did not arrive in full.") from None
        self._body = data
        return data

    def _read_body(self, stream, limit: Optional[int], length: Optional[int]) -> bytes:
        if length is not None:
            if limit is not None and length > limit:
                raise ApiError(413, TOO_LARGE)
            return _read_up_to(stream, length)
        if self.environ.get("wsgi.input_terminated"):
            data = _read_up_to(stream, limit)
            if limit is not None and len(data) >= limit:
                raise ApiError(413, TOO_LARGE)
            return data
        return b""  # no length and no framing the server vouches for: werkzeug reads nothing either

    def request_id(self) -> Optional[str]:
        """The client's own `x-request-id`, when it is a sane one."""
        return sane_request_id(self.header("x-request-id"))


def sane_request_id(sent: Optional[str]) -> Optional[str]:
    """A client's `x-request-id` when it is one we pass on (a trace id, a UUID), else None."""
    return sent if sent and SANE_REQUEST_ID.fullmatch(sent) else None


def _read_up_to(stream, limit: Optional[int]) -> bytes:
    """Up to `limit` bytes of the body (all of it with None), however the server hands them out."""
    if limit is not None and limit <= 0:
        return b""
    parts, left = [], limit
    while left is None or left > 0:
        part = stream.read(left if left is not None and left < 65536 else 65536)
        if not part:
            break
        parts.append(part)
        if left is not None:
            left -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)
