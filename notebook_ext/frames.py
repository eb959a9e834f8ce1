"""Gateway JSON turned into pandas DataFrames with honest dtypes.

Timestamps are `datetime64[ns, UTC]`, money columns (`*_usd`) are float64 dollars (the API's
nine-place decimal strings, parsed), token and count columns are int64.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import pandas as pd

UTC_NS = "datetime64[ns, UTC]"

REQUEST_COLUMNS = ["id", "created_at", "endpoint", "model", "account", "stream", "status_code",
                   "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "overage_usd",
                   "latency_ms", "response_id", "request_id"]
USAGE_COLUMNS = ["id", "name", "redacted_value", "created_at", "last_used_at", "expires_at",
                 "limit_usd", "used_usd", "remaining_usd"]
SUMMARY_COUNTS = ["requests", "input_tokens", "output_tokens", "cached_tokens"]
CAPACITY_COLUMNS = ["account", "provider", "models", "healthy", "cooldown_until", "window",
                    "limit_usd", "used_usd", "remaining_usd", "resets_at", "rate_limits"]
RENAMED = {"name": "account", "id": "account_id"}
MODEL_COLUMNS = ["id", "owned_by", "created"]


def timestamps(values: pd.Series) -> pd.Series:
    """Unix seconds or ISO strings (None allowed) as UTC nanosecond timestamps."""
    if values.empty:
        return pd.Series(values, dtype=UTC_NS)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        parsed = pd.to_datetime(numeric, unit="s", utc=True)
    else:
        parsed = pd.to_datetime(values, utc=True, format="mixed")
    return parsed.astype(UTC_NS)


def dollars(values: pd.Series) -> pd.Series:
    """Decimal strings (None allowed) as float64 dollars."""
    return pd.to_numeric(values, errors="coerce").astype("float64")


def counts(values: pd.Series) -> pd.Series:
    """Integer counts; missing counts are 0."""
    return pd.to_numeric(values, errors="coerce").fillna(0).astype("int64")


def _frame(rows: Iterable[dict], columns: Sequence[str]) -> pd.DataFrame:
    rows = list(rows)
    extras = (k for r in rows for k in r if k != "object")
    return pd.DataFrame(rows, columns=list(dict.fromkeys([*columns, *extras])))


def _typed(frame: pd.DataFrame, times: Sequence[str] = (), money: Sequence[str] = (),
           ints: Sequence[str] = (), bools: Sequence[str] = ()) -> pd.DataFrame:
    for column in times:
        frame[column] = timestamps(frame[column])
    for column in money:
        frame[column] = dollars(frame[column])
    for column in ints:
        frame[column] = counts(frame[column])
    for column in bools:
        frame[column] = frame[column].astype("boolean").fillna(False).astype(bool)
    return frame


def requests_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Request-log rows (newest first, as the API gives them)."""
    frame = _frame(rows, REQUEST_COLUMNS)
    return _typed(frame, times=["created_at"], money=["cost_usd", "overage_usd"], bools=["stream"],
                  ints=["status_code", "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens",
                        "latency_ms"])


def usage_frame(usage: dict) -> pd.DataFrame:
    """The key's budget as one row."""
    budget = usage.get("budget") or {}
    row = {k: usage.get(k) for k in USAGE_COLUMNS[:6]}
    row.update({k: budget.get(k) for k in USAGE_COLUMNS[6:]})
    frame = _frame([row], USAGE_COLUMNS)
    return _typed(frame, times=["created_at", "last_used_at", "expires_at"], money=USAGE_COLUMNS[6:])


def summary_frame(rows: Iterable[dict], group_by: str) -> pd.DataFrame:
    """Spend and tokens per day or per model."""
    frame = _frame(rows, [group_by, *SUMMARY_COUNTS, "cost_usd"])
    frame = _typed(frame, money=["cost_usd"], ints=SUMMARY_COUNTS)
    if group_by == "day":
        frame["day"] = timestamps(frame["day"])
    return frame


def capacity_frame(accounts: Iterable[dict]) -> pd.DataFrame:
    """One row per account and budget window (one row with no window when the account has none)."""
    rows = []
    for account in accounts:
        base = {RENAMED.get(k, k): v for k, v in account.items() if k not in ("windows", "object")}
        base["models"] = ", ".join(account.get("models") or [])
        windows: list[dict[str, Any]] = account.get("windows") or [{}]
        rows.extend({**base, **window} for window in windows)
    frame = _frame(rows, CAPACITY_COLUMNS)
    columns = list(frame.columns)
    frame = _typed(frame, times=[c for c in ("cooldown_until", "resets_at", "last_checked_at") if c in columns],
                   money=[c for c in columns if c.endswith("_usd")], bools=["healthy"])
    for column in columns:
        if column.endswith(("_requests", "_tokens")) or column == "seconds":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    return frame


def models_frame(models: Iterable[dict]) -> pd.DataFrame:
    """The model catalog."""
    frame = _frame(models, MODEL_COLUMNS)
    return _typed(frame, times=["created"])


def spend_by_key(log: pd.DataFrame) -> pd.DataFrame:
    """Request-log rows (with `key_id`) summed per key, costliest first."""
    columns = ["key_id", *SUMMARY_COUNTS, "cost_usd"]
    if log.empty:
        return _typed(pd.DataFrame(columns=columns), money=["cost_usd"], ints=SUMMARY_COUNTS)
    grouped = log.groupby("key_id").agg(requests=("id", "count"), input_tokens=("input_tokens", "sum"),
                                        output_tokens=("output_tokens", "sum"), cached_tokens=("cached_tokens", "sum"),
                                        cost_usd=("cost_usd", "sum")).reset_index()
    return grouped.sort_values(["cost_usd", "key_id"], ascending=[False, True]).reset_index(drop=True)[columns]
