"""OpenAI Chat Completions."""
from flask.views import MethodView

from .blueprint import Blueprint
from .gateway_http import request_body_doc
from .gateway_schemas import ChatCompletionSchema, ChatRequestSchema
from .gateway_wsgi import flask_view

blp = Blueprint("chat", __name__, url_prefix="/v1", description="OpenAI Chat Completions")


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.doc(**request_body_doc(ChatRequestSchema, ChatCompletionSchema))
    def post(self):
        """Create a chat completion (SSE when `stream` is true)."""
        return flask_view("chat")
