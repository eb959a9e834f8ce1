"""The admin API for users' allowances: what each email may put on the keys it creates itself (admin bearer)."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from ..accounts import users
from ..accounts.addresses import normalize_address
from ..accounts.auth import require_admin
from ..accounts.login import normalize_email
from ..storage.models import UserAllowance
from .admin_schemas import DeletedSchema, UserInSchema, UserListSchema, UserOutSchema, UserPatchSchema
from .blueprint import Blueprint
from .pagination import list_page
from .schemas import ListArgsSchema

blp = Blueprint("admin_users", __name__, url_prefix="/v1/admin", description="Users' allowances (admin token)")


@blp.before_request
def _admin_only():
    require_admin()


def _stored_form(email: str) -> str:
    """The form an address in the path is stored under (one we would refuse is simply not found)."""
    try:
        return normalize_address(email)
    except ValueError:
        return normalize_email(email)


def _default_max_keys() -> int:
    return current_app.extensions["onekeyllm"].settings.user_max_keys


@blp.route("/users")
class Users(MethodView):
    @blp.arguments(ListArgsSchema, location="query")
    @blp.response(200, UserListSchema)
    def get(self, args):
        """List users' allowances, with what each used and how many live keys it holds."""
        return list_page(UserAllowance.select(), UserAllowance, args, users.allowance_view)

    @blp.arguments(UserInSchema)
    @blp.response(201, UserOutSchema)
    def post(self, values):
        """Grant an email an allowance (409 when it has one)."""
        return users.allowance_view(users.create_allowance(values, _default_max_keys()))


@blp.route("/users/<email>")
class UserItem(MethodView):
    @blp.response(200, UserOutSchema)
    def get(self, email):
        """One email's allowance."""
        return users.allowance_view(users.get_allowance(_stored_form(email)))

    @blp.arguments(UserPatchSchema)
    @blp.response(200, UserOutSchema)
    def patch(self, values, email):
        """Change an allowance's budget, max_keys or used; fields not sent are kept."""
        return users.allowance_view(users.update_allowance(users.get_allowance(_stored_form(email)), values))

    @blp.response(200, DeletedSchema)
    def delete(self, email):
        """Remove an allowance: the user's live keys keep working; no new one can be created."""
        return users.delete_allowance(users.get_allowance(_stored_form(email)))
