"""The Blueprint every resource group uses: flask-smorest's, reading JSON bodies the way the gateway routes do."""
from __future__ import annotations

from typing import Any

import flask
import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser

from ..api_error import ApiError
from ..http.request_guard import NotStrictJson, request_body, strict_json


class BodyParser(FlaskParser):
    """Reads a JSON body whatever its declared content type, like the gateway routes: a body that is not JSON
    (text, XML, a multipart form sent to a JSON route) is a 400, never silently taken for an empty one.
    Validation errors are 400s, as errors.py answers them and the OpenAPI document lists them. JSON is read
    strictly, as on the gateway routes: no NaN or Infinity, no lone surrogate (a stored conversation item is
    sent upstream later)."""

    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: flask.Request) -> Any:
        data = request_body()
        if not data:
            return core.missing
        try:
            return strict_json(data)
        except NotStrictJson as error:
            raise ApiError(400, error.message, param=error.param) from None


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = BodyParser()
