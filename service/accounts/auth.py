"""Keys, the admin bearer and user JWTs."""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Optional

import jwt
from flask import current_app, g, request

from ..api_error import ApiError
from ..gateway.catalog import VERSION_KEY as CATALOG_VERSION_KEY
from ..storage.models import ApiKey, Setting
from ..storage.prepared import Prepared

KEY_PREFIX = "sk-lazytech-"
JWT_ISSUER = "onekeyllm"
JWT_ALGORITHM = "HS256"
JWT_LIFETIME_SECONDS = 7 * 24 * 3600

def _key_and_catalog_version(version_key: str, digest: str):
    """A key by hash, with the catalog version alongside (one round trip serves both, every request)."""
    version = Setting.select(Setting.value).where(Setting.key == version_key)
    return ApiKey.select(ApiKey, version.alias("catalog_version")).where(ApiKey.key_hash == digest)


KEY_BY_HASH = Prepared(_key_and_catalog_version)


@dataclass(frozen=True)
class Secrets:
    """Per-installation secrets, loaded once at start from the settings table."""

    pepper: bytes
    jwt_secret: str
    admin_token_hash: str


def new_key_value() -> str:
    """A fresh user key: the prefix and 43 URL-safe random characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(pepper: bytes, value: str) -> str:
    """The keyed hash under which a key (or token) is stored and looked up."""
    return hmac.digest(pepper, value.encode("utf-8"), "sha256").hex()  # hmac.new(…).hexdigest(), in one call


def redact(last4: str) -> str:
    return f"{KEY_PREFIX}...{last4}"


def _secrets() -> Secrets:
    return current_app.extensions["onekeyllm"].secrets


def bearer_token(allow_x_api_key: bool = False) -> Optional[str]:
    """The credential the client sent, or None."""
    return credential_of(request.headers.get("Authorization", ""),
                         request.headers.get("x-api-key", "") if allow_x_api_key else None)


def takes_x_api_key(path: str) -> bool:
    """Whether a route also takes its key from `x-api-key` (Anthropic's Messages routes)."""
    return path.startswith("/v1/messages")


def credential_of(authorization: str, x_api_key: Optional[str] = None) -> Optional[str]:
    """The credential in an `Authorization: Bearer` header, else (where it is taken) in `x-api-key`; or None."""
    if authorization[:7].lower() == "bearer " and authorization[7:].strip():
        return authorization[7:].strip()
    if x_api_key is not None:
        return x_api_key.strip() or None
    return None


def key_digest(value: str, pepper: Optional[bytes] = None) -> Optional[str]:
    """The keyed hash a plaintext key is stored under; None for what cannot be one of our keys."""
    if not value.startswith(KEY_PREFIX) or len(value) > 200:
        return None
    return hash_secret(pepper if pepper is not None else _secrets().pepper, value)


def find_key(value: str, pepper: Optional[bytes] = None) -> Optional[ApiKey]:
    """The key row for a plaintext key, compared by keyed hash in constant time."""
    digest = key_digest(value, pepper)
    if digest is None:
        return None
    row = KEY_BY_HASH.first(ApiKey, CATALOG_VERSION_KEY, digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    row.catalog_version = row.catalog_version or "0"  # no admin write yet
    return row


def key_credential(value: Optional[str]) -> str:
    """The key the caller sent (`credential_of` / `bearer_token`), 401 when none."""
    if not value:
        raise ApiError(401, "Missing API key: send `Authorization: Bearer sk-lazytech-…`.",
                       code="missing_api_key")
    return value


def authenticate(value: str, pepper: Optional[bytes] = None) -> ApiKey:
    """The live key row for a plaintext key (401 when unknown, revoked, disabled or expired)."""
    row = find_key(value, pepper)
    if row is None or row.revoked:
        raise ApiError(401, "Invalid API key.", code="invalid_api_key")
    if row.disabled:
        raise ApiError(401, "This API key is disabled.", code="key_disabled")
    if row.expires_at is not None and row.expires_at <= time.time():
        raise ApiError(401, "This API key has expired.", code="key_expired")
    return row


def require_key() -> ApiKey:
    """The caller's key (401 when missing, unknown, revoked, disabled or expired)."""
    cached = g.get("api_key")
    if cached is not None:
        return cached
    row = authenticate(key_credential(bearer_token(allow_x_api_key=takes_x_api_key(request.path))))
    g.api_key = row
    return row


def is_admin_token(value: str) -> bool:
    """Whether `value` is the admin token (keyed hash, constant-time comparison)."""
    expected = _secrets().admin_token_hash
    return bool(expected) and hmac.compare_digest(hash_secret(_secrets().pepper, value), expected)


def console_session_kind() -> tuple[Optional[str], Optional[str]]:
    """For a request without a bearer: the kind and email of its web console session (sessions.py; a
    state-changing request must carry the session's CSRF token), or (None, None)."""
    from .sessions import current_session

    session = current_session()
    return (session.kind, session.email) if session is not None else (None, None)


def require_admin() -> None:
    """401 without a valid admin bearer or admin console session; 403 for a valid user key."""
    value = bearer_token()
    if not value:
        kind, _ = console_session_kind()
        if kind == "admin":
            return
        if kind is not None:
            raise ApiError(403, "This route needs the admin token, not a user sign-in.", type="permission_error")
        raise ApiError(401, "Missing admin token.", code="missing_api_key")
    if is_admin_token(value):
        return
    if find_key(value) is not None:
        raise ApiError(403, "This route needs the admin token, not a user key.", type="permission_error")
    raise ApiError(401, "Invalid admin token.", code="invalid_api_key")


def issue_jwt(email: str, lifetime: int = JWT_LIFETIME_SECONDS) -> tuple[str, int]:
    """An HS256 token for `email` and its lifetime in seconds."""
    issued = int(time.time())
    claims = {"sub": email, "email": email, "iat": issued, "exp": issued + lifetime, "iss": JWT_ISSUER}
    return jwt.encode(claims, _secrets().jwt_secret, algorithm=JWT_ALGORITHM), lifetime


def verify_jwt(token: str) -> dict:
    """The claims of a valid token; 401 for a bad signature, algorithm, issuer or expiry."""
    try:
        return jwt.decode(token, _secrets().jwt_secret, algorithms=[JWT_ALGORITHM], issuer=JWT_ISSUER,
                          options={"require": ["exp", "iat", "sub", "iss", "email"]})
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "The token has expired.", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise ApiError(401, "Invalid token.", code="invalid_token") from None


def require_user_email() -> str:
    """The email of the caller's JWT, or of the user signed in to the web console."""
    value = bearer_token()
    if not value:
        kind, email = console_session_kind()
        if kind == "user":
            return email
        raise ApiError(401, "Missing bearer token.", code="missing_api_key")
    return verify_jwt(value)["email"]
