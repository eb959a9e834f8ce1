"""GET /console, the web console (SPEC §7): its static page and assets, and signing in and out of it.

Everything the console shows or changes goes through the JSON API every client uses (/v1/admin/*,
/v1/usage*, /v1/keys); the session cookie set here is what those routes accept in place of the admin
bearer or a user's JWT (accounts/sessions.py).
"""
from __future__ import annotations

from pathlib import Path

import marshmallow as ma
from flask import after_this_request, send_from_directory
from flask.views import MethodView
from marshmallow import fields, validate

from ..accounts.auth import is_admin_token
from ..accounts.sessions import (
    ADMIN,
    USER,
    Session,
    check_same_origin,
    clear_cookie,
    close_session,
    current_session,
    open_session,
    set_cookie,
)
from ..api_error import ApiError
from .admin_schemas import Email
from .auth_routes import log_in_by_code
from .blueprint import Blueprint

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "static" / "console"
# no inline script or style anywhere in the console, and nothing from another origin
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HTML_DOC = {"200": {"description": "The console's single HTML page (its script signs in and calls the JSON API).",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}

blp = Blueprint("console", __name__, description="The web console: its page, and signing in and out")


class SignInSchema(ma.Schema):
    """Either the admin token, or a user's email with the code mailed by POST /v1/auth/email/send."""

    admin_token = fields.String(load_only=True, validate=validate.Length(min=1, max=500))
    email = Email(validate=validate.Length(max=320))
    code = fields.String(load_only=True, validate=validate.Regexp(
        r"^\s*[0-9]{6}\s*$", error="must be the 6-digit code from the mail"))

    @ma.validates_schema
    def _one_way(self, data, **kwargs):
        if "admin_token" in data:
            if "email" in data or "code" in data:
                raise ma.ValidationError("send either `admin_token`, or `email` and `code`")
        elif "email" not in data or "code" not in data:
            raise ma.ValidationError("send `admin_token`, or `email` and `code`")


class SessionSchema(ma.Schema):
    object = fields.String()
    kind = fields.String(metadata={"description": "`admin` or `user`"})
    email = fields.String(allow_none=True)
    expires_at = fields.Integer()
    csrf_token = fields.String(metadata={"description": "send it as `X-CSRF-Token` with every state-changing call"})


class SignedOutSchema(ma.Schema):
    object = fields.String()
    deleted = fields.Boolean()


def _view(session: Session) -> dict:
    return {"object": "console.session", "kind": session.kind, "email": session.email,
            "expires_at": int(session.expires_at), "csrf_token": session.csrf_token}


def _page(name: str, mimetype: str | None = None, max_age: int = 300):
    response = send_from_directory(CONSOLE_DIR, name, mimetype=mimetype, max_age=max_age)
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    return response


@blp.route("/console")
class ConsolePage(MethodView):
    @blp.doc(security=[], responses=HTML_DOC)
    def get(self):
        """The console page (static HTML; no external asset)."""
        return _page("index.html", mimetype="text/html", max_age=0)


@blp.route("/console/<path:asset>")
class ConsoleAsset(MethodView):
    @blp.doc(security=[], responses={"200": {"description": "A script, style sheet or vendored library."}})
    def get(self, asset):
        """One of the console's static files."""
        return _page(asset)


@blp.route("/v1/console/session")
class ConsoleSessionItem(MethodView):
    @blp.doc(security=[])
    @blp.response(200, SessionSchema)
    def get(self):
        """Who is signed in, and the session's CSRF token (401 when nobody is)."""
        session = current_session()
        if session is None:
            raise ApiError(401, "Not signed in.", code="not_signed_in")
        return _view(session)

    @blp.doc(security=[])
    @blp.arguments(SignInSchema)
    @blp.response(200, SessionSchema)
    def post(self, body):
        """Sign in with the admin token, or with an email and its mailed login code; sets the session cookie."""
        check_same_origin()  # a page elsewhere must not sign a browser in (login CSRF)
        if "admin_token" in body:
            if not is_admin_token(body["admin_token"]):
                raise ApiError(401, "Invalid admin token.", code="invalid_api_key")
            session, token = open_session(ADMIN)
        else:
            log_in_by_code(body["email"], body["code"].strip())
            session, token = open_session(USER, body["email"])

        @after_this_request
        def _cookie(response):
            set_cookie(response, session, token)
            return response

        return _view(session)

    @blp.response(200, SignedOutSchema)
    def delete(self):
        """Sign out: the session ends on the server, and the cookie is cleared."""
        session = current_session()
        if session is not None:
            close_session(session)

        @after_this_request
        def _cookie(response):
            clear_cookie(response)
            return response

        return {"object": "console.session", "deleted": True}
