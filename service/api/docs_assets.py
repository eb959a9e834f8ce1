"""The Swagger UI assets of `/docs`, served by the gateway itself from the `swagger-ui-bundle` package.

No CDN: the page works offline, and the scripts on the origin where an admin pastes the token are the
pinned ones installed with the gateway, never whatever a CDN serves that day.
"""
from __future__ import annotations

from flask import Blueprint, Flask
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"  # flask-smorest's OPENAPI_SWAGGER_UI_URL: the page loads `<this>swagger-ui-bundle.js`

blp = Blueprint("docs_assets", __name__, static_folder=swagger_ui_path, static_url_path=ASSETS_URL.rstrip("/"))


def register_docs_assets(app: Flask) -> None:
    """Serve the bundled Swagger UI files under ASSETS_URL."""
    app.register_blueprint(blp)
