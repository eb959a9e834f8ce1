"""HTTP resources: one flask-smorest blueprint per resource group."""
from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    """Register every blueprint on the Api."""
    from . import admin, auth_routes, chat, conversations, files, messages, operations, responses, runtime, usage, usage_page
    from .admin_users import blp as admin_users_blp

    for module in (runtime, responses, chat, messages, admin, auth_routes, usage, conversations, files, usage_page,
                   operations):
        api.register_blueprint(module.blp)
    api.register_blueprint(admin_users_blp)
