"""OpenAI Responses, with state kept by the gateway."""
from __future__ import annotations

from flask.views import MethodView

from ..accounts.auth import require_key
from ..gateway.state import get_stored
from ..storage.models import StoredResponse
from .admin_schemas import DeletedSchema
from .blueprint import Blueprint
from .conversations import ItemListSchema
from .gateway_http import request_body_doc
from .gateway_schemas import ResponseObjectSchema, ResponsesRequestSchema
from .gateway_wsgi import flask_view
from .schemas import ListArgsSchema

blp = Blueprint("responses", __name__, url_prefix="/v1", description="OpenAI Responses")


@blp.route("/responses")
class Responses(MethodView):
    @blp.doc(**request_body_doc(ResponsesRequestSchema, ResponseObjectSchema))
    def post(self):
        """Create a response (SSE when `stream` is true)."""
        return flask_view("responses")


@blp.route("/responses/<response_id>")
class ResponseItem(MethodView):
    @blp.doc(responses={"200": {"description": "The stored Response object",
                                "content": {"application/json": {"schema": ResponseObjectSchema}}}})
    def get(self, response_id):
        """A stored response of the calling key."""
        key = require_key()
        return get_stored(response_id, key.id).body

    @blp.response(200, DeletedSchema)
    def delete(self, response_id):
        """Delete a stored response."""
        key = require_key()
        row = get_stored(response_id, key.id)
        StoredResponse.delete().where(StoredResponse.id == row.id).execute()
        return {"id": row.id, "object": "response", "deleted": True}


@blp.route("/responses/<response_id>/input_items")
class ResponseInputItems(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, ItemListSchema)
    def get(self, args, response_id):
        """The input items of a stored response (newest first unless `order=asc`)."""
        key = require_key()
        items = list(get_stored(response_id, key.id).input_items or [])
        if args["order"] == "desc":
            items.reverse()
        after = args.get("after")
        if after:
            ids = [item.get("id") for item in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:args["limit"]]
        return {"object": "list", "data": page, "has_more": len(items) > len(page),
                "first_id": page[0].get("id") if page else None, "last_id": page[-1].get("id") if page else None}
