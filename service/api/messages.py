"""Anthropic Messages (also `x-api-key` auth)."""
from flask import current_app
from flask.views import MethodView

from ..accounts.auth import require_key
from ..api_error import ApiError
from ..gateway.count_tokens import count_tokens
from .blueprint import Blueprint
from .gateway_http import json_body, request_body_doc, run

blp = Blueprint("messages", __name__, url_prefix="/v1", description="Anthropic Messages")

MESSAGE_FIELDS = {"model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": {
                      "type": "object", "required": ["role", "content"], "properties": {
                          "role": {"type": "string", "enum": ["user", "assistant"]},
                          "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}},
                  "system": {}, "tools": {"type": "array", "items": {"type": "object"}},
                  "stream": {"type": "boolean"}, "temperature": {"type": "number"}}


@blp.route("/messages")
class Messages(MethodView):
    @blp.doc(**request_body_doc(["model", "messages", "max_tokens"], {**MESSAGE_FIELDS,
                                                                      "max_tokens": {"type": "integer",
                                                                                     "minimum": 1}}))
    def post(self):
        """Create a message (SSE when `stream` is true)."""
        return run("anthropic")


@blp.route("/messages/count_tokens")
class CountTokens(MethodView):
    @blp.doc(**request_body_doc(["model", "messages"], MESSAGE_FIELDS, stream=False))
    def post(self):
        """Count a request's input tokens: the upstream's count on an Anthropic account, else an estimate."""
        key = require_key()
        body = json_body()
        if key.models and body.get("model") not in key.models:
            raise ApiError(403, "This key may not use that model.", param="model", type="permission_error")
        settings = current_app.extensions["onekeyllm"].settings
        return {"input_tokens": count_tokens(body, settings)}
