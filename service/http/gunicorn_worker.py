"""gunicorn's gevent pywsgi worker with the strict handler of wsgi_server.py (`worker_class` in gunicorn.conf.py)."""
from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from ..config import Settings
from .wsgi_server import strict_handler


class AccessLoggingHandler(PyWSGIHandler):
    """gunicorn's handler, which builds its access-log line (every request header parsed again, dates made)
    only when gunicorn's access log is on (ONEKEYLLM_ACCESS_LOG): the gateway writes its own access line."""

    def log_request(self):
        if getattr(self.server.log, "access_log_enabled", True):  # gunicorn < 23 has no such property
            super().log_request()


class StrictGeventPyWSGIWorker(GeventPyWSGIWorker):
    """Refuses ambiguous framing and slow clients like `onekeyllm serve` (gunicorn's access log kept)."""

    def init_process(self):
        settings = Settings.from_env()
        self.wsgi_handler = strict_handler(AccessLoggingHandler, settings.header_timeout, settings.body_timeout)
        super().init_process()

    def patch(self):
        super().patch()
        from .resolver import answer_numeric_hosts_at_once

        answer_numeric_hosts_at_once()
