"""Web console sessions: a random token in an HttpOnly, SameSite=Strict cookie; its keyed hash in a table.

A session stands in for the admin bearer or a user's JWT on the routes that take those
(auth.py asks `current_session()`), so the console calls the same JSON API as every other
client. A request that changes something must also prove it comes from the console's own
page: the per-session CSRF token in `X-CSRF-Token` (the page's script reads it from the
sign-in answer; another site cannot), and, when the browser says where it comes from,
`Origin` and `Sec-Fetch-Site` naming this origin.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlparse

from flask import Response, current_app, g, request

from ..api_error import ApiError
from ..storage.models import ConsoleSession
from .auth import hash_secret

COOKIE_NAME = "onekeyllm_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
ADMIN, USER = "admin", "user"


@dataclass(frozen=True)
class Session:
    """A live console session as a request sees it."""

    id: str
    kind: str
    email: Optional[str]
    expires_at: float
    csrf_token: str


def _pepper() -> bytes:
    return current_app.extensions["onekeyllm"].secrets.pepper


def _admin_token_hash() -> str:
    return current_app.extensions["onekeyllm"].secrets.admin_token_hash


def _csrf_for(token: str) -> str:
    # derived from the cookie's secret: nothing more to store, and worthless without the cookie
    return hash_secret(_pepper(), "console-csrf:" + token)


def check_same_origin() -> None:
    """403 for a request a browser says comes from another site (Origin, Sec-Fetch-Site)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, "Cross-site requests are refused.", type="permission_error", code="cross_site")
    origin = request.headers.get("Origin")
    if origin is not None and urlparse(origin).netloc != request.host:
        raise ApiError(403, "Cross-origin requests are refused.", type="permission_error", code="cross_site")


def open_session(kind: str, email: Optional[str] = None) -> tuple[Session, str]:
    """Store a new session; returns it and the cookie value, which only the browser keeps."""
    now = time.time()
    ConsoleSession.delete().where(ConsoleSession.expires_at <= now).execute()
    token = secrets.token_urlsafe(32)
    lifetime = current_app.extensions["onekeyllm"].settings.console_session_seconds
    row = ConsoleSession.create(id=hash_secret(_pepper(), token), kind=kind, email=email, created_at=now,
                                expires_at=now + lifetime,
                                admin_token_hash=_admin_token_hash() if kind == ADMIN else None)
    return Session(row.id, kind, email, row.expires_at, _csrf_for(token)), token


def set_cookie(response: Response, session: Session, token: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over https, gone when the session ends."""
    response.set_cookie(COOKIE_NAME, token, expires=int(session.expires_at), path="/", httponly=True,
                        samesite="Strict", secure=request.is_secure)


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="Strict", secure=request.is_secure)


def _load() -> Optional[Session]:
    token = request.cookies.get(COOKIE_NAME)
    if not token or len(token) > 100:
        return None
    digest = hash_secret(_pepper(), token)
    row = ConsoleSession.get_or_none(ConsoleSession.id == digest)
    if row is None or not hmac.compare_digest(row.id, digest) or row.expires_at <= time.time():
        return None
    if row.kind == ADMIN and not hmac.compare_digest(row.admin_token_hash or "", _admin_token_hash()):
        return None  # opened with an admin token since rotated: it ends with that token
    return Session(row.id, row.kind, row.email, row.expires_at, _csrf_for(token))


def current_session(csrf: bool = True) -> Optional[Session]:
    """The request's live console session, or None; with `csrf`, a state-changing request without this
    session's CSRF token, or from another site, is refused (403)."""
    if "console_session" not in g:
        g.console_session = _load()
    session = g.console_session
    if session is not None and csrf and request.method not in SAFE_METHODS:
        check_same_origin()
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise ApiError(403, "Missing or wrong CSRF token.", type="permission_error", code="csrf_failed")
    return session


def close_session(session: Session) -> None:
    """End a session on the server: its cookie is worthless from now on, wherever it was copied."""
    ConsoleSession.delete().where(ConsoleSession.id == session.id).execute()
