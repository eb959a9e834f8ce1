"""Runtime: ping and the model catalog (no bearer needed)."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import request
from flask.views import MethodView

from .. import __version__
from ..api_error import ApiError
from ..gateway.catalog import ModelInfo, snapshot
from .blueprint import Blueprint
from .schemas import ModelListSchema, ModelObjectSchema, PingSchema

blp = Blueprint("runtime", __name__, url_prefix="/v1", description="Health and the model catalog")


def _anthropic_shape() -> bool:
    return "anthropic-version" in request.headers


def _openai_model(model: ModelInfo) -> dict:
    return {"id": model.id, "object": "model", "created": model.created_at, "owned_by": model.owned_by or "onekeyllm"}


def _anthropic_model(model: ModelInfo) -> dict:
    created = datetime.fromtimestamp(model.created_at, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    shown = {"type": "model", "id": model.id, "display_name": model.display_name or model.id, "created_at": created,
             "lifecycle": "active"}  # a model the catalog serves is open to use
    limits = (("max_input_tokens", model.context_window), ("max_tokens", model.max_output_tokens))
    shown.update((name, value) for name, value in limits if value)
    return shown


@blp.route("/ping")
class Ping(MethodView):
    @blp.doc(security=[])
    @blp.response(200, PingSchema)
    def get(self):
        """Liveness and version."""
        return {"object": "ping", "status": "ok", "version": __version__}


@blp.route("/models")
class Models(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ModelListSchema)
    def get(self):
        """Models served by at least one enabled account (Anthropic shape with `anthropic-version`)."""
        models = snapshot().available_models()
        if _anthropic_shape():
            data = [_anthropic_model(m) for m in models]
            return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None}
        return {"object": "list", "data": [_openai_model(m) for m in models]}


@blp.route("/models/<path:model>")
class ModelItem(MethodView):
    @blp.doc(security=[])
    @blp.response(200, ModelObjectSchema)
    def get(self, model):
        """One served model; 404 when unknown."""
        snap = snapshot()
        if model not in snap.serving:
            raise ApiError(404, f"The model '{model}' does not exist or is not served here.", param="model",
                           code="model_not_found")
        info = snap.models[model]
        return _anthropic_model(info) if _anthropic_shape() else _openai_model(info)
