"""The directory where every worker of one instance writes its metrics (prometheus_client's multiprocess mode).

Made fresh per instance at its start, before any worker exists (so before prometheus_client is imported by
one): `onekeyllm serve` and gunicorn.conf.py's `on_starting` call `make_instance_dir`. No prometheus_client
import at module level: the gunicorn master loads this and must not fix prometheus_client's mode early.
"""
from __future__ import annotations

import os
import shutil
import tempfile

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def make_instance_dir() -> str:
    """A new, empty directory for this instance's metrics, named in the environment its workers inherit."""
    path = tempfile.mkdtemp(prefix="onekeyllm-metrics-")
    os.environ[VARIABLE] = path
    return path


def forget_worker(pid: int) -> None:
    """Drop a dead worker's live gauges (its in-flight count); its counters stay, so totals never go back."""
    if os.environ.get(VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def remove_instance_dir() -> None:
    """Remove this instance's directory as it exits."""
    path = os.environ.get(VARIABLE)
    if path and os.path.basename(path).startswith("onekeyllm-metrics-"):
        shutil.rmtree(path, ignore_errors=True)
