"""A TCP listener on loopback for tests that need a peer which misbehaves on purpose (hangs, goes away)."""
from __future__ import annotations

import socket
import threading


class LoopbackListener:
    """Accepts connections and hands each to `take`; `close` shuts the listener and every socket kept."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.kept: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self, connection: socket.socket) -> None:
        """What to do with a new connection (kept open, unanswered, by default)."""
        self.kept.append(connection)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.take(connection)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (a bare close would not)
        self.listener.close()
        for sock in self.kept:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
