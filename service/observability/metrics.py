"""The gateway's Prometheus metrics (SPEC §3), and their text for `GET /metrics`.

In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set, see metrics_dir.py) each worker writes its samples to
memory-mapped files and a scrape adds up every worker's; without it (an app built in a test) the samples
live in this process. Recording is a few dictionary look-ups and additions per request.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY

from .calls import CallTrace

log = logging.getLogger("onekeyllm.metrics")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 600)

REQUESTS = Counter("onekeyllm_requests", "Answered requests", ["route", "model", "account", "status"])
TOKENS = Counter("onekeyllm_tokens", "Tokens billed", ["model", "kind"])
COST = Counter("onekeyllm_cost_usd", "USD charged", ["model"])
UPSTREAM_SECONDS = Histogram("onekeyllm_upstream_seconds", "Time an upstream took to answer a call", ["account"],
                             buckets=LATENCY_BUCKETS)
FIRST_TOKEN_SECONDS = Histogram("onekeyllm_time_to_first_token_seconds",
                                "Streams: from the request's arrival to its first upstream event", ["model"],
                                buckets=LATENCY_BUCKETS)
INFLIGHT = Gauge("onekeyllm_inflight_requests", "Requests being served", multiprocess_mode="livesum")
TOKEN_KINDS = (("input", "input_tokens"), ("output", "output_tokens"), ("cached", "cached_tokens"),
               ("cache_write", "cache_creation_tokens"))


_CHILDREN: dict = {}  # (metric, label values) -> its child: prometheus_client's own look-up checks and locks


def _child(metric, *labels: str):
    child = _CHILDREN.get((metric, labels))
    if child is None:
        child = _CHILDREN[(metric, labels)] = metric.labels(*labels)
    return child


def record_request(route: str, status: int, trace: CallTrace) -> None:
    """Count one answered request, and what its settled call used."""
    entry = trace.entry
    if entry is None:
        _child(REQUESTS, route, "", "", str(status)).inc()
        return
    model, account = entry.model, entry.account or ""
    _child(REQUESTS, route, model, account, str(entry.status_code)).inc()
    usage = entry.usage
    for kind, name in TOKEN_KINDS:
        count = getattr(usage, name, 0)
        if count:
            _child(TOKENS, model, kind).inc(count)
    if trace.charged:
        _child(COST, model).inc(trace.charged / 1e9)
    upstream = trace.upstream_total()
    if upstream is not None and account:
        _child(UPSTREAM_SECONDS, account).observe(upstream)
    first = trace.first_token_seconds()
    if first is not None:
        _child(FIRST_TOKEN_SECONDS, model).observe(first)


class AccountCooling:
    """`onekeyllm_account_cooling{account}`: 1 while an account is cooled down, read from the database at
    the scrape (the shared truth, not one worker's view)."""

    def collect(self):
        from ..storage.db import connected
        from ..storage.models import Account

        family = GaugeMetricFamily("onekeyllm_account_cooling", "1 while the account is cooled down",
                                   labels=["account"])
        now = time.time()
        try:
            with connected():
                rows = list(Account.select(Account.name, Account.cooldown_until).tuples())
        except Exception:  # noqa: BLE001 - a database that is gone costs this gauge, not the whole scrape
            log.warning("metrics: the accounts' cooldowns could not be read", exc_info=False)
            return
        for name, until in rows:
            family.add_metric([name], 1.0 if until and until > now else 0.0)
        yield family


def exposition() -> bytes:
    """Every worker's metrics of this instance together, in the Prometheus text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry: Optional[CollectorRegistry] = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    cooling = CollectorRegistry()
    cooling.register(AccountCooling())
    return text + generate_latest(cooling)
