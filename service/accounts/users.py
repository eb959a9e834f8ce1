"""Users' allowances: what an email may put on the keys it creates itself, shared by the admin API and the CLI.

An allowance is a lifetime total: `used_nano` adds up the budget of every key
the user created (revoking a key gives nothing back), and a user holds at most
`max_keys` live keys. Both are checked by one conditional UPDATE inside the
transaction that creates the key, so concurrent creations cannot pass them.
The admin grants allowances (`/v1/admin/users`, `onekeyllm users set`); an
address of a self-service domain gets one at its first login.
"""
from __future__ import annotations

from typing import Optional

import peewee as pw

from ..api_error import ApiError
from ..money import usd
from ..storage.db import database, is_postgres
from ..storage.models import ApiKey, UserAllowance
from . import registry


def live_keys(email: str) -> pw.ModelSelect:
    """The user's keys that work (not revoked): what `max_keys` counts, and what `GET /v1/keys` lists."""
    return ApiKey.select().where((ApiKey.email == email) & (ApiKey.revoked == False))  # noqa: E712


def created_budgets(email: str) -> int:
    """What the keys the user created themselves were given, revoked ones included (the lifetime spend)."""
    total = (ApiKey.select(pw.fn.SUM(ApiKey.budget_nano))
             .where((ApiKey.email == email) & (ApiKey.owner_created == True)).scalar())  # noqa: E712
    return int(total or 0)


def allowance_view(row: UserAllowance) -> dict:
    """The allowance as the API shows it (money as decimal strings)."""
    return {"id": row.email, "object": "user", "email": row.email, "budget_usd": usd(row.budget_nano),
            "max_keys": row.max_keys, "used_usd": usd(row.used_nano),
            "remaining_usd": usd(max(0, row.budget_nano - row.used_nano)), "live_keys": live_keys(row.email).count(),
            "source": row.source, "created_at": row.created_at}


def get_allowance(email: str) -> UserAllowance:
    """The allowance of `email` (404 when it has none)."""
    row = UserAllowance.get_or_none(UserAllowance.email == email)
    if row is None:
        raise ApiError(404, f"No allowance for '{email}'.", param="email")
    return row


def create_allowance(values: dict, default_max_keys: int) -> UserAllowance:
    """Grant an allowance (409 when the email has one). `used_nano` defaults to what the user's own keys
    were given already, so that removing and granting again never hands the spend back."""
    email = values["email"]
    conflict = ApiError(409, f"'{email}' has an allowance already; PATCH it.", param="email")
    try:
        with database.atomic():
            if UserAllowance.get_or_none(UserAllowance.email == email) is not None:
                raise conflict
            UserAllowance.create(email=email, budget_nano=values["budget_nano"],
                                 max_keys=values.get("max_keys", default_max_keys),
                                 used_nano=values.get("used_nano", created_budgets(email)),
                                 source=values.get("source", "admin"))
    except pw.IntegrityError:  # granted by a concurrent request
        raise conflict from None
    return get_allowance(email)


def update_allowance(row: UserAllowance, values: dict) -> UserAllowance:
    """Change budget, max_keys or used (fields not given are kept)."""
    changes = {name: values[name] for name in ("budget_nano", "max_keys", "used_nano") if name in values}
    if changes:
        UserAllowance.update(**changes).where(UserAllowance.email == row.email).execute()
    return get_allowance(row.email)


def set_allowance(email: str, values: dict, default_max_keys: int) -> UserAllowance:
    """Create or change the allowance of `email` (the CLI's `users set`)."""
    with database.atomic():
        row = UserAllowance.get_or_none(UserAllowance.email == email)
        if row is None:
            return create_allowance({**values, "email": email}, default_max_keys)
        return update_allowance(row, values)


def delete_allowance(row: UserAllowance) -> dict:
    """Remove an allowance: the user's live keys keep working, no new one can be created."""
    UserAllowance.delete().where(UserAllowance.email == row.email).execute()
    return {"id": row.email, "object": "user", "deleted": True}


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].lower()


def grant_self_service(email: str, domains: tuple, budget_nano: int, max_keys: int) -> None:
    """At login: an address of a self-service domain that has no allowance gets the self-service one."""
    if budget_nano <= 0 or domain_of(email) not in domains:
        return
    UserAllowance.insert(email=email, budget_nano=budget_nano, max_keys=max_keys, used_nano=created_budgets(email),
                         source="self_service").on_conflict_ignore().execute()


def create_user_key(pepper: bytes, email: str, name: str, budget_nano: Optional[int]) -> tuple[ApiKey, str]:
    """A key the user creates within their allowance (403 without one or past it); budget None: what is left.

    The allowance is charged by a conditional UPDATE in the key's own transaction. On PostgreSQL the row is
    locked first, so that the live-key count in that UPDATE sees every key committed before it; SQLite's
    transactions take the write lock at BEGIN, which serialises them anyway.
    """
    with database.atomic():
        query = UserAllowance.select().where(UserAllowance.email == email)
        row = (query.for_update() if is_postgres() else query).first()
        if row is None:
            raise ApiError(403, "This address has no allowance for keys of its own: ask the admin for one.",
                           type="permission_error", code="no_allowance")
        if budget_nano is None:
            budget_nano = max(0, row.budget_nano - row.used_nano)
        if budget_nano <= 0:
            raise _spent(row)
        live = live_keys(email).select(pw.fn.COUNT(ApiKey.id))
        granted = (UserAllowance.update(used_nano=UserAllowance.used_nano + budget_nano)
                   .where((UserAllowance.email == email)
                          & (UserAllowance.used_nano + budget_nano <= UserAllowance.budget_nano)
                          & (live < UserAllowance.max_keys))
                   .execute())
        if not granted:
            if live_keys(email).count() >= row.max_keys:
                raise ApiError(403, f"You have {row.max_keys} live keys, the most your allowance permits; "
                               "revoke one first.", type="permission_error", code="too_many_keys")
            raise _spent(row, budget_nano)
        return registry.create_key(pepper, {"name": name, "budget_nano": budget_nano, "email": email,
                                            "owner_created": True})


def _spent(row: UserAllowance, asked: Optional[int] = None) -> ApiError:
    left = max(0, row.budget_nano - row.used_nano)
    what = f"a key of {usd(asked)}" if asked else "another key"
    return ApiError(403, f"Your allowance has {usd(left)} USD left of {usd(row.budget_nano)}: not enough for {what} "
                    "(revoked keys count too).", param="budget_usd", type="permission_error",
                    code="allowance_exceeded")
