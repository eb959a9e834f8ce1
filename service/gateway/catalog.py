"""The catalog: accounts and models, snapshotted per process and refreshed when an admin writes.

Every admin write bumps `catalog_version` in the settings table; each request
compares that one row with the snapshot's version, so all workers see a
change at their next request without re-reading the tables each time.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional

from ..storage.models import Account, CatalogModel, Setting
from ..storage.prepared import Prepared

VERSION_KEY = "catalog_version"


@dataclass(frozen=True)
class AccountInfo:
    id: str
    name: str
    provider: str
    base_url: str
    api_key: str
    api: str
    models: tuple
    model_map: dict
    weight: int
    enabled: bool
    limits: dict
    compat: dict = field(default_factory=dict)

    def upstream_model(self, public: str) -> str:
        """The upstream's name for a public model."""
        return self.model_map.get(public, public)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    display_name: str
    owned_by: str
    context_window: Optional[int]
    max_output_tokens: Optional[int]
    input_nano_per_mtok: int
    output_nano_per_mtok: int
    cached_input_nano_per_mtok: Optional[int]
    created_at: int
    cache_write_nano_per_mtok: Optional[int] = None  # None: 1.25x input
    cache_write_1h_nano_per_mtok: Optional[int] = None  # None: 2x input


@dataclass
class Snapshot:
    version: str
    accounts: dict = field(default_factory=dict)  # id -> AccountInfo
    models: dict = field(default_factory=dict)  # id -> ModelInfo (every catalog row)
    serving: dict = field(default_factory=dict)  # model id -> [AccountInfo] (enabled only)

    def available_models(self) -> list:
        """Catalog models that at least one enabled account serves, sorted by id."""
        return [self.models[m] for m in sorted(self.serving) if m in self.models]


VERSION = Prepared(lambda key: Setting.select(Setting.value).where(Setting.key == key))


def _read_version() -> str:
    return VERSION.scalar(VERSION_KEY) or "0"


def _load(version: str) -> Snapshot:
    snap = Snapshot(version=version)
    for row in Account.select():
        info = AccountInfo(id=row.id, name=row.name, provider=row.provider, base_url=row.base_url or "",
                           api_key=row.api_key or "", api=row.api or "chat", models=tuple(row.models or ()),
                           model_map=dict(row.model_map or {}), weight=max(0, row.weight or 0),
                           enabled=bool(row.enabled), limits=dict(row.limits or {}),
                           compat=dict(row.compat or {}))
        snap.accounts[info.id] = info
        if info.enabled:
            for model in info.models:
                snap.serving.setdefault(model, []).append(info)
    for row in CatalogModel.select():
        snap.models[row.id] = ModelInfo(
            id=row.id, display_name=row.display_name or row.id, owned_by=row.owned_by or "",
            context_window=row.context_window, max_output_tokens=row.max_output_tokens,
            input_nano_per_mtok=row.input_nano_per_mtok or 0, output_nano_per_mtok=row.output_nano_per_mtok or 0,
            cached_input_nano_per_mtok=row.cached_input_nano_per_mtok, created_at=row.created_at or 0,
            cache_write_nano_per_mtok=row.cache_write_nano_per_mtok,
            cache_write_1h_nano_per_mtok=row.cache_write_1h_nano_per_mtok)
    # a served model without a catalog row is still usable, at zero price
    for model in snap.serving:
        snap.models.setdefault(model, ModelInfo(model, model, "onekeyllm", None, None, 0, 0, None, 0))
    return snap


_lock = threading.Lock()
_current: Optional[Snapshot] = None


def snapshot(version: Optional[str] = None) -> Snapshot:
    """The current catalog: fresh for `version` (read with the caller's key), else one small query to check."""
    global _current
    version = version or _read_version()
    current = _current
    if current is not None and current.version == version:
        return current
    with _lock:
        if _current is None or _current.version != version:
            _current = _load(version)
        return _current


def latest() -> Snapshot:
    """The catalog this worker holds (read once if it holds none); whoever uses it checks its version later."""
    return _current or snapshot()


def bump_version() -> None:
    """Tell every worker that accounts or models changed (call after an admin write)."""
    global _current
    import secrets

    value = secrets.token_hex(8)
    Setting.insert(key=VERSION_KEY, value=value).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value}).execute()
    _current = None
