"""Email login codes: issue, rate-limit, redeem. Only a keyed hash of a code is stored.

Every check is a conditional statement in the database, so the limits hold
across workers and processes: a send or a guess is counted with an atomic
upsert, a code's tries with a conditional UPDATE, a redemption with another.

The limits are per requester (its address, and its address with the email)
before they are per email, so that someone elsewhere can neither use up a
user's sends, nor kill or replace the code the user asked for: a new code
replaces only the codes its own requester asked for, a code dies after
MAX_ATTEMPTS wrong tries from its own requester, and guesses from anywhere
else are tried against the newest code only, within a budget per email that
never kills it. The per-email caps (sends, foreign guesses) bound a
distributed attacker: at most SENDS_PER_ADDRESS_TOTAL codes per window, each
compared at most MAX_ATTEMPTS times by the one requester it was sent for,
and FOREIGN_GUESSES_PER_ADDRESS more comparisons in all.
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
    """How long a code lives and how often one requester, one address, or anyone may ask or guess."""

    ttl_seconds: int = 600
    sends_per_address: int = 3  # by one requester (client address) for one email
    sends_per_ip: int = 10  # by one requester, whatever the emails
    sends_per_address_total: int = 10  # for one email, whoever asks: what a distributed attacker can mail
    guesses_per_address: int = 10  # by one requester for one email
    guesses_per_ip: int = 30  # by one requester, whatever the emails
    foreign_guesses_per_address: int = 10  # for one email, from requesters it sent no live code to
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


def _buckets(pepper: bytes, prefix: str, email: str, client_ip: Optional[str]) -> tuple[str, str, str]:
    """The counters of one requester, of one requester for one email, and of one email. Addresses are hashed:
    buckets stay short, and the counter table holds no address."""
    requester = client_ip or "unknown"
    return (f"{prefix}_ip:{requester}", f"{prefix}_pair:{hash_secret(pepper, f'{requester} {email}')[:40]}",
            f"{prefix}_email:{hash_secret(pepper, email)[:40]}")


def _enforce(buckets: list, window_seconds: int, now: Optional[float], what: str) -> None:
    for bucket, limit, who in buckets:
        count, retry_after = count_in_window(bucket, window_seconds, now)
        if count > limit:
            raise ApiError(429, f"Too many {what} {who}; try again in {retry_after} s.",
                           code="rate_limit_exceeded", headers={"retry-after": str(retry_after)})


def check_send_limits(pepper: bytes, email: str, client_ip: Optional[str], policy: LoginPolicy,
                      now: Optional[float] = None) -> None:
    """429 with `retry-after` once this client, this client for this address, or anyone for this address
    asked for too many codes in the window."""
    by_ip, by_pair, by_email = _buckets(pepper, "login", email, client_ip)
    _enforce([(by_ip, policy.sends_per_ip, "from this client"),
              (by_pair, policy.sends_per_address, "for this address from this client"),
              (by_email, policy.sends_per_address_total, "for this address")],
             policy.window_seconds, now, "login codes requested")


def issue_code(pepper: bytes, email: str, client_ip: Optional[str], policy: LoginPolicy,
               now: Optional[float] = None) -> IssuedCode:
    """Store a new code for `email` and return it. It replaces the codes this requester asked for before;
    another requester's stay valid (someone else asking cannot take a user's code away)."""
    now = time.time() if now is None else now
    code = new_code()
    requester = (client_ip or "")[:64] or None
    mine = LoginCode.client_ip == requester if requester is not None else LoginCode.client_ip.is_null()
    LoginCode.delete().where((LoginCode.email == email) & ((LoginCode.expires_at < now) | mine)).execute()
    row = LoginCode.create(email=email, code_hash=code_hash(pepper, email, code), created_at=now,
                           expires_at=now + policy.ttl_seconds, attempts=0, used=False, client_ip=requester)
    return IssuedCode(id=row.id, email=email, expires_at=row.expires_at, code=code)


def discard_code(issued: IssuedCode) -> None:
    """Forget a code that could not be delivered."""
    LoginCode.delete().where(LoginCode.id == issued.id).execute()


def redeem_code(pepper: bytes, email: str, code: str, client_ip: Optional[str], policy: LoginPolicy,
                now: Optional[float] = None) -> None:
    """Use up the code `code` of `email`; 401 when wrong, used, expired or out of tries, 429 past a limit.

    Every guess is counted before any comparison (per requester, per requester and email), so however many
    run at once none passes a limit. The requester's own code (the one mailed at its request) takes
    MAX_ATTEMPTS tries, counted on the code; a guess from a requester with no live code of the email is tried
    against its newest code only, within the email's foreign-guess budget, and leaves the code alive.
    """
    now = time.time() if now is None else now
    by_ip, by_pair, by_email = _buckets(pepper, "login_guess", email, client_ip)
    _enforce([(by_ip, policy.guesses_per_ip, "from this client"),
              (by_pair, policy.guesses_per_address, "for this address from this client")],
             policy.window_seconds, now, "login attempts")
    refused = ApiError(401, "Invalid or expired login code.", code="invalid_login_code")
    live = (LoginCode.email == email) & (LoginCode.used == False) & (LoginCode.expires_at > now)  # noqa: E712
    rows = list(LoginCode.select().where(live).order_by(LoginCode.id.desc()).limit(policy.sends_per_address_total))
    requester = (client_ip or "")[:64] or None
    digest = code_hash(pepper, email, code)
    own = next((row for row in rows if row.client_ip == requester), None)
    if own is not None:
        counted = (LoginCode.update(attempts=LoginCode.attempts + 1)
                   .where(live & (LoginCode.id == own.id) & (LoginCode.attempts < MAX_ATTEMPTS)).execute())
        if counted and hmac.compare_digest(own.code_hash, digest):
            return _use(own, live)
        if own is rows[0]:
            raise refused
    # counted whether or not the email has a live code: the answer never tells whether one is pending
    _enforce([(by_email, policy.foreign_guesses_per_address, "for this address")], policy.window_seconds, now,
             "login attempts")
    if not rows or not hmac.compare_digest(rows[0].code_hash, digest):
        raise refused
    _use(rows[0], live)


def _use(row: LoginCode, live) -> None:
    """Redeem `row` (401 if a concurrent request did first), and retire the email's other live codes."""
    if not LoginCode.update(used=True).where(live & (LoginCode.id == row.id)).execute():
        raise ApiError(401, "Invalid or expired login code.", code="invalid_login_code")
    LoginCode.update(used=True).where(live).execute()
