"""The HTTP/1.1 server both serving modes run (gevent's pywsgi), made strict about what it reads.

pywsgi as shipped takes `Content-Length` beside `Transfer-Encoding: chunked` (the body of one request then
becomes a second, hidden one), lets the first of two `Content-Length`s win, parses `+64` as 64, and waits
forever for headers or a body that never come. This handler refuses ambiguous framing with 400 and closes,
gives a request's line and headers `header_timeout` seconds in all and its body `body_timeout` seconds
between reads, and closes a connection rather than read a large body that nobody asked for (a key refused
before its body, see api/gateway_http.py). `onekeyllm serve` and gunicorn's worker (gunicorn_worker.py)
both use it.
"""
from __future__ import annotations

import http.client
import re
import socket
from email import errors
from typing import Optional

import gevent
from gevent import pywsgi

DIGITS = re.compile(r"[0-9]{1,18}")
# An unread body up to this size is read and dropped, so the connection can serve its next request; past it,
# closing is cheaper than reading what will never be used.
DRAIN_LIMIT = 64 * 1024
COALESCE_LIMIT = 64 * 1024  # a first piece of the body up to this size is sent with the answer's head
HEADER_BLOCK_DEFECTS = (errors.MissingHeaderBodySeparatorDefect, errors.FirstHeaderLineIsContinuationDefect)
TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-length: 0\r\n\r\n"


class AmbiguousFraming(ValueError):
    """Framing two parsers could read differently: pywsgi answers a ValueError here with 400 and closes."""


class HeaderTimeout(socket.timeout):
    """The request line and headers did not arrive within `header_timeout` (a socket error to pywsgi)."""


def check_framing(headers) -> None:
    """AmbiguousFraming unless the body's length is said exactly one way: one plain `Content-Length`, or
    `Transfer-Encoding: chunked` alone; and no header line that readers could split differently."""
    for defect in headers.defects:  # a line that is no header ("Content-Length : 5"): who reads it how?
        if isinstance(defect, HEADER_BLOCK_DEFECTS):
            raise AmbiguousFraming(f"malformed header block ({type(defect).__name__})")
    lengths, encodings = [], []
    for name, value in headers._headers:  # the raw pairs: Message.items() parses each value, 10x the cost
        if "\n" in value:  # obs-fold: a header continued on the next line
            raise AmbiguousFraming(f"folded header {name!r}")
        lower = name.lower()
        if lower == "content-length":
            lengths.append(value)
        elif lower == "transfer-encoding":
            encodings.append(value)
    if encodings and lengths:
        raise AmbiguousFraming("Content-Length together with Transfer-Encoding")
    if len(encodings) > 1 or (encodings and encodings[0].strip().lower() != "chunked"):
        raise AmbiguousFraming(f"unsupported Transfer-Encoding {encodings!r}")
    if len(lengths) > 1:
        raise AmbiguousFraming("more than one Content-Length")
    if lengths and not DIGITS.fullmatch(lengths[0].strip()):
        raise AmbiguousFraming(f"invalid Content-Length {lengths[0]!r}")


class BoundedInput(pywsgi.Input):
    """The request body: a body left unread is drained only when small; a failed read closes the connection."""

    __slots__ = ("handler",)

    def _discard(self):
        handler = self.handler
        if handler.close_connection or self._chunked_input_error:
            return
        unread_chunks = self.chunked_input and self.chunk_length != 0  # 0: the last chunk was read
        if unread_chunks or (self.content_length is not None and self.content_length - self.position > DRAIN_LIMIT):
            handler.close_connection = True
            return
        self.send_100_continue_enabled = False  # nobody waits for this body: do not invite it
        left = DRAIN_LIMIT
        while left > 0:
            data = self.read(min(16384, left))
            if not data:
                return
            left -= len(data)
        handler.close_connection = True

    def read(self, length=None):
        try:
            return super().read(length)
        except OSError:  # a body that stalled or broke: the stream is out of step, this connection is done
            self.handler.close_connection = True
            raise

    def readline(self, size=None):
        try:
            return super().readline(size)
        except OSError:
            self.handler.close_connection = True
            raise


class StrictFraming:
    """The mixin over a pywsgi handler class (gevent's own, or gunicorn's, which logs differently)."""

    header_timeout: Optional[float] = 20.0
    body_timeout: Optional[float] = 30.0
    _header_timer = None
    _unsent: Optional[list] = None  # the answer's head and first piece, while they are put together

    def handle(self):
        # one timer per connection, started for each request's line and headers (a trickle of header lines
        # included) and for the wait for the next request on a kept-alive connection
        self._header_timer = gevent.Timeout(self.header_timeout, HeaderTimeout)
        try:
            super().handle()
        finally:
            self._header_timer.close()

    def handle_one_request(self):
        if self.socket is not None:
            self.socket.settimeout(None)  # the header timer bounds this part; a socket timeout costs a timer a wait
        self._header_timer.start()
        try:
            return super().handle_one_request()
        finally:
            self._header_timer.cancel()

    def MessageClass(self, *args):
        try:
            headers = super().MessageClass(*args)
        except http.client.HTTPException as error:  # more than 100 header lines: a 400, not a traceback
            raise AmbiguousFraming(str(error)) from None
        check_framing(headers)
        return headers

    def _write_with_headers(self, data):
        """The status line and headers leave in one send with the body's first piece (pywsgi sends them apart:
        one more syscall per answer, and one more wake-up of the client)."""
        self._unsent = []
        try:
            super()._write_with_headers(data)
            unsent = self._unsent
        finally:
            self._unsent = None
        if unsent:
            super()._sendall(b"".join(unsent))

    def _sendall(self, data):
        if self._unsent is None:
            return super()._sendall(data)
        self._unsent.append(data)
        if len(data) > COALESCE_LIMIT:  # a large first piece: not worth its copy
            unsent, self._unsent = self._unsent, []
            for piece in unsent:
                super()._sendall(piece)

    def get_environ(self):
        self._header_timer.cancel()  # the headers are in: from here the body's own timeout applies
        self.socket.settimeout(self.body_timeout)
        environ = super().get_environ()
        if environ.get("wsgi.input") is self.wsgi_input:
            old = self.wsgi_input
            self.wsgi_input = BoundedInput(old.rfile, old.content_length, socket=old.socket,
                                           chunked_input=old.chunked_input)
            self.wsgi_input.handler = self
            environ["wsgi.input"] = self.wsgi_input
        return environ

    def _handle_client_error(self, ex):
        if isinstance(ex, HeaderTimeout):
            return ("408", TIMEOUT_RESPONSE)
        return super()._handle_client_error(ex)


def strict_handler(base: type, header_timeout: float, body_timeout: float) -> type:
    """A pywsgi handler class over `base` with the strict framing and these read timeouts (seconds; 0: none)."""
    return type("Strict" + base.__name__, (StrictFraming, base),
                {"header_timeout": header_timeout if header_timeout > 0 else None,
                 "body_timeout": body_timeout if body_timeout > 0 else None})


def make_server(listener, app, settings, **kwargs) -> pywsgi.WSGIServer:
    """gevent's WSGIServer on `listener` with the strict handler and the settings' read timeouts."""
    handler = strict_handler(pywsgi.WSGIHandler, settings.header_timeout, settings.body_timeout)
    return pywsgi.WSGIServer(listener, app, handler_class=handler, **kwargs)
