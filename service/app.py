"""The Flask application: settings, database, blueprints and the error handlers, wired once."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from flask import Flask, request
from flask_smorest import Api

from . import __version__
from .accounts.auth import Secrets
from .api.docs_assets import ASSETS_URL, register_docs_assets
from .api.openapi import ErrorResponsesPlugin
from .api.schemas import ErrorSchema
from .config import Settings
from .http.access import install_access
from .http.headers import install_headers
from .http.request_guard import reject_nul_in_url
from .observability.logs import configure_logging
from .storage.prepared import ServerPrepared


@dataclass
class AppState:
    """What every request needs, built once per process."""

    settings: Settings
    secrets: Secrets
    generated_admin_token: Optional[str] = None
    extras: dict = field(default_factory=dict)


class GatewayApi(Api):
    """flask-smorest's Api, with errors rendered and documented in our envelopes (400, not 422)."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        from .http.errors import handle_http_exception

        return handle_http_exception(error)


def build_app(config: Optional[dict] = None) -> Flask:
    """The app: settings from the environment, overridden by `config`."""
    from .api import register_blueprints
    from .api.gateway_http import CONNECTION_PER_PHASE
    from .api.operations import OWN_CONNECTION
    from .bootstrap import bootstrap
    from .http import errors
    from .storage import db

    def open_request_connection() -> None:
        """A pooled connection for the request, except for the gateway calls: they take one per short
        database phase, so that a call waiting minutes on its upstream holds none (api/gateway_http.py)."""
        if request.method == "POST" and request.path in CONNECTION_PER_PHASE:
            return
        if request.path in OWN_CONNECTION:  # readiness and metrics take theirs (and tell when there is none)
            return
        db.open_connection()

    settings = Settings.from_env().override(config)
    configure_logging(settings.log_format)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="OneKeyLLM", API_VERSION=__version__, OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL=ASSETS_URL,
        MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.json.compact = True

    db.init_database(settings.database_url)
    ServerPrepared.enabled = settings.pg_prepared
    secrets, admin_token = bootstrap(settings)
    app.extensions["onekeyllm"] = AppState(settings=settings, secrets=secrets, generated_admin_token=admin_token)
    if admin_token:  # the first start of a server: shown once, never logged
        print("Admin token (shown once, store it now):", admin_token, flush=True)

    install_access(app)
    app.before_request(reject_nul_in_url)
    app.before_request(open_request_connection)
    app.teardown_request(db.close_connection)

    api = GatewayApi(app, spec_kwargs={"components": {"securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"}}}, "security": [{"bearer": []}],
        "extra_plugins": [ErrorResponsesPlugin()]})
    errors.register_error_handlers(app)
    install_headers(app, settings.cors_origins)
    from .api.gateway_wsgi import lean_gateway
    from .http import header_block
    from .http.draining import track

    header_block.install()  # this process's header blocks, requests' and upstream answers', read without email

    # the gateway calls are served before Flask's request machinery (api/gateway_wsgi.py); a stop knows which
    # requests are in flight (http/draining.py)
    app.wsgi_app = track(lean_gateway(app.wsgi_app, app.extensions["onekeyllm"]))
    if settings.trusted_proxies:
        # the client's address as the last `trusted_proxies` proxies saw it (per-IP limits), never more
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)
    register_blueprints(api)
    register_docs_assets(app)
    from .gateway.leases import start_heartbeat

    start_heartbeat(settings.lease_seconds)  # before the first hold: others tell by it whether this process runs
    return app
