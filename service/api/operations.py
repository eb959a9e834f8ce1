"""What a load balancer and Prometheus ask: readiness (`GET /v1/health`) and metrics (`GET /metrics`)."""
from __future__ import annotations

import hmac
import logging

import marshmallow as ma
from flask import Response, current_app
from flask.views import MethodView

from ..accounts.auth import bearer_token, require_admin
from ..api_error import ApiError
from ..observability.metrics import exposition
from ..storage.db import check_database, connected
from ..storage.files import store_for
from .blueprint import Blueprint

log = logging.getLogger("onekeyllm.health")
blp = Blueprint("operations", __name__, url_prefix="", description="Readiness and metrics")
# no connection held for these requests: readiness and metrics take their own, so that a database that is gone
# is their answer rather than their error; liveness (`/v1/ping`, api/runtime.py) touches nothing
OWN_CONNECTION = frozenset({"/v1/health", "/metrics", "/v1/ping"})
UNAVAILABLE = "unavailable"


class HealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"description": "`ok`, or `unavailable` when a part is"})
    database = ma.fields.String(metadata={"description": "`ok` or `unavailable`"})
    files = ma.fields.String(metadata={"description": "`ok` or `unavailable`"})


def _database_answers() -> bool:
    try:
        check_database()
        return True
    except Exception as error:  # noqa: BLE001 - whatever the driver raises, the database did not answer
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        log.warning("readiness: the database did not answer: %s %s", type(error).__name__, reason)
        return False


def _files_answer() -> bool:
    try:
        store_for(current_app.extensions["onekeyllm"].settings).check()
        return True
    except ApiError:  # the store logged why
        return False


@blp.route("/v1/health")
class Health(MethodView):
    @blp.doc(security=[], responses={"503": {"description": "The database or the file store does not answer",
                                             "content": {"application/json": {"schema": HealthSchema}}}})
    @blp.response(200, HealthSchema)
    def get(self):
        """Readiness: 200 when the database and the file store answer, else 503 naming the part that does not."""
        parts = {"database": "ok" if _database_answers() else UNAVAILABLE,
                 "files": "ok" if _files_answer() else UNAVAILABLE}
        ready = all(state == "ok" for state in parts.values())
        body = {"status": "ok" if ready else UNAVAILABLE, **parts}
        return (body, 200) if ready else (body, 503)


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(responses={"200": {"description": "Prometheus text format",
                                "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def get(self):
        """Every worker's metrics of this instance (bearer: ONEKEYLLM_METRICS_TOKEN, or the admin token)."""
        token = current_app.extensions["onekeyllm"].settings.metrics_token
        sent = bearer_token()
        if not (token and sent and hmac.compare_digest(sent.encode(), token.encode())):
            with connected():
                require_admin()
        return Response(exposition(), mimetype="text/plain; version=0.0.4; charset=utf-8")
