"""OpenAI Chat Completions."""
from flask.views import MethodView

from .blueprint import Blueprint
from .gateway_http import request_body_doc, run

blp = Blueprint("chat", __name__, url_prefix="/v1", description="OpenAI Chat Completions")


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.doc(**request_body_doc(["model", "messages"], {
        "model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["role"], "properties": {
                "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
                "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}}},
        "stream": {"type": "boolean"}, "tools": {"type": "array", "items": {"type": "object"}},
        "max_tokens": {"type": "integer", "minimum": 1}, "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number"}, "stream_options": {"type": "object"}}))
    def post(self):
        """Create a chat completion (SSE when `stream` is true)."""
        return run("chat")
