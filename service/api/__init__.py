"""HTTP resources: one flask-smorest blueprint per resource group."""
from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    """Register every blueprint on the Api."""
    from . import (
        admin,
        admin_users,
        auth_routes,
        chat,
        console,
        conversations,
        files,
        messages,
        operations,
        responses,
        runtime,
        usage,
        usage_page,
    )
    from .openapi import either_properties

    api.ma_plugin.converter.add_attribute_function(either_properties)

    for module in (runtime, responses, chat, messages, admin, auth_routes, usage, conversations, files, usage_page,
                   admin_users, console, operations):
        api.register_blueprint(module.blp)
