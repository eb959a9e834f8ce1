"""OneKeyLLM: one API key, every model. `create_app()` builds the Flask app."""
from __future__ import annotations

__version__ = "0.1.0"


def create_app(config: dict | None = None):
    """The app factory: settings from the environment, overridden by `config` (a dict of Settings fields)."""
    from .app import build_app

    return build_app(config)
