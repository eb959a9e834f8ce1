"""Two instances through PgBouncer in transaction mode (statements not prepared on the server:
ONEKEYLLM_PG_PREPARED=0): the budget, rpm and account-limit checks of tests/test_fleet.py again.

The test starts its own pgbouncer (Debian's package; .ci/run installs it) on a free port, with a
configuration it writes, in front of the PostgreSQL server the suite runs on.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
from conftest import free_port, fresh_database_url, is_postgres
from instances import (
    check_an_account_limit_holds_over_both,
    check_concurrent_calls_never_overspend,
    check_rpm_is_exact_across_instances,
    start_instance,
)

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
POOL_SIZE = 10  # server connections per database and user: less than the instances' pools add up to


def write_config(folder: Path, port: int, server) -> Path:
    """A pgbouncer.ini for every database of `server` (the parsed URL of PostgreSQL), transaction pooling."""
    config = folder / "pgbouncer.ini"
    config.write_text(f"""[databases]
* = host={server.hostname or '127.0.0.1'} port={server.port or 5432} user={server.username or 'postgres'}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 200
ignore_startup_parameters = extra_float_digits,options
""")
    return config


@pytest.fixture(scope="module")
def bouncer(tmp_path_factory):
    """A pgbouncer of this test's own; yields its port."""
    if not is_postgres():
        pytest.skip("PgBouncer pools PostgreSQL connections")
    if not os.path.exists(PGBOUNCER):
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    folder = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    config = write_config(folder, port, urlparse(os.environ["ONEKEYLLM_DATABASE_URL"]))
    log = folder / "pgbouncer.log"
    # pgbouncer will not run as root: it reads its configuration, then runs as postgres, logging to stderr
    process = subprocess.Popen([PGBOUNCER, "-u", "postgres", str(config)], stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT)
    import psycopg2

    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
            break
        except psycopg2.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not start: " + (log.read_text() if log.exists() else "")) from None
            time.sleep(0.1)
    yield port
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def pair(tmp_path_factory, bouncer):
    """Instance A and instance B (in its own namespaces) on one database, both through the pgbouncer."""
    tmp = tmp_path_factory.mktemp("bounced")
    direct = urlparse(fresh_database_url(tmp, "bounced"))
    through = urlunparse(direct._replace(netloc=f"{direct.username or 'postgres'}@127.0.0.1:{bouncer}"))
    token = "sk-admin-bounced-" + uuid.uuid4().hex
    env = {"ONEKEYLLM_PG_PREPARED": "0"}
    a = start_instance(tmp, "a", through, token, extra_env=env)
    try:
        b = start_instance(tmp, "b", through, token, namespace="bounced-b", extra_env=env)
    except Exception:
        a.stop()
        raise
    yield a.server, b.server
    b.stop()
    a.stop()


def test_concurrent_calls_through_pgbouncer_never_overspend(pair, upstream):
    check_concurrent_calls_never_overspend(pair, upstream)


def test_rpm_through_pgbouncer_is_exact_across_instances(pair, upstream):
    check_rpm_is_exact_across_instances(pair, upstream)


def test_an_account_limit_through_pgbouncer_holds_over_both(pair, upstream):
    check_an_account_limit_holds_over_both(pair, upstream)
