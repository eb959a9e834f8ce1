"""The one error the notebook side raises: a gateway call that did not succeed, told in one line."""
from __future__ import annotations

from typing import Optional

import requests

HINTS = {
    401: "check ONEKEYLLM_API_KEY or run %onekey config --key sk-lazytech-…",
    402: "the key's budget is spent; ask an admin to raise it",
    429: "the key's rate limit was hit; wait a moment and retry",
}


class GatewayError(Exception):
    """A failed gateway call; IPython shows it as one line, never a traceback."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        prefix = f"OneKeyLLM error {self.status}" if self.status else "OneKeyLLM error"
        hint = HINTS.get(self.status or 0)
        return f"{prefix}: {self.message}" + (f" ({hint})" if hint else "")

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of a traceback."""
        return [str(self)]


def error_from_response(response: requests.Response) -> GatewayError:
    """The error an HTTP answer carries, in the OpenAI envelope or whatever the server sent."""
    message, code = None, None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message, code = error.get("message"), error.get("code")
        elif isinstance(error, str):
            message = error
    if not message:
        text = " ".join(response.text.split())[:200]
        message = text or response.reason or "no details"
    return GatewayError(message, status=response.status_code, code=code)


def error_from_exception(base_url: str, exc: requests.RequestException) -> GatewayError:
    """A transport failure (gateway down, timeout, reset) as one line."""
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        return GatewayError(f"cannot reach the gateway at {base_url} (is it running?)")
    if isinstance(exc, requests.Timeout):
        return GatewayError(f"the gateway at {base_url} did not answer in time")
    return GatewayError(f"the call to {base_url} failed: {type(exc).__name__}")
