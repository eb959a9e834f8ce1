"""The admin API: accounts, models and keys (admin bearer)."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from ..accounts import registry
from ..accounts.auth import require_admin
from ..observability.diagnostics import process_diagnostics
from ..storage.models import Account, ApiKey, CatalogModel
from .admin_schemas import (
    AccountInSchema,
    AccountListSchema,
    AccountOutSchema,
    AccountPatchSchema,
    DeletedSchema,
    DiagnosticsSchema,
    KeyInSchema,
    KeyListSchema,
    KeyOutSchema,
    KeyPatchSchema,
    KeySearchArgsSchema,
    ModelInSchema,
    ModelListAdminSchema,
    ModelOutSchema,
    ModelPatchSchema,
)
from .blueprint import Blueprint
from .pagination import list_page
from .schemas import ListArgsSchema

blp = Blueprint("admin", __name__, url_prefix="/v1/admin", description="Accounts, models and keys (admin token)")


@blp.before_request
def _admin_only():
    require_admin()


# ---------------------------------------------------------------- accounts
@blp.route("/accounts")
class Accounts(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, AccountListSchema)
    def get(self, args):
        """List upstream accounts (credentials redacted)."""
        return list_page(Account.select(), Account, args, registry.account_view)

    @blp.arguments(AccountInSchema)
    @blp.response(201, AccountOutSchema)
    def post(self, values):
        """Register an upstream account."""
        return registry.account_view(registry.create_account(values))


@blp.route("/accounts/<account_id>")
class AccountItem(MethodView):
    @blp.response(200, AccountOutSchema)
    def get(self, account_id):
        """One account, by id or name."""
        return registry.account_view(registry.get_account(account_id))

    @blp.arguments(AccountPatchSchema)
    @blp.response(200, AccountOutSchema)
    def patch(self, values, account_id):
        """Change an account; fields not sent are kept."""
        return registry.account_view(registry.update_account(registry.get_account(account_id), values))

    @blp.response(200, DeletedSchema)
    def delete(self, account_id):
        """Remove an account."""
        return registry.delete_account(registry.get_account(account_id))


# ---------------------------------------------------------------- models
@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, ModelListAdminSchema)
    def get(self, args):
        """List catalog models with their prices."""
        return list_page(CatalogModel.select(), CatalogModel, args, registry.model_view)

    @blp.arguments(ModelInSchema)
    @blp.response(201, ModelOutSchema)
    def post(self, values):
        """Add a model to the catalog."""
        return registry.model_view(registry.save_model(values))


@blp.route("/models/<path:model_id>")
class ModelItem(MethodView):
    @blp.response(200, ModelOutSchema)
    def get(self, model_id):
        """One catalog model."""
        return registry.model_view(registry.get_model(model_id))

    @blp.arguments(ModelPatchSchema)
    @blp.response(200, ModelOutSchema)
    def patch(self, values, model_id):
        """Change a model's metadata or prices."""
        return registry.model_view(registry.save_model(values, registry.get_model(model_id)))

    @blp.response(200, DeletedSchema)
    def delete(self, model_id):
        """Remove a model from the catalog."""
        return registry.delete_model(registry.get_model(model_id))


# ---------------------------------------------------------------- keys
@blp.route("/keys")
class Keys(MethodView):
    @blp.arguments(KeySearchArgsSchema, location="query")
    @blp.response(200, KeyListSchema)
    def get(self, args):
        """List live keys (never their values); `search` matches a part of the name, id or owner's email."""
        query = registry.live_keys()
        if args.get("search"):
            text = args["search"]
            query = query.where(ApiKey.name.contains(text) | ApiKey.id.contains(text) | ApiKey.email.contains(text))
        return list_page(query, ApiKey, args, registry.key_view)

    @blp.arguments(KeyInSchema)
    @blp.response(201, KeyOutSchema)
    def post(self, values):
        """Create a key; the answer carries the plaintext `key`, this once only."""
        row, plaintext = registry.create_key(current_app.extensions["onekeyllm"].secrets.pepper, values)
        return registry.key_view(row, plaintext)


@blp.route("/keys/<key_id>")
class KeyItem(MethodView):
    @blp.response(200, KeyOutSchema)
    def get(self, key_id):
        """One key."""
        return registry.key_view(registry.get_key(key_id))

    @blp.arguments(KeyPatchSchema)
    @blp.response(200, KeyOutSchema)
    def patch(self, values, key_id):
        """Change budget, name, expiry, models, rpm or `disabled`."""
        return registry.key_view(registry.update_key(registry.get_key(key_id), values))

    @blp.response(200, DeletedSchema)
    def delete(self, key_id):
        """Revoke a key: it stops working at once."""
        return registry.revoke_key(registry.get_key(key_id))


# ---------------------------------------------------------------- diagnostics
@blp.route("/diagnostics")
class Diagnostics(MethodView):
    @blp.response(200, DiagnosticsSchema)
    def get(self):
        """This worker's live greenlets, open file descriptors and database pool: for leak checks."""
        return process_diagnostics()
