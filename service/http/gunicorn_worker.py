"""gunicorn's gevent pywsgi worker with the strict handler of wsgi_server.py (`worker_class` in gunicorn.conf.py)."""
from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

from ..config import Settings
from .wsgi_server import strict_handler


class StrictGeventPyWSGIWorker(GeventPyWSGIWorker):
    """Refuses ambiguous framing and slow clients like `onekeyllm serve` (gunicorn's access log kept)."""

    def init_process(self):
        settings = Settings.from_env()
        self.wsgi_handler = strict_handler(PyWSGIHandler, settings.header_timeout, settings.body_timeout)
        super().init_process()
