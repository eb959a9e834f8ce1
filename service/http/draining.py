"""Graceful stop: stop accepting, let requests in flight finish, end the rest with their rows, then exit.

Every connection of a gevent server is served by one greenlet; `track` (WSGI middleware) knows which
greenlet is inside a request right now — its answer included, until a stream's last byte — and which
is only waiting on a kept-alive connection for a next request that will not come. On SIGTERM
(`onekeyllm serve`: `stop_server`; a gunicorn worker: `watch_worker`, the worker itself closes its
listener), `drain`:

1. closes the idle kept-alive connections at once (a client holding one open kept a worker
   for the whole graceful timeout), and asks the remaining answers to close their connections;
2. waits until the requests in flight are done, or the deadline comes;
3. ends what is left: each greenlet gets GreenletExit and unwinds through the gateway call it serves,
   which writes its request-log row with status 499 (the usage streamed so far) and gives back its hold;
4. gives back any hold this process still has and drops its lease, so nobody waits for it to lapse.
"""
from __future__ import annotations

import errno
import logging
import time
import weakref
from typing import Callable

log = logging.getLogger("onekeyllm.stop")

MARGIN_SECONDS = 3.0  # of the graceful timeout, kept to end the calls and settle them before a SIGKILL
SETTLE_SECONDS = 2.0  # how long ended calls get to write their rows

_busy: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # greenlet -> requests it is inside
_seen: "weakref.WeakSet" = weakref.WeakSet()  # every greenlet that served a request (its connection may idle)
_draining = {"on": False}


def _current():
    import gevent

    return gevent.getcurrent()


def _leave(greenlet) -> None:
    left = _busy.get(greenlet, 1) - 1
    if left > 0:
        _busy[greenlet] = left
    else:
        _busy.pop(greenlet, None)


def track(wsgi_app: Callable) -> Callable:
    """Wrap a WSGI app so that the requests in flight, and the connections between them, are known."""
    from werkzeug.wsgi import ClosingIterator

    def tracked(environ, start_response):
        greenlet = _current()
        _seen.add(greenlet)
        _busy[greenlet] = _busy.get(greenlet, 0) + 1

        def closing_start_response(status, headers, exc_info=None):
            if _draining["on"]:  # no next request on this connection: the process is stopping
                headers = [(name, value) for name, value in headers if name.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        try:
            answer = wsgi_app(environ, closing_start_response)
        except BaseException:
            _leave(greenlet)
            raise
        return ClosingIterator(answer, [lambda: _leave(greenlet)])

    return tracked


def in_flight() -> int:
    """Requests being served by this process now."""
    return sum(1 for greenlet in list(_busy) if not greenlet.dead)


def _close_idle_connections() -> None:
    # as the servers take a client's hang-up between requests (neither logs it as an error)
    for greenlet in list(_seen):
        if not greenlet.dead and greenlet not in _busy:
            greenlet.kill(ConnectionResetError(errno.ECONNRESET, "the gateway is stopping"), block=False)


def drain(seconds: float) -> None:
    """Close idle connections, wait up to `seconds` for the requests in flight, end the rest, settle, let go."""
    import gevent

    _draining["on"] = True
    _close_idle_connections()
    deadline = time.monotonic() + max(0.0, seconds)
    while in_flight() and time.monotonic() < deadline:
        gevent.sleep(0.05)
        _close_idle_connections()  # a connection whose answer just ended
    ended = [greenlet for greenlet in list(_busy) if not greenlet.dead]
    if ended:
        log.warning("ending %d requests still in flight at the graceful timeout", len(ended))
        for greenlet in ended:
            greenlet.kill(block=False)
        gevent.joinall(ended, timeout=SETTLE_SECONDS)
    _close_idle_connections()
    _let_go()


def _let_go() -> None:
    """Give back this process's last holds, drop its lease and stop its background work."""
    from ..gateway import holds, leases
    from ..storage.db import CHECKPOINTER, connected

    leases.stop_heartbeat()
    CHECKPOINTER.stop()
    try:
        with connected():
            released = holds.give_back_own_holds()
            leases.release(holds.owner())
    except Exception:  # noqa: BLE001 - the others give the holds back once the lease lapses
        log.warning("could not give back this process's holds at stop", exc_info=True)
        return
    if released:
        log.warning("gave back %d holds of requests ended by the stop", released)


def budget(graceful_timeout: float) -> float:
    """How long requests may still run once a stop begins: the graceful timeout less the margin to settle."""
    return max(0.0, graceful_timeout - min(MARGIN_SECONDS, graceful_timeout / 3))


def stop_server(server, graceful_timeout: float) -> None:
    """SIGTERM for `onekeyllm serve`: stop accepting, drain, then stop the server (serve_forever returns)."""
    import gevent

    def stopping():
        # not server.close(): it would end serve_forever, and with it every request, at once
        server.stop_accepting()
        server.socket.close()
        drain(budget(graceful_timeout))
        server.stop(timeout=1)

    gevent.spawn(stopping)


def watch_worker(worker, graceful_timeout: float) -> None:
    """In a gunicorn gevent worker: drain once the worker is told to stop (it closes its listener itself)."""
    import gevent

    def watching():
        while worker.alive:
            gevent.sleep(0.1)
        drain(budget(graceful_timeout))

    gevent.spawn(watching)
