"""GET /usage: the static page where a key holder sees the budget and recent requests (SPEC §7)."""
from __future__ import annotations

from pathlib import Path

from flask import send_from_directory
from flask.views import MethodView

from .blueprint import Blueprint

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page's script may talk to this origin only, so a pasted key can go nowhere else.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

blp = Blueprint("usage_page", __name__, description="The usage page for key holders")


@blp.route("/usage")
class UsagePage(MethodView):
    @blp.doc(security=[], responses={"200": {
        "description": "An HTML page: paste a key, see its budget and last requests (fetched by the browser).",
        "content": {"text/html": {"schema": {"type": "string"}}}}})
    def get(self):
        """The usage page (static HTML; the key never leaves the browser except to this gateway's API)."""
        response = send_from_directory(STATIC_DIR, "usage.html", mimetype="text/html", max_age=300)
        response.headers["Content-Security-Policy"] = PAGE_POLICY  # stricter than the app-wide page policy
        return response
