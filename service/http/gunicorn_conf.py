"""Production serving: gevent workers; bind, workers and timeouts from the environment.

Installed with the package, so gunicorn starts from any folder:
`gunicorn -c python:service.http.gunicorn_conf 'service:create_app()'`; a checkout's
`gunicorn.conf.py` is this module (`gunicorn -c gunicorn.conf.py wsgi:app`).
"""
import os

bind = os.environ.get("ONEKEYLLM_BIND", os.environ.get("GUNICORN_BIND", "127.0.0.1:8000"))
workers = int(os.environ.get("ONEKEYLLM_WORKERS", os.environ.get("WEB_CONCURRENCY", "2")))
# gevent's own WSGI server in each worker: measured 20 % more requests/s than gunicorn's gevent
# worker (bench/README.md), with the same cooperative sockets; with the handler of `onekeyllm serve`
# (service/http/wsgi_server.py), which refuses ambiguous framing and slow clients.
worker_class = os.environ.get("ONEKEYLLM_WORKER_CLASS", "service.http.gunicorn_worker.StrictGeventPyWSGIWorker")
worker_connections = int(os.environ.get("ONEKEYLLM_WORKER_CONNECTIONS", "2000"))
# streams may stay open for as long as the upstream takes: gevent workers heartbeat
# independently of requests, so this only bounds a worker that stopped answering.
timeout = int(os.environ.get("ONEKEYLLM_WORKER_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("ONEKEYLLM_GRACEFUL_TIMEOUT", "30"))
keepalive = int(os.environ.get("ONEKEYLLM_KEEPALIVE", "5"))
accesslog = os.environ.get("ONEKEYLLM_ACCESS_LOG", None)
errorlog = "-"
preload_app = False
if os.environ.get("ONEKEYLLM_LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn's own lines as JSON too; the app's (and its access lines) go through the root logger it configures
    _json_handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logconfig_dict = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"json": {"()": "service.observability.logs.JsonFormatter"}},
        "handlers": {"console": _json_handler, "error_console": _json_handler},
        "root": {"level": "INFO", "handlers": []},
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
                    "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False}},
    }
# gunicorn 27's control socket is one path per user, shared by every instance on the machine
control_socket_disable = True


def on_starting(server):
    """Create or upgrade the schema, and print a generated admin token once, before the workers start.

    It runs `onekeyllm init` in a child process: the master itself never imports the app, so the
    gevent workers it forks start from a clean, unpatched interpreter.
    """
    import subprocess
    import sys

    from service.observability.metrics_dir import make_instance_dir

    make_instance_dir()  # this instance's metrics directory, inherited by every worker it forks
    done = subprocess.run([sys.executable, "-m", "service.cli", "init"], check=False)
    if done.returncode != 0:  # `init` said why in one line on stderr; no traceback of ours after it
        raise SystemExit(done.returncode)


def post_worker_init(worker):
    """SIGTERM in a worker: its calls in flight finish within the graceful timeout, the rest are ended and
    settled (status 499, holds given back) before the master's SIGKILL (service/http/draining.py)."""
    from service.http.draining import watch_worker

    watch_worker(worker, graceful_timeout)
def child_exit(server, worker):
    """A worker is gone: its in-flight gauge goes with it (its counters stay in the instance's totals)."""
    from service.observability.metrics_dir import forget_worker

    forget_worker(worker.pid)


def on_exit(server):
    """The instance stops: its metrics directory goes."""
    from service.observability.metrics_dir import remove_instance_dir

    remove_instance_dir()
