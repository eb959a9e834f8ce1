"""HTTP resources: one flask-smorest blueprint per resource group."""
from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    """Register every blueprint on the Api."""
    from . import admin, chat, messages, responses, runtime

    for module in (runtime, responses, chat, messages, admin):
        api.register_blueprint(module.blp)
