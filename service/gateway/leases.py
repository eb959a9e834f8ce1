"""Process leases: every serving process renews a row while it runs, so that any other can tell it died.

A process writes `process_lease(owner, expires_at)` when it starts serving and renews it every third of
the lease period from a background greenlet (a thread without gevent). An owner whose lease lapsed is
dead wherever it ran — another host, another PID namespace, a container that is gone — and the same
heartbeat gives back the holds of such owners (holds.reclaim_orphaned_holds) in every process, so a
dead process's holds come back within one lease period and a third.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Optional

import peewee as pw

from ..storage.db import connected
from ..storage.models import ProcessLease

log = logging.getLogger("onekeyllm.leases")

DEFAULT_SECONDS = 30.0

_state: dict = {"seconds": DEFAULT_SECONDS, "stopped": None, "owner": None}


def period() -> float:
    """How long a lease lasts without renewal, in seconds."""
    return _state["seconds"]


def renew(owner: str, now: Optional[float] = None) -> None:
    """Write or extend this process's lease."""
    now = time.time() if now is None else now
    expires = now + period()
    ProcessLease.insert(owner=owner, started_at=now, expires_at=expires).on_conflict(
        conflict_target=[ProcessLease.owner], update={ProcessLease.expires_at: expires}).execute()


def expiries(owners: set) -> dict:
    """{owner: expires_at} for the owners that hold a lease row."""
    if not owners:
        return {}
    query = ProcessLease.select(ProcessLease.owner, ProcessLease.expires_at).where(
        ProcessLease.owner.in_(list(owners))).tuples()
    return {owner: float(expires_at) for owner, expires_at in query}


def forget_lapsed(now: float, keep: set) -> None:
    """Drop leases that lapsed a while ago and name no hold any more (`keep`: owners that still hold some)."""
    stale = ProcessLease.delete().where(ProcessLease.expires_at < now - 10 * period())
    if keep:
        stale = stale.where(ProcessLease.owner.not_in(list(keep)))
    stale.execute()


def release(owner: str) -> None:
    """Drop this process's lease (a clean stop, once its holds are settled)."""
    ProcessLease.delete().where(ProcessLease.owner == owner).execute()


def _beat(owner_name, reclaim) -> None:
    while not _state["stopped"].wait(period() / 3):
        try:
            with connected():
                renew(owner_name())
                reclaim()
        except pw.DatabaseError:  # a database away for a moment: the next beat renews in time
            log.warning("could not renew this process's lease", exc_info=True)
        except Exception:  # noqa: BLE001 - the heartbeat must outlive anything one beat meets
            log.exception("the lease heartbeat failed once")


def start_heartbeat(seconds: float) -> None:
    """Write this process's lease now and keep it alive (idempotent; again in a forked child)."""
    from . import holds

    owner_name = holds.owner()
    if _state["owner"] == owner_name:
        return
    _state.update(seconds=float(seconds), owner=owner_name, stopped=threading.Event())
    with connected():
        renew(owner_name)
    threading.Thread(target=_beat, args=(holds.owner, holds.reclaim_orphaned_holds), name="lease-heartbeat",
                     daemon=True).start()


def stop_heartbeat() -> None:
    """Stop renewing (the lease itself is dropped by `release`)."""
    if _state["stopped"] is not None:
        _state["stopped"].set()
