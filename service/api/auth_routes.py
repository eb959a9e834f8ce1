"""Email login (a mailed code for a JWT) and, with that JWT, a user's own keys."""
from __future__ import annotations

import marshmallow as ma
from flask import current_app, request
from flask.views import MethodView
from marshmallow import fields, validate

from ..accounts import registry, users
from ..accounts.auth import bearer_token, issue_jwt, require_user_email, verify_jwt
from ..accounts.login import LoginPolicy, check_send_limits, discard_code, issue_code, redeem_code
from ..accounts.mailer import MailError, send_mail
from ..api_error import ApiError
from ..money import to_nano
from ..storage.models import ApiKey
from .admin_schemas import DeletedSchema, Email, KeyListSchema, KeyOutSchema, Money
from .blueprint import Blueprint
from .pagination import list_page
from .schemas import ListArgsSchema

blp = Blueprint("auth", __name__, url_prefix="/v1", description="Email login and a user's own keys (user JWT)")

MAIL_SUBJECT = "Your OneKeyLLM login code"


class EmailSendSchema(ma.Schema):
    email = Email(required=True, validate=validate.Length(max=320))


class EmailSentSchema(ma.Schema):
    object = fields.String()
    email = fields.String()


class TokenRequestSchema(ma.Schema):
    email = Email(required=True, validate=validate.Length(max=320))
    code = fields.String(required=True, validate=validate.Regexp(
        r"^[0-9]{6}$", error="must be the 6-digit code from the mail"))

    @ma.pre_load
    def _trim_code(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("code"), str):
            data = {**data, "code": data["code"].strip()}
        return data


class TokenSchema(ma.Schema):
    token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class VerifySchema(ma.Schema):
    valid = fields.Boolean()
    email = fields.String()
    expires_at = fields.Integer()


class UserKeyInSchema(ma.Schema):
    name = fields.String(load_default="", validate=validate.Length(max=200))
    budget_usd = Money(attribute="budget_nano", metadata={"description": "defaults to what the allowance has left"})


def _state():
    return current_app.extensions["onekeyllm"]


def _policy() -> LoginPolicy:
    settings = _state().settings
    return LoginPolicy(ttl_seconds=settings.login_code_ttl, sends_per_address=settings.login_sends_per_address,
                       sends_per_ip=settings.login_sends_per_ip, guesses_per_ip=settings.login_guesses_per_ip)


def _mail_text(code: str, ttl_seconds: int) -> str:
    minutes = max(1, ttl_seconds // 60)
    return (f"Your OneKeyLLM login code is {code}\n\n"
            f"It works once and expires in {minutes} minute{'s' if minutes != 1 else ''}.\n"
            "If you did not ask for it, ignore this message.\n")


# ---------------------------------------------------------------- login
def log_in_by_code(email: str, code: str) -> None:
    """Use up the mailed code (401 when wrong, used or expired) and grant a first login its self-service
    allowance; a JWT (below) or a console session (console.py) follows."""
    settings = _state().settings
    redeem_code(_state().secrets.pepper, email, code, request.remote_addr, _policy())
    users.grant_self_service(email, settings.login_domains, to_nano(settings.self_service_budget_usd),
                             settings.user_max_keys)


@blp.route("/auth/email/send")
class EmailSend(MethodView):
    @blp.doc(security=[])
    @blp.arguments(EmailSendSchema)
    @blp.response(200, EmailSentSchema)
    def post(self, body):
        """Mail a 6-digit login code; the same answer whether or not the address is known."""
        settings, pepper = _state().settings, _state().secrets.pepper
        if not settings.smtp_url:
            raise ApiError(503, "Email login is not available: no mail server is configured.",
                           code="mail_not_configured")
        email, policy = body["email"], _policy()
        check_send_limits(pepper, email, request.remote_addr, policy)
        issued = issue_code(pepper, email, request.remote_addr, policy)
        try:
            send_mail(settings.smtp_url, settings.mail_from, email, MAIL_SUBJECT,
                      _mail_text(issued.code, policy.ttl_seconds))
        except MailError:
            discard_code(issued)
            raise ApiError(503, "The login code could not be sent: the mail server is unavailable.",
                           code="mail_unavailable") from None
        return {"object": "auth.email_sent", "email": email}


@blp.route("/auth/token")
class Token(MethodView):
    @blp.doc(security=[])
    @blp.arguments(TokenRequestSchema)
    @blp.response(200, TokenSchema)
    def post(self, body):
        """Trade a mailed code for a bearer JWT (401 when the code is wrong, used or expired)."""
        log_in_by_code(body["email"], body["code"])
        token, lifetime = issue_jwt(body["email"])
        return {"token": token, "token_type": "bearer", "expires_in": lifetime}


@blp.route("/auth/verify")
class Verify(MethodView):
    @blp.response(200, VerifySchema)
    def get(self):
        """Check a JWT: signature, algorithm (HS256 only) and expiry."""
        token = bearer_token()
        if not token:
            raise ApiError(401, "Missing bearer token.", code="missing_api_key")
        claims = verify_jwt(token)
        return {"valid": True, "email": claims["email"], "expires_at": claims["exp"]}


# ---------------------------------------------------------------- a user's own keys
@blp.route("/keys")
class UserKeys(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, KeyListSchema)
    def get(self, args):
        """The caller's live keys (never their values)."""
        return list_page(users.live_keys(require_user_email()), ApiKey, args, registry.key_view)

    @blp.arguments(UserKeyInSchema)
    @blp.response(201, KeyOutSchema)
    def post(self, values):
        """Create a key of one's own within the user's allowance (403 without one or past it); the plaintext
        `key` is shown once."""
        email = require_user_email()
        row, plaintext = users.create_user_key(_state().secrets.pepper, email, values["name"],
                                               values.get("budget_nano"))
        return registry.key_view(row, plaintext)


@blp.route("/keys/<key_id>")
class UserKeyItem(MethodView):
    @blp.response(200, KeyOutSchema)
    def get(self, key_id):
        """One of the caller's keys; another user's is 404."""
        return registry.key_view(registry.get_key(key_id, email=require_user_email()))

    @blp.response(200, DeletedSchema)
    def delete(self, key_id):
        """Revoke one of the caller's keys: it stops working at once."""
        return registry.revoke_key(registry.get_key(key_id, email=require_user_email()))
