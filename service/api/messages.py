"""Anthropic Messages (also `x-api-key` auth)."""
from flask import current_app
from flask.views import MethodView

from ..accounts.auth import require_key
from ..api_error import ApiError
from ..gateway.count_tokens import count_tokens
from ..http.request_guard import request_body
from .blueprint import Blueprint
from .gateway_http import json_body, request_body_doc
from .gateway_schemas import (
    AnthropicMessageAnswerSchema,
    CountTokensAnswerSchema,
    CountTokensRequestSchema,
    MessagesRequestSchema,
)
from .gateway_wsgi import flask_view

blp = Blueprint("messages", __name__, url_prefix="/v1", description="Anthropic Messages")

@blp.route("/messages")
class Messages(MethodView):
    @blp.doc(**request_body_doc(MessagesRequestSchema, AnthropicMessageAnswerSchema))
    def post(self):
        """Create a message (SSE when `stream` is true)."""
        return flask_view("anthropic")


@blp.route("/messages/count_tokens")
class CountTokens(MethodView):
    @blp.doc(**request_body_doc(CountTokensRequestSchema, CountTokensAnswerSchema, stream=False))
    def post(self):
        """Count a request's input tokens: the upstream's count on an Anthropic account, else an estimate."""
        key = require_key()
        body = json_body("count_tokens", request_body())
        if key.models and body.get("model") not in key.models:
            raise ApiError(403, "This key may not use that model.", param="model", type="permission_error")
        settings = current_app.extensions["onekeyllm"].settings
        return {"input_tokens": count_tokens(body, settings)}
