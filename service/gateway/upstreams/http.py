"""HTTP to upstream providers: one connection pool per account, streamed reads, typed failures.

urllib3 opens the connections (resolution, connect timeout, TLS) and http.client reads the answers
(connections.py); a chunked stream is decoded a read at a time (chunked.py). Neither requests' session layer
nor urllib3's `urlopen` is on the hot path: each cost more CPU per call than the call's own HTTP work
(bench/README.md). A compressed answer still gets urllib3's response, which decodes it.
"""
from __future__ import annotations

import http.client
import json
import math
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, Iterator, Optional

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)

from ... import json_codec
from ...storage.db import gevent_patched
from ..sse import EventReader
from .chunked import ChunkedBody
from .connections import Pool, header_lines, send
from .scrub import credentials_in, is_error_event, scrub

RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")


class UpstreamError(Exception):
    """An upstream call that failed.

    kind: "connect" (refused, DNS, TLS), "timeout", "status" (non-2xx answer),
    "protocol" (a 2xx we cannot read). `retryable` failures may fail over to
    another account when nothing has reached the client yet.
    """

    def __init__(self, kind: str, message: str, status: Optional[int] = None,
                 retry_after: Optional[float] = None, error_type: Optional[str] = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.error_type = error_type

    @property
    def retryable(self) -> bool:
        return self.kind in ("connect", "timeout") or self.status == 429 or (self.status or 0) >= 500

    def client_status(self) -> int:
        """The status our client gets: upstream 4xx passed on, 502 / 504 for the rest."""
        if self.kind == "timeout":
            return 504
        if self.kind == "status" and self.status and 400 <= self.status < 500 and self.status not in (401, 402, 403):
            return self.status
        return 502


@dataclass
class Timeouts:
    connect: float
    read: float


MAX_RETRY_AFTER = 3600.0  # an upstream's retry-after past an hour is taken as an hour


def _seconds(value: str, scale: float = 1.0) -> Optional[float]:
    """A retry-after number as seconds; None for what is not a finite, non-negative number (`nan`, `1e999`)."""
    try:
        seconds = float(value) * scale
    except (TypeError, ValueError, OverflowError):
        return None
    return min(seconds, MAX_RETRY_AFTER) if math.isfinite(seconds) and seconds >= 0 else None


def _retry_after(headers) -> Optional[float]:
    """The wait an upstream asked for (`retry-after-ms`, `retry-after` in seconds or as an HTTP date), if sane."""
    value = headers.get("retry-after-ms")
    seconds = _seconds(value, 0.001) if value else None
    if seconds is not None:
        return seconds
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    try:
        return min(MAX_RETRY_AFTER, max(0.0, parsedate_to_datetime(value).timestamp() - time.time()))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _error_message(response: urllib3.BaseHTTPResponse, credentials: tuple) -> tuple[str, Optional[str]]:
    """The provider's own error message and type, from either envelope, scrubbed of credentials (scrub.py)."""
    raw = response.data or b""
    try:
        body = json.loads(raw)
    except ValueError:
        text = scrub(raw[:4000].decode("utf-8", "replace").strip(), credentials)[:300]  # scrubbed whole, then cut
        return (text or f"HTTP {response.status}"), None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return scrub(str(error.get("message") or f"HTTP {response.status}"), credentials), \
            scrub(error.get("type") if isinstance(error.get("type"), str) else None, credentials)
    if isinstance(error, str):
        return scrub(error, credentials), None
    return f"HTTP {response.status}", None


def rate_limit_headers(headers) -> dict:
    """The rate-limit headers of an upstream answer, for capacity estimates."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith(RATE_LIMIT_PREFIXES)}


class UpstreamResponse:
    """A 2xx upstream answer: JSON body or a stream of raw bytes."""

    def __init__(self, response: urllib3.BaseHTTPResponse, credentials: tuple = (), reader: Optional[tuple] = None):
        self._response = response
        self._credentials = credentials
        self._reader = reader  # a compressed stream's (http.client reader, read timeout): its silences are waited on
        self.headers = response.headers
        self.rate_limits = rate_limit_headers(response.headers)

    def json(self) -> dict:
        try:
            data = self._response.data
            if any(secret.encode() in data for secret in self._credentials):  # an upstream quoting its credential
                data = scrub(data.decode("utf-8", "replace"), self._credentials)
            body = json_codec.loads(data)
        except (ValueError, HTTPError, OSError) as exc:
            raise UpstreamError("protocol", f"The upstream sent an unreadable answer ({type(exc).__name__}).") from None
        finally:
            self._response.release_conn()
        if not isinstance(body, dict):
            raise UpstreamError("protocol", "The upstream answer is not a JSON object.")
        return body

    def iter_bytes(self, interval: float = 0.0) -> Iterator[Optional[bytes]]:
        """The body as it arrives (a cut or a read timeout raises UpstreamError); closed when it ends or is closed.

        With `interval` (under gevent), None for each `interval` seconds the upstream stays silent."""
        response = self._response
        try:
            if isinstance(response, Streamed):
                pieces = response.pieces(interval)
            else:  # a compressed stream, by urllib3's response (which decodes it)
                # decode_content said each time: urllib3's read_chunked takes None as "do not decode"
                decoded = response.read_chunked(65536, decode_content=True) if response.chunked \
                    else iter(lambda: response.read1(65536, decode_content=True), b"")
                fp, read_timeout = self._reader or (None, None)
                # chunked: the last chunk is always followed by the body's end, which a wait sees arrive
                pieces = with_silences(decoded, silence(fp, interval, read_timeout) if fp else None,
                                       lambda: response.chunked or response.length_remaining != 0)
            for chunk in pieces:
                if chunk is None or chunk:
                    yield chunk
            response.release_conn()  # read to its end: the connection goes back to the pool
        except ReadTimeoutError:
            raise UpstreamError("timeout", "The upstream stopped sending (read timeout).") from None
        except Exception as exc:  # urllib3 ProtocolError, IncompleteRead, socket errors
            if "timed out" in str(exc).lower():
                raise UpstreamError("timeout", "The upstream stopped sending (read timeout).") from None
            # a dropped connection, like one dropped before the answer: the account is cooled down
            raise UpstreamError("connect", f"The upstream connection broke ({type(exc).__name__}).") from None
        finally:
            self.close()

    def events(self) -> Iterator[tuple[Optional[str], str]]:
        """The body as SSE events (name, data), as `event_batches` gives them."""
        for batch in self.event_batches():
            yield from batch

    def event_batches(self, interval: float = 0.0) -> Iterator[Optional[list]]:
        """The body's SSE events (name, data), in lists of those one read completed, and None for each `interval`
        seconds of silence (under gevent; 0: never). Error events are scrubbed of credentials like error bodies,
        and the account's own credential is cut out of every event."""
        # "Bearer X" contains X: looking for the shortest forms finds every one
        needles = [c for c in self._credentials if not any(o != c and o in c for o in self._credentials)]
        reader = EventReader()
        pieces = self.iter_bytes(interval)
        try:
            for piece in pieces:
                if piece is None:
                    yield None
                    continue
                events = reader.feed(piece)
                if events:
                    yield [(name, scrub(data, self._credentials)) if is_error_event(name, data)
                           or any(needle in data for needle in needles) else (name, data) for name, data in events]
        finally:
            pieces.close()

    def close(self) -> None:
        """Stop reading: a body not read to its end closes its connection (it cannot be reused)."""
        self._response.close()
        self._response.release_conn()


class Preloaded:
    """A non-streamed answer read whole (its connection already back in the pool): what UpstreamResponse and
    the error path read of urllib3's response, for the plain bodies http.client reads alone."""

    __slots__ = ("status", "headers", "data")

    def __init__(self, status: int, headers, data: bytes):
        self.status, self.headers, self.data = status, headers, data

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


class Silence:
    """The wait before each read of a stream: True once its reader has bytes to give, False after `interval`
    seconds without any (a keep-alive is due then); TimeoutError once the silence has lasted `limit` seconds
    (the read timeout, which the socket's own cannot keep: each wait starts a read afresh).

    The reader is waited on where the stream is read, in the request's own greenlet: no reader greenlet and
    queue between the upstream and the client (≈ 10 µs and two switches per event that arrives alone, what a
    provider's paced stream sends: bench/README.md)."""

    __slots__ = ("_fp", "_interval", "_limit", "_since", "_timeout")

    def __init__(self, fp, interval: float, limit: Optional[float]):
        from gevent import Timeout

        self._fp, self._interval, self._limit, self._timeout = fp, interval, limit, Timeout
        self._since: Optional[float] = None  # when the silence began (None: bytes just came)

    def __call__(self) -> bool:
        now = time.monotonic()
        if self._since is None:
            self._since = now
        wait = self._interval
        if self._limit:
            left = self._limit - (now - self._since)
            if left <= 0:
                raise TimeoutError("timed out")
            wait = min(wait, left)
        with self._timeout(wait, False):  # interrupts the socket's wait only: nothing read is lost
            self._fp.peek(1)  # the reader's buffered bytes, or one read of the socket into its buffer
            self._since = None
            return True
        return False


def silence(fp, interval: float, read_timeout: Optional[float]) -> Optional[Silence]:
    """The wait before each read of `fp` that tells its silences (None: not under gevent, or no `interval`)."""
    return Silence(fp, interval, read_timeout) if interval > 0 and gevent_patched() else None


def with_silences(pieces: Iterator[bytes], ready: Optional[Silence],
                  due: Callable[[], bool]) -> Iterator[Optional[bytes]]:
    """`pieces`, each taken once `ready` says there are bytes (whenever `due` says the next one needs a read),
    and None for each silence before it."""
    if ready is None:
        yield from pieces
        return
    while True:
        if due() and not ready():
            yield None
            continue
        piece = next(pieces, None)
        if piece is None:
            return
        yield piece


class Streamed:
    """A 2xx streamed answer read by http.client's reader: a chunked body a read at a time (chunked.py), any
    other as each read brings it. Its connection goes back to the pool once the body was read to its end (and
    nothing followed it); an answer closed before that closes its connection, which cannot be reused."""

    def __init__(self, answer: http.client.HTTPResponse, conn, pool: Pool, read_timeout: Optional[float]):
        self.status, self.headers = answer.status, answer.msg
        self._answer, self._conn, self._pool, self._read_timeout = answer, conn, pool, read_timeout

    def pieces(self, interval: float = 0.0) -> Iterator[Optional[bytes]]:
        """What each read brings; with `interval` (under gevent), None for each silence that long."""
        answer = self._answer
        ready = silence(answer.fp, interval, self._read_timeout)
        if answer.chunked:  # the decoder waits before each read it needs
            body = ChunkedBody(answer.fp, ready=ready)
            yield from body
            reusable = not body.leftover
        else:  # a length or the connection's end: a read is due while bytes are left
            yield from with_silences(iter(lambda: answer.read1(65536), b""), ready,
                                     lambda: answer.fp is not None and answer.length != 0)
            reusable = not answer.will_close
        conn, self._conn = self._conn, None
        answer.close()  # its reader only: the connection's socket stays open
        if conn is not None:
            if reusable:
                self._pool.put(conn)
            else:
                conn.close()

    def release_conn(self) -> None:
        pass  # given back by `pieces` once read to its end

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._answer.close()
        if conn is not None:
            conn.close()


class HttpClient:
    """One connection pool for one account (kept per worker, reused across requests)."""

    def __init__(self, base_url: str, headers: dict, timeouts: Timeouts):
        self.base_url = base_url.rstrip("/")
        url = urllib3.util.parse_url(self.base_url)
        self.prefix = url.path or ""
        self.timeouts = timeouts
        self.headers = {"User-Agent": "onekeyllm", **headers}
        if not any(name.lower() == "accept-encoding" for name in self.headers):
            self.headers["Accept-Encoding"] = "identity"  # what http.client asks for unless told otherwise
        self.head_lines = header_lines(self.headers)
        self.credentials = credentials_in(self.headers)  # cut out of every error text this upstream sends
        self.pool = Pool(url.scheme or "http", url.host or "", url.port, _tls_options(self.base_url))

    def request(self, method: str, path: str, *, body: Optional[bytes] = None, headers: Optional[dict] = None,
                stream: bool = False, read_timeout: Optional[float] = None) -> UpstreamResponse:
        """Send one request; non-2xx answers and transport failures raise UpstreamError."""
        pool = self.pool
        conn = answer = reader = None
        try:
            conn = pool.connection(self.timeouts.connect)
            head = self.head_lines + header_lines(headers) if headers else self.head_lines
            answer = send(conn, method, self.prefix + path, head, body, read_timeout or self.timeouts.read,
                          pool.host_header)
            keep = not answer.will_close
            if not keep:
                conn.close()  # as http.client does: the answer's reader keeps the socket until it is read
            if _encoded(answer):
                response = _wrapped(answer, conn if keep else None, pool, method, preload=not stream or
                                    answer.status >= 300)
                if stream and answer.status < 300:
                    reader = (answer.fp, read_timeout or self.timeouts.read)
            elif stream and answer.status < 300:
                response = Streamed(answer, conn if keep else None, pool, read_timeout or self.timeouts.read)
            else:
                response = Preloaded(answer.status, answer.msg, answer.read())
                if keep:
                    pool.put(conn)
            conn = answer = None
        except (NameResolutionError, NewConnectionError) as exc:  # before ConnectTimeoutError: a subclass of it
            reason = "could not be resolved" if isinstance(exc, NameResolutionError) \
                else "refused or dropped the connection"
            raise UpstreamError("connect", f"The upstream {reason}.") from None
        except ConnectTimeoutError:
            raise UpstreamError("timeout", "Timed out connecting to the upstream.") from None
        except (ReadTimeoutError, TimeoutError):  # socket.timeout is TimeoutError
            raise UpstreamError("timeout", "The upstream did not answer in time.") from None
        except (HTTPError, http.client.HTTPException, OSError) as exc:  # a hang-up, a bad status line, TLS, sockets
            raise UpstreamError("connect", f"The upstream refused or dropped the connection ({type(exc).__name__}).") \
                from None
        finally:
            if conn is not None:  # failed midway: the connection is in an unknown state
                if answer is not None:
                    answer.close()  # its reader holds the socket open too
                conn.close()
        if response.status >= 300:
            try:
                message, error_type = _error_message(response, self.credentials)
            except (HTTPError, http.client.HTTPException, OSError):
                message, error_type = f"HTTP {response.status}", None
            finally:
                response.release_conn()
            error = UpstreamError("status", message, status=response.status,
                                  retry_after=_retry_after(response.headers), error_type=error_type)
            error.rate_limits = rate_limit_headers(response.headers)
            raise error
        return UpstreamResponse(response, self.credentials, reader)

    def close(self) -> None:
        self.pool.close()


def _encoded(answer: http.client.HTTPResponse) -> bool:
    """Whether the answer's body is compressed (urllib3 decodes it), though identity was asked for."""
    encoding = answer.getheader("Content-Encoding")
    return bool(encoding) and encoding.strip().lower() != "identity"


def _wrapped(answer: http.client.HTTPResponse, conn, pool: Pool, method: str, preload: bool) -> urllib3.HTTPResponse:
    """urllib3's response over http.client's: its chunk reader for streams, its decoders for compressed bodies;
    `release_conn` gives the connection back to `pool`."""
    response = urllib3.HTTPResponse(body=answer, headers=urllib3.HTTPHeaderDict(answer.getheaders()), status=answer.status,
                                    version=answer.version, reason=answer.reason, preload_content=preload,
                                    decode_content=True, original_response=answer, pool=pool, connection=conn,
                                    enforce_content_length=True, request_method=method)
    if preload:
        response.release_conn()
    return response


def _tls_options(url: str) -> dict:
    """HTTPS pools verify against certifi's bundle when it is installed (as requests did), else the system's."""
    if not url.lower().startswith("https:"):
        return {}
    try:
        import certifi
    except ImportError:  # pragma: no cover
        return {"cert_reqs": "CERT_REQUIRED"}
    return {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}


_clients: dict = {}
_clients_lock = threading.Lock()


def client_for(account_id: str, fingerprint: tuple, factory) -> HttpClient:
    """The account's pooled client, rebuilt when its URL, credential or timeouts changed."""
    entry = _clients.get(account_id)
    if entry is not None and entry[0] == fingerprint:
        return entry[1]
    with _clients_lock:
        entry = _clients.get(account_id)
        if entry is not None and entry[0] == fingerprint:
            return entry[1]
        client = factory()
        if entry is not None:
            entry[1].close()
        _clients[account_id] = (fingerprint, client)
        return client
