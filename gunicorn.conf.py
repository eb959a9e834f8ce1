"""Production serving: gevent workers; bind, workers and timeouts from the environment."""
import os

bind = os.environ.get("ONEKEYLLM_BIND", os.environ.get("GUNICORN_BIND", "127.0.0.1:8000"))
workers = int(os.environ.get("ONEKEYLLM_WORKERS", os.environ.get("WEB_CONCURRENCY", "2")))
worker_class = "gevent"
worker_connections = int(os.environ.get("ONEKEYLLM_WORKER_CONNECTIONS", "2000"))
# streams may stay open for as long as the upstream takes: gevent workers heartbeat
# independently of requests, so this only bounds a worker that stopped answering.
timeout = int(os.environ.get("ONEKEYLLM_WORKER_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("ONEKEYLLM_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("ONEKEYLLM_KEEPALIVE", "5"))
accesslog = os.environ.get("ONEKEYLLM_ACCESS_LOG", None)
errorlog = "-"
preload_app = False


def on_starting(server):
    """Create or upgrade the schema and print a generated admin token once, before the workers start."""
    from service.bootstrap import bootstrap
    from service.config import Settings
    from service.db import database, init_database

    settings = Settings.from_env()
    init_database(settings.database_url)
    _, token = bootstrap(settings)
    if token:
        print("Admin token (shown once, store it now):", token, flush=True)
    database.close()
    database.obj.close_all()  # the workers open their own pools after the fork
