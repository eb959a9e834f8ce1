"""The one exception that becomes an error answer (no Flask here: the gateway core raises it too)."""
from __future__ import annotations

from typing import Optional


class ApiError(Exception):
    """An error answer: raised anywhere below a route, rendered here."""

    def __init__(self, status: int, message: str, *, type: Optional[str] = None,
                 param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}
