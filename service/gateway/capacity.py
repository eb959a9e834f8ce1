"""Account capacity: spend over rolling windows, the last upstream rate-limit headers, and health.

An account's `limits` may cap what it serves in a rolling window:
`five_hour_usd` / `weekly_usd` (nano-dollars), `five_hour_requests` /
`weekly_requests` and `five_hour_tokens` / `weekly_tokens`. What an account
used is read from the request log (`RequestLog.account` holds its name).

Routing never reads the windows: every grant reserves the call's worst case on
the account it picks, exactly (storage/account_windows.py). What routing
weighs is the upstream's own rate-limit headers, shared through the account
row: each answer's headers are written there (off the call's path, the latest
per account), and every grant answers the candidates' rows (`learn`).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

import peewee as pw

from ..money import usd
from ..storage.account_windows import MEASURES, WINDOWS
from ..storage.account_windows import window_limit as _limit
from ..storage.db import connected
from ..storage.models import Account, RequestLog
from ..storage.ratelimit import count_in_window
from .catalog import AccountInfo
from .router import cooldowns
from .upstreams import upstream_for
from .upstreams.http import Timeouts, UpstreamError
from .upstreams.scrub import scrub

LIMIT_NAMES = tuple(f"{window}_{measure}" for window, _ in WINDOWS for measure in MEASURES)
HEADERS_TRUSTED_FOR = 60.0  # seconds a rate-limit reading without a reset time stays meaningful
PROBE_PARALLELISM = 8
PROBE_INTERVAL = 30  # seconds: an account is probed at most once in each such window, whoever asks
log = logging.getLogger("onekeyllm.capacity")

_last: dict = {}  # account id -> (observed at, rate-limit headers)
_unwritten: dict = {}  # account id -> (observed at, headers) not yet in its row
_persisted: dict = {}  # account id -> when this process last had them written
_writing: set = set()  # accounts whose headers this process is writing now
PERSIST_EVERY = 1.0  # seconds between two writes of one account's headers by one process
_lock = threading.Lock()


# ---------------------------------------------------------------- upstream rate-limit headers
def remember_headers(account_id: str, headers: dict) -> None:
    """Keep an upstream's rate-limit headers, here and in the account row: before the answer when they say a
    limit is spent (no process may call the account meanwhile), else off the call's path, at most every
    PERSIST_EVERY seconds per account and process (what every grant reads is at most that old)."""
    now = time.time()
    # parsed as of `now`, the time it is kept under: routing's headroom reads this very parse (parse_rate_limits)
    spent = any(reading.get("remaining") == 0 for reading in parse_rate_limits(headers, now).values())
    with _lock:
        _last[account_id] = (now, headers)
        _unwritten[account_id] = (now, headers)
        due = spent or now - _persisted.get(account_id, 0) >= PERSIST_EVERY
        if due:
            _persisted[account_id] = now
        start = due and not spent and account_id not in _writing
        if start:
            _writing.add(account_id)
    if spent:
        _write_row(account_id, now, headers)
    elif start:
        threading.Thread(target=_write_headers, args=(account_id,), daemon=True).start()


def _write_row(account_id: str, observed_at: float, headers: dict) -> None:
    with connected():
        Account.update(last_headers=headers, last_checked_at=int(observed_at), healthy=True).where(
            Account.id == account_id).execute()


def _write_headers(account_id: str) -> None:
    """Write the account's latest headers not yet written (one writer per account and process at a time)."""
    try:
        with _lock:
            entry = _unwritten.pop(account_id, None)
        if entry is not None:
            _write_row(account_id, *entry)
    except Exception:  # noqa: BLE001 - a later answer's headers are written again
        log.warning("could not write an account's rate-limit headers", exc_info=True)
    finally:
        with _lock:
            _writing.discard(account_id)


def learn(account_state: list) -> None:
    """Take what every process learned of the candidate accounts, as the grant read it from their rows:
    [id, cooldown_until, last_headers, last_checked_at] each."""
    for account_id, cooldown_until, headers, checked_at in account_state or ():
        cooldowns.learn(account_id, float(cooldown_until or 0))
        if headers and checked_at is not None:
            entry = _last.get(account_id)
            # the row keeps whole seconds: a reading of the same second as ours may be the later one
            if entry is None or float(checked_at) >= int(entry[0]):
                _last[account_id] = (float(checked_at), headers)


def last_headers(account_id: str) -> dict:
    """The rate-limit headers of the account's last upstream answer seen by this process."""
    entry = _last.get(account_id)
    return entry[1] if entry else {}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
EPOCH_THRESHOLD = 1e9  # a bare number this large is a unix time, not a number of seconds
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_OPENAI_HEADER = re.compile(r"^x-ratelimit-(limit|remaining|reset)-(.+)$")
_ANTHROPIC_HEADER = re.compile(r"^anthropic-ratelimit-(.+)-(limit|remaining|reset)$")


def _reset_time(value: str, observed_at: float) -> Optional[float]:
    """A reset header as unix time: OpenAI's durations ("6m0s", "20ms"), seconds, a unix time, or RFC 3339."""
    value = value.strip()
    if _DURATION.fullmatch(value):
        return observed_at + sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if number >= EPOCH_THRESHOLD else observed_at + number
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def parse_rate_limits(headers: dict, observed_at: float) -> dict:
    """x-ratelimit-* / anthropic-ratelimit-* as `{"requests": {"limit", "remaining", "resets_at"}, "tokens": …}`.

    Parsed once per reading (every call routes on the same few readings): the answer is shared, not a copy.
    """
    if not headers:
        return {}
    try:
        return _parse_cached(tuple(headers.items()), observed_at)
    except TypeError:  # a value that is no string (an odd stored row): parsed as it is
        return _parse(headers.items(), observed_at)


@functools.lru_cache(maxsize=1024)
def _parse_cached(items: tuple, observed_at: float) -> dict:
    return _parse(items, observed_at)


@functools.lru_cache(maxsize=256)
def _reading_of(name: str) -> Optional[tuple]:
    """(kind, field) of a rate-limit header's name (`x-ratelimit-remaining-tokens` → ("tokens", "remaining")),
    None for another header: worked out once per name (an upstream sends the same few on every answer)."""
    name = name.lower()
    match = _OPENAI_HEADER.match(name)
    if match:
        return match.group(2).replace("-", "_"), match.group(1)
    match = _ANTHROPIC_HEADER.match(name)
    if match:
        return match.group(1).replace("-", "_"), match.group(2)
    return None


def _parse(items, observed_at: float) -> dict:
    parsed: dict = {}
    for name, value in items:
        reading = _reading_of(name) if isinstance(name, str) else None
        if reading is None:
            continue
        kind, field = reading
        entry = parsed.setdefault(kind, {})
        if field == "reset":
            resets_at = _reset_time(str(value), observed_at)
            if resets_at is not None:
                entry["resets_at"] = round(resets_at, 3)
        else:
            try:
                entry[field] = int(float(value))
            except ValueError:
                continue
    return {kind: entry for kind, entry in parsed.items() if entry}


def _header_fractions(account_id: str, now: float) -> list:
    """Fractions of the upstream's own limits left, for readings that still hold."""
    entry = _last.get(account_id)
    if entry is None:
        return []
    observed_at, headers = entry
    fractions = []
    for reading in parse_rate_limits(headers, observed_at).values():
        limit, remaining = reading.get("limit"), reading.get("remaining")
        if not limit or remaining is None or limit <= 0:
            continue
        resets_at = reading.get("resets_at")
        still_holds = now < resets_at if resets_at is not None else now - observed_at < HEADERS_TRUSTED_FOR
        if still_holds:
            fractions.append(max(0.0, min(1.0, remaining / limit)))
    return fractions


# ---------------------------------------------------------------- windows of the request log
@dataclass(frozen=True)
class WindowUsage:
    """What one account used in one rolling window."""

    requests: int = 0
    cost_nano: int = 0
    tokens: int = 0
    oldest: Optional[float] = None  # created_at of the oldest row counted

    def amount(self, measure: str) -> int:
        return {"usd": self.cost_nano, "requests": self.requests, "tokens": self.tokens}[measure]


def _integer(value) -> int:
    return int(value or 0)


def _count_if(condition) -> pw.Node:
    """COUNT of the rows matching `condition` (portable: COUNT ignores NULLs)."""
    return pw.fn.COUNT(pw.Case(None, [(condition, 1)], None))


def read_window_usage(account_name: str, now: Optional[float] = None) -> dict:
    """{window name: WindowUsage} for an account, in one aggregate query over the longest window."""
    now = time.time() if now is None else now
    log = RequestLog
    columns = []
    for _, seconds in WINDOWS:
        inside = log.created_at >= now - seconds
        columns += [_count_if(inside), pw.fn.SUM(pw.Case(None, [(inside, log.cost_nano)], 0)),
                    pw.fn.SUM(pw.Case(None, [(inside, log.input_tokens + log.output_tokens)], 0)),
                    pw.fn.MIN(pw.Case(None, [(inside, log.created_at)], None))]
    longest = max(seconds for _, seconds in WINDOWS)
    with connected():
        query = log.select(*columns).where((log.account == account_name) & (log.created_at >= now - longest))
        row = query.tuples().get()
    usage = {}
    for i, (window, _) in enumerate(WINDOWS):
        requests, cost, tokens, oldest = row[4 * i: 4 * i + 4]
        usage[window] = WindowUsage(_integer(requests), _integer(cost), _integer(tokens),
                                    float(oldest) if oldest is not None else None)
    return usage


def has_window_limits(limits: dict) -> bool:
    return any((limits or {}).get(name) is not None for name in LIMIT_NAMES)


def headroom(account: AccountInfo) -> float:
    """The fraction of the upstream's own rate limits left (1.0 when unknown, 0 when one is spent).

    Window limits are not weighed here: the grant reserves them exactly (storage/account_windows.py).
    """
    return min(_header_fractions(account.id, time.time()), default=1.0)


def _resets_at(account_name: str, seconds: int, usage: WindowUsage, spent: dict, now: float) -> Optional[float]:
    """When the window frees capacity: the oldest row leaving it, or, when a limit is spent, enough rows leaving."""
    if usage.oldest is None:
        return None
    if not spent:
        return usage.oldest + seconds
    log = RequestLog
    left = {measure: usage.amount(measure) for measure in spent}
    query = (log.select(log.created_at, log.cost_nano, log.input_tokens + log.output_tokens)
             .where((log.account == account_name) & (log.created_at >= now - seconds))
             .order_by(log.created_at).tuples())
    with connected():
        for created_at, cost, tokens in query.iterator():
            gone = {"usd": int(cost or 0), "requests": 1, "tokens": int(tokens or 0)}
            for measure in left:
                left[measure] -= gone[measure]
            if all(left[measure] < limit for measure, limit in spent.items()):
                return created_at + seconds
    return usage.oldest + seconds


def _remaining(limit: Optional[int], used: int) -> Optional[int]:
    return None if limit is None else max(0, limit - used)


def window_view(account: AccountInfo, window: str, seconds: int, usage: WindowUsage, now: float) -> dict:
    """One window of an account: limits, what was used, what is left, when it frees up."""
    limits = {measure: _limit(account.limits, window, measure) for measure in MEASURES}
    spent = {m: limit for m, limit in limits.items() if limit is not None and usage.amount(m) >= limit}
    resets_at = _resets_at(account.name, seconds, usage, spent, now)
    usd_limit = limits["usd"]
    return {
        "window": window, "seconds": seconds,
        "limit_usd": usd(usd_limit), "used_usd": usd(usage.cost_nano),
        "remaining_usd": usd(_remaining(usd_limit, usage.cost_nano)),
        "limit_requests": limits["requests"], "used_requests": usage.requests,
        "remaining_requests": _remaining(limits["requests"], usage.requests),
        "limit_tokens": limits["tokens"], "used_tokens": usage.tokens,
        "remaining_tokens": _remaining(limits["tokens"], usage.tokens),
        "exhausted": bool(spent), "resets_at": math.ceil(resets_at) if resets_at is not None else None,
    }


# ---------------------------------------------------------------- health and the capacity view
def _observed_headers(row: Account) -> tuple:
    """The freshest rate-limit headers: this process's last answer or the account row's."""
    entry = _last.get(row.id)
    stored_at = float(row.last_checked_at or 0)
    if entry is not None and entry[0] >= stored_at:
        return entry
    return (stored_at, dict(row.last_headers or {})) if row.last_headers else (None, {})


def rate_limits_view(row: Account) -> dict:
    """The last upstream rate-limit headers, raw and parsed into limit / remaining / resets_at."""
    observed_at, headers = _observed_headers(row)
    if not headers:
        return {}
    return {"observed_at": int(observed_at), **parse_rate_limits(headers, observed_at), "headers": dict(headers)}


def _cooldown_until(row: Account, now: float) -> Optional[float]:
    until = max(float(row.cooldown_until or 0), cooldowns.until(row.id))
    return round(until, 3) if until > now else None


def capacity_view(accounts: list) -> list:
    """The capacity body of each account (never its credential or base URL)."""
    now = time.time()
    with connected():
        rows = {row.id: row for row in Account.select().where(Account.id.in_([a.id for a in accounts]))}
    views = []
    for account in accounts:
        row = rows.get(account.id)
        if row is None:
            continue
        usage = read_window_usage(account.name, now)
        views.append({
            "id": account.id, "object": "account.capacity", "name": account.name, "provider": account.provider,
            "models": list(account.models),
            "windows": [window_view(account, window, seconds, usage[window], now) for window, seconds in WINDOWS],
            "rate_limits": rate_limits_view(row), "healthy": bool(row.healthy),
            "cooldown_until": _cooldown_until(row, now), "last_error": scrub(row.last_error, (row.api_key,)),
            "last_checked_at": row.last_checked_at,
        })
    return views


@dataclass
class ProbeResult:
    account: AccountInfo
    error: Optional[UpstreamError] = None
    headers: Optional[dict] = None


def _probe(account: AccountInfo, timeouts: Timeouts) -> ProbeResult:
    """One cheap upstream call (listing models); the echo provider is always healthy."""
    upstream = upstream_for(account, timeouts)
    if not hasattr(upstream, "probe"):
        return ProbeResult(account, headers={})
    try:
        answer = upstream.probe()
    except UpstreamError as error:
        return ProbeResult(account, error=error, headers=getattr(error, "rate_limits", None))
    except Exception as error:  # never let one account break the refresh of the others
        return ProbeResult(account, error=UpstreamError("connect", f"The probe failed ({type(error).__name__})."))
    answer.close()
    return ProbeResult(account, headers=answer.rate_limits)


def due_for_probe(account: AccountInfo) -> bool:
    """Whether this refresh may probe the account: the first in its PROBE_INTERVAL window, counted in the
    database so that every process and every key share the one probe (a refresh cannot fan out upstream).
    The window is the account's as configured: an admin who changes its URL or credential may probe at once."""
    configured = hashlib.sha256(f"{account.base_url}\n{account.api_key}".encode()).hexdigest()[:16]
    with connected():
        count, _ = count_in_window(f"probe:{account.id}:{configured}", PROBE_INTERVAL)
    return count == 1


def refresh(accounts: list, timeouts: Timeouts) -> None:
    """Probe the accounts not probed lately, at once; record health, headers and the time on each account row."""
    accounts = [account for account in accounts if due_for_probe(account)]
    if not accounts:
        return
    with ThreadPoolExecutor(max_workers=min(PROBE_PARALLELISM, len(accounts))) as pool:
        results = list(pool.map(lambda account: _probe(account, timeouts), accounts))
    now = time.time()
    with connected():
        for result in results:
            _record_probe(result, now)


def _record_probe(result: ProbeResult, now: float) -> None:
    account, error = result.account, result.error
    values: dict = {"last_checked_at": int(now), "healthy": error is None}
    if result.headers and error is None:
        values["last_headers"] = result.headers
        with _lock:
            _last[account.id] = (now, result.headers)
            _persisted[account.id] = now
    if error is None:
        cooldowns.clear(account.id)
        values.update(last_error=None, cooldown_until=0)
    else:
        # recorded, not acted on: a probe any key can ask for must not cool the account down, nor let a failed
        # probe's rate-limit headers steer routing, for everyone (real calls that fail still do)
        values["last_error"] = scrub(error.message, (account.api_key,))[:300]
    Account.update(**values).where(Account.id == account.id).execute()
