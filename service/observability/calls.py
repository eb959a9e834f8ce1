"""What is noted of one request while it is served: its id, the time spent waiting on upstreams, its first
token, and its settlement; read for its answer's headers, its metrics and its access line.

No Flask here: the edge makes one `CallTrace` per request and the pipeline notes into it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional


@dataclass
class CallTrace:
    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    upstream_seconds: float = 0.0  # waited on upstreams so far (sends and bodies; a stream's until its headers)
    upstream_started: Optional[float] = None  # when the last upstream call began
    first_token_at: Optional[float] = None  # streams: when the first upstream event was passed on
    entry: Any = None  # the settled request-log entry (billing.LogEntry)
    charged: int = 0  # nano-dollars charged at settlement
    settled_at: Optional[float] = None
    key_id: Optional[str] = None

    @contextmanager
    def upstream(self) -> Iterator[None]:
        """Time a wait on an upstream (it is not the gateway's own time)."""
        began = self.upstream_started = time.perf_counter()
        try:
            yield
        finally:
            self.upstream_seconds += time.perf_counter() - began

    def first_token(self) -> None:
        """Note the first event of a stream (later calls are no-ops)."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def settled(self, entry: Any, charged: int) -> None:
        """Note the call's settlement: what its request-log row says and what it cost."""
        self.entry, self.charged, self.settled_at = entry, charged, time.perf_counter()
        self.key_id = entry.key_id

    def overhead_ms(self) -> float:
        """The gateway's own time so far: elapsed, less the waits on upstreams."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)

    def upstream_total(self) -> Optional[float]:
        """Seconds the serving upstream took: a stream's from its call to its end, else the waits."""
        if self.upstream_started is None:
            return None
        if self.entry is not None and self.entry.stream and self.settled_at is not None:
            return self.settled_at - self.upstream_started
        return self.upstream_seconds

    def first_token_seconds(self) -> Optional[float]:
        """A stream's time to its first token, from the request's arrival."""
        return None if self.first_token_at is None else self.first_token_at - self.started
