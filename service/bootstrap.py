"""First start: schema, installation secrets, admin token, accounts from the environment."""
from __future__ import annotations

import json
import secrets
from functools import lru_cache
from importlib import resources
from typing import Optional

from .accounts.auth import Secrets, hash_secret
from .config import Settings
from .gateway.holds import reclaim_orphaned_holds
from .ids import new_id
from .money import to_nano
from .storage.db import connected, database
from .storage.migrations import migrate
from .storage.models import Account, CatalogModel, Setting

LOCAL_ACCOUNT = "local"
ECHO_MODEL = "echo-1"


@lru_cache(maxsize=1)
def price_list() -> dict:
    """The shipped, dated price list: {provider: {model: {...}}}."""
    return json.loads(resources.files("service").joinpath("data/prices.json").read_text())


def known_model(model_id: str) -> Optional[dict]:
    """The shipped entry for a well-known model, with its provider."""
    for provider, models in price_list()["models"].items():
        if model_id in models:
            return {"provider": provider, **models[model_id]}
    return None


def ensure_catalog_models(model_ids: list) -> None:
    """Give every served model a catalog row: shipped prices when known, zero otherwise."""
    existing = {m.id for m in CatalogModel.select(CatalogModel.id).where(CatalogModel.id.in_(model_ids))}
    for model_id in model_ids:
        if model_id in existing:
            continue
        entry = known_model(model_id) or {}
        CatalogModel.insert(
            id=model_id, display_name=entry.get("display_name", model_id),
            owned_by=entry.get("provider", "onekeyllm"), context_window=entry.get("context_window"),
            max_output_tokens=entry.get("max_output_tokens"),
            input_nano_per_mtok=to_nano(entry.get("input", "0")),
            output_nano_per_mtok=to_nano(entry.get("output", "0")),
            cached_input_nano_per_mtok=to_nano(entry["cached_input"]) if "cached_input" in entry else None,
            cache_write_nano_per_mtok=to_nano(entry["cache_write"]) if "cache_write" in entry else None,
            cache_write_1h_nano_per_mtok=to_nano(entry["cache_write_1h"]) if "cache_write_1h" in entry else None,
        ).on_conflict_ignore().execute()


def _setting(key: str, make) -> tuple[str, bool]:
    """The stored value of `key`, created with make() when absent; (value, created)."""
    row = Setting.get_or_none(Setting.key == key)
    if row:
        return row.value, False
    value = make()
    inserted = Setting.insert(key=key, value=value).on_conflict_ignore().execute()
    if not inserted:  # another process won the race
        return Setting.get(Setting.key == key).value, False
    return value, True


def _register_account(name: str, provider: str, base_url: str, api_key: str) -> None:
    if Account.get_or_none(Account.name == name):
        return
    models = sorted(price_list()["models"][provider])
    Account.insert(id=new_id("acct"), name=name, provider=provider, base_url=base_url, api_key=api_key,
                   api="chat", models=models, model_map={}, limits={}).on_conflict_ignore().execute()
    ensure_catalog_models(models)


def bootstrap(settings: Settings, generate_admin_token: bool = True) -> tuple[Secrets, Optional[str]]:
    """Make the database ready; returns the secrets and the admin token if one was just generated.

    Servers generate the admin token on the first start; the admin CLI (which
    needs no token) does not.
    """
    with connected():
        migrate()
        reclaim_orphaned_holds()  # a crashed process's reservations, given back without manual repair
        with database.atomic():
            pepper, _ = _setting("key_pepper", lambda: secrets.token_hex(32))
            jwt_secret = settings.jwt_secret or _setting("jwt_secret", lambda: secrets.token_urlsafe(48))[0]
            new_admin_token = None
            if settings.admin_token:
                admin_hash = hash_secret(bytes.fromhex(pepper), settings.admin_token)
            elif not generate_admin_token:
                row = Setting.get_or_none(Setting.key == "admin_token_hash")
                admin_hash = row.value if row else ""
            else:
                candidate = "sk-admin-" + secrets.token_urlsafe(32)
                admin_hash, created = _setting("admin_token_hash",
                                               lambda: hash_secret(bytes.fromhex(pepper), candidate))
                new_admin_token = candidate if created else None
        for provider, values in settings.env_accounts.items():
            _register_account(provider, provider, values["base_url"], values["api_key"])
        _, first_start = _setting("accounts_initialised", lambda: "1")
        if first_start and not settings.env_accounts:
            if not Account.get_or_none(Account.name == LOCAL_ACCOUNT):
                Account.insert(id=new_id("acct"), name=LOCAL_ACCOUNT, provider="echo", base_url="", api_key="",
                               api="chat", models=[ECHO_MODEL], model_map={}, limits={}).execute()
            ensure_catalog_models([ECHO_MODEL])
    return Secrets(pepper=bytes.fromhex(pepper), jwt_secret=jwt_secret, admin_token_hash=admin_hash), new_admin_token
