"""gevent's resolver, with addresses that are already numeric answered at once instead of in its thread pool.

gevent's default resolver hands every `getaddrinfo` to the hub's pool of native threads, even for
`127.0.0.1` or `10.0.0.7`, which need no lookup. Each new upstream connection then costs a thread
hand-off, and a burst of new connections grows the pool by up to its size (ten threads, kept for good).
A numeric host is answered by the C library without any I/O (`AI_NUMERICHOST`), so it is safe to answer
in the calling greenlet; names still go to the thread pool, as before.
"""
from __future__ import annotations

import _socket

from gevent import get_hub, monkey
from gevent.resolver.thread import Resolver


class NumericFirstResolver(Resolver):
    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's names
        try:
            return _socket.getaddrinfo(host, port, family, type, proto, flags | _socket.AI_NUMERICHOST)
        except _socket.gaierror:  # a name (or no address of this family): the pool gives its own answer
            return super().getaddrinfo(host, port, family, type, proto, flags)


def answer_numeric_hosts_at_once() -> None:
    """In a gevent-patched process: the hub's resolver answers numeric hosts without its thread pool.

    Only gevent's default (thread) resolver is replaced: one chosen with GEVENT_RESOLVER is kept."""
    if not monkey.is_module_patched("socket"):
        return
    hub = get_hub()
    if type(hub.resolver) is Resolver:  # noqa: E721 - exactly gevent's default
        hub.resolver = NumericFirstResolver(hub=hub)
