"""Response headers set on every answer: security headers, and CORS only when configured."""
from __future__ import annotations

from email.utils import formatdate
from typing import Optional

from flask import Flask, Response, request

from ..observability.logs import SecondCache

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                                "connect-src 'self'; frame-ancestors 'none'"),
}
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, x-api-key, anthropic-version, anthropic-beta"


# `http_date(now)`: an HTTP `Date` (RFC 9110's IMF-fixdate, "Fri, 04 Dec 2026 19:40:00 GMT"), made once a second
http_date = SecondCache(lambda second: formatdate(second, usegmt=True))


def allowed_origin(origins: Optional[str], origin: Optional[str]) -> Optional[str]:
    """The request's `Origin` where ONEKEYLLM_CORS_ORIGINS allows it (to be echoed back), else None."""
    if not origins or not origin:
        return None
    allowed = [o.strip() for o in origins.split(",") if o.strip()]
    return origin if "*" in allowed or origin in allowed else None


def install_headers(app: Flask, cors_origins: Optional[str]) -> None:
    """Register the hook that adds the headers (CORS is off unless ONEKEYLLM_CORS_ORIGINS is set)."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype == "text/html":
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
        origin = allowed_origin(cors_origins, request.headers.get("Origin"))
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        return response
