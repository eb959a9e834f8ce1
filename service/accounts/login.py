"""Email login codes: issue, rate-limit, redeem. Only a keyed hash of a code is stored.

Every check is a conditional statement in the database, so the limits hold
across workers and processes: a send is counted with an atomic upsert, a
guess with a conditional UPDATE, a redemption with another one.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Optional

from ..api_error import ApiError
from ..storage.models import LoginCode
from ..storage.ratelimit import count_in_window
from .auth import hash_secret

CODE_DIGITS = 6
MAX_ATTEMPTS = 5
SEND_WINDOW_SECONDS = 600


@dataclass(frozen=True)
class LoginPolicy:
    """How long a code lives and how often one address or one client may ask for one."""

    ttl_seconds: int = 600
    sends_per_address: int = 3
    sends_per_ip: int = 10
    window_seconds: int = SEND_WINDOW_SECONDS


@dataclass(frozen=True)
class IssuedCode:
    """A freshly stored code; the plaintext lives only here, on its way to the mail."""

    id: int
    email: str
    expires_at: float
    code: str = field(repr=False)


def normalize_email(value: str) -> str:
    """The form addresses are compared and stored in: trimmed and lower-case."""
    return value.strip().lower()


def new_code() -> str:
    """Six random decimal digits, leading zeros kept."""
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(pepper: bytes, email: str, code: str) -> str:
    """The keyed hash a code is stored under, bound to its address."""
    return hash_secret(pepper, f"login:{email}:{code}")


def check_send_limits(pepper: bytes, email: str, client_ip: Optional[str], policy: LoginPolicy,
                      now: Optional[float] = None) -> None:
    """429 with `retry-after` once this client or this address asked for too many codes in the window."""
    buckets = []
    if client_ip:
        buckets.append((f"login_ip:{client_ip}", policy.sends_per_ip, "this client"))
    # the address is hashed: buckets are short, and the counter table need not hold addresses
    buckets.append((f"login_email:{hash_secret(pepper, email)[:40]}", policy.sends_per_address, "this address"))
    for bucket, limit, who in buckets:
        count, retry_after = count_in_window(bucket, policy.window_seconds, now)
        if count > limit:
            raise ApiError(429, f"Too many login codes requested for {who}; try again in {retry_after} s.",
                           code="rate_limit_exceeded", headers={"retry-after": str(retry_after)})


def issue_code(pepper: bytes, email: str, client_ip: Optional[str], policy: LoginPolicy,
               now: Optional[float] = None) -> IssuedCode:
    """Store a new code for `email` (the latest code is the only one that works) and return it."""
    now = time.time() if now is None else now
    code = new_code()
    LoginCode.delete().where((LoginCode.email == email) & (LoginCode.expires_at < now)).execute()
    row = LoginCode.create(email=email, code_hash=code_hash(pepper, email, code), created_at=now,
                           expires_at=now + policy.ttl_seconds, attempts=0, used=False,
                           client_ip=(client_ip or "")[:64] or None)
    return IssuedCode(id=row.id, email=email, expires_at=row.expires_at, code=code)


def discard_code(issued: IssuedCode) -> None:
    """Forget a code that could not be delivered."""
    LoginCode.delete().where(LoginCode.id == issued.id).execute()


def redeem_code(pepper: bytes, email: str, code: str, now: Optional[float] = None) -> None:
    """Use up the address's latest code if `code` is it; 401 when wrong, used, expired or out of tries.

    The try is counted before the comparison, so however many guesses run at
    once, a code sees at most MAX_ATTEMPTS of them.
    """
    now = time.time() if now is None else now
    refused = ApiError(401, "Invalid or expired login code.", code="invalid_login_code")
    row = LoginCode.select().where(LoginCode.email == email).order_by(LoginCode.id.desc()).first()
    if row is None:
        raise refused
    live = ((LoginCode.id == row.id) & (LoginCode.used == False)  # noqa: E712
            & (LoginCode.expires_at > now))
    counted = (LoginCode.update(attempts=LoginCode.attempts + 1)
               .where(live & (LoginCode.attempts < MAX_ATTEMPTS)).execute())
    if not counted or not hmac.compare_digest(row.code_hash, code_hash(pepper, email, code)):
        raise refused
    if not LoginCode.update(used=True).where(live).execute():  # a concurrent request redeemed it first
        raise refused
