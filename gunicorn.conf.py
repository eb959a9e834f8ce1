"""Production serving from a checkout: `gunicorn -c gunicorn.conf.py wsgi:app`.

The settings live in the package (service/http/gunicorn_conf.py), so that an installed gateway starts the
same way from any folder: `gunicorn -c python:service.http.gunicorn_conf 'service:create_app()'`.
"""
from service.http.gunicorn_conf import *  # noqa: F401,F403
