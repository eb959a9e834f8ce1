"""Admin operations on accounts, models and keys, shared by the admin API and the CLI.

Inputs are already validated (money in nano-dollars); views are the JSON
answers (money as decimal strings, credentials redacted).
"""
from __future__ import annotations

import math
import time
from typing import Optional

from ..api_error import ApiError
from ..bootstrap import ensure_catalog_models
from ..gateway.catalog import bump_version
from ..gateway.upstreams.scrub import scrub
from ..ids import new_id
from ..money import usd
from ..storage.db import database
from ..storage.models import Account, ApiKey, CatalogModel
from .auth import hash_secret, new_key_value, redact

DEFAULT_BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com", "echo": ""}
LIMIT_FIELDS = ("five_hour_usd", "weekly_usd", "five_hour_requests", "weekly_requests", "five_hour_tokens",
                "weekly_tokens")


def redact_credential(value: str) -> Optional[str]:
    """Show that a credential is set without showing it."""
    if not value:
        return None
    return "..." + value[-4:] if len(value) >= 12 else "***"


# ---------------------------------------------------------------- accounts
RECENT_ERROR_SECONDS = 300  # an error this long after the cooldown it caused still marks the account unhealthy


def account_health(row: Account, now: Optional[float] = None) -> tuple[bool, Optional[int]]:
    """(healthy, cooldown_until): unhealthy while cooling down or soon after an error; times in whole seconds."""
    now = time.time() if now is None else now
    until = float(row.cooldown_until or 0)
    cooling = until > now
    recent_error = bool(row.last_error) and until + RECENT_ERROR_SECONDS > now
    return bool(row.healthy) and not cooling and not recent_error, math.ceil(until) if cooling else None


def account_view(row: Account) -> dict:
    limits = {name: usd(value) if name.endswith("_usd") else value for name, value in (row.limits or {}).items()}
    healthy, cooldown_until = account_health(row)
    return {"id": row.id, "object": "account", "name": row.name, "provider": row.provider,
            "base_url": row.base_url, "api_key": redact_credential(row.api_key), "api": row.api,
            "models": list(row.models or []), "model_map": dict(row.model_map or {}), "weight": row.weight,
            "enabled": row.enabled, "limits": limits, "created_at": row.created_at,
            "healthy": healthy, "cooldown_until": cooldown_until,
            "last_error": scrub(row.last_error, (row.api_key,))}  # rows written before scrubbing, too


def get_account(account_id: str) -> Account:
    row = Account.get_or_none((Account.id == account_id) | (Account.name == account_id))
    if row is None:
        raise ApiError(404, f"No account '{account_id}'.", param="id")
    return row


def _check_account(values: dict) -> None:
    if values.get("provider") == "echo":
        values.setdefault("base_url", "")
    elif "provider" in values and not values.get("base_url"):
        values["base_url"] = DEFAULT_BASE_URLS[values["provider"]]
    if "base_url" in values and values["base_url"]:
        values["base_url"] = values["base_url"].rstrip("/")


def create_account(values: dict) -> Account:
    """Register an upstream account and catalog rows for the models it serves."""
    values = dict(values)
    _check_account(values)
    if Account.get_or_none(Account.name == values["name"]):
        raise ApiError(409, f"An account named '{values['name']}' exists already.", param="name")
    with database.atomic():
        row = Account.create(id=new_id("acct"), **values)
        ensure_catalog_models(list(row.models or []) + list((row.model_map or {}).keys()))
        bump_version()
    return row


def update_account(row: Account, values: dict) -> Account:
    values = dict(values)
    if "provider" in values and "base_url" not in values:
        values["base_url"] = row.base_url or DEFAULT_BASE_URLS[values["provider"]]
    _check_account(values)
    if "name" in values and values["name"] != row.name and Account.get_or_none(Account.name == values["name"]):
        raise ApiError(409, f"An account named '{values['name']}' exists already.", param="name")
    with database.atomic():
        for name, value in values.items():
            setattr(row, name, value)
        if "enabled" in values and values["enabled"]:
            row.cooldown_until, row.healthy = 0, True
        row.save()
        ensure_catalog_models(list(row.models or []))
        bump_version()
    return row


def delete_account(row: Account) -> dict:
    with database.atomic():
        row.delete_instance()
        bump_version()
    return {"id": row.id, "object": "account", "deleted": True}


# ---------------------------------------------------------------- models
def model_view(row: CatalogModel) -> dict:
    cached = row.cached_input_nano_per_mtok
    return {"id": row.id, "object": "model", "display_name": row.display_name, "owned_by": row.owned_by,
            "context_window": row.context_window, "max_output_tokens": row.max_output_tokens,
            "input_usd_per_mtok": usd(row.input_nano_per_mtok), "output_usd_per_mtok": usd(row.output_nano_per_mtok),
            "cached_input_usd_per_mtok": usd(cached) if cached is not None else None, "created_at": row.created_at}


def get_model(model_id: str) -> CatalogModel:
    row = CatalogModel.get_or_none(CatalogModel.id == model_id)
    if row is None:
        raise ApiError(404, f"No model '{model_id}' in the catalog.", param="id")
    return row


def save_model(values: dict, row: Optional[CatalogModel] = None) -> CatalogModel:
    """Create (row None; 409 if it exists) or update a catalog model."""
    if row is None:
        if CatalogModel.get_or_none(CatalogModel.id == values["id"]):
            raise ApiError(409, f"The model '{values['id']}' exists already: change it with PATCH /v1/admin/models/"
                                f"{values['id']} or `onekeyllm models update {values['id']}`.", param="id")
        values.setdefault("display_name", values["id"])
        row = CatalogModel(**values)
        row.save(force_insert=True)
    else:
        for name, value in values.items():
            setattr(row, name, value)
        row.save()
    bump_version()
    return row


def delete_model(row: CatalogModel) -> dict:
    row.delete_instance()
    bump_version()
    return {"id": row.id, "object": "model", "deleted": True}


# ---------------------------------------------------------------- keys
def key_view(row: ApiKey, plaintext: Optional[str] = None) -> dict:
    view = {"id": row.id, "object": "api_key", "name": row.name, "redacted_value": redact(row.last4),
            "budget_usd": usd(row.budget_nano), "used_usd": usd(row.used_nano),
            "created_at": row.created_at, "last_used_at": row.last_used_at, "expires_at": row.expires_at,
            "models": row.models, "rpm": row.rpm, "disabled": row.disabled, "email": row.email}
    if plaintext is not None:
        view["key"] = plaintext
    return view


def live_keys():
    """The keys that are not revoked (a query: callers page or list it)."""
    return ApiKey.select().where(ApiKey.revoked == False)  # noqa: E712


def get_key(key_id: str, email: Optional[str] = None) -> ApiKey:
    query = (ApiKey.id == key_id) & (ApiKey.revoked == False)  # noqa: E712
    if email is not None:
        query &= ApiKey.email == email
    row = ApiKey.get_or_none(query)
    if row is None:
        raise ApiError(404, f"No key '{key_id}'.", param="id")
    return row


def create_key(pepper: bytes, values: dict) -> tuple[ApiKey, str]:
    """A new key; returns the row and the plaintext, which is never stored."""
    plaintext = new_key_value()
    row = ApiKey.create(id=new_id("key"), key_hash=hash_secret(pepper, plaintext), last4=plaintext[-4:],
                        name=values.get("name") or "", budget_nano=values.get("budget_nano"),
                        expires_at=values.get("expires_at"), models=values.get("models"),
                        rpm=values.get("rpm"), email=values.get("email"),
                        owner_created=values.get("owner_created", False))
    return row, plaintext


def update_key(row: ApiKey, values: dict) -> ApiKey:
    for name, value in values.items():
        setattr(row, name, value)
    row.save()
    return row


def revoke_key(row: ApiKey) -> dict:
    ApiKey.update(revoked=True).where(ApiKey.id == row.id).execute()
    return {"id": row.id, "object": "api_key", "deleted": True}
