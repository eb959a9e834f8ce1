"""`/v1/messages/count_tokens`: the Anthropic upstream's own count, else the local estimate."""
from __future__ import annotations

from ..api_error import ApiError
from ..config import Settings
from .catalog import snapshot
from .codecs import CodecError, anthropic
from .router import order_accounts
from .tokens import estimate_request
from .upstreams import upstream_for
from .upstreams.http import Timeouts, UpstreamError

COUNT_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers")


def count_tokens(body: dict, settings: Settings) -> int:
    """Input tokens of a Messages body (without max_tokens)."""
    try:
        request = anthropic.parse_request({**body, "max_tokens": body.get("max_tokens") or 1})
    except CodecError as error:
        raise ApiError(400, error.message, param=error.param) from None
    accounts = snapshot().serving.get(request.model)
    if not accounts:
        raise ApiError(400, f"The model '{request.model}' is not available: no enabled account serves it.",
                       param="model", code="model_not_found")
    timeouts = Timeouts(settings.upstream_connect_timeout, min(settings.upstream_timeout, 30))
    for account in order_accounts([a for a in accounts if a.provider == "anthropic"]):
        upstream_body = {k: v for k, v in body.items() if k in COUNT_FIELDS}
        upstream_body["model"] = account.upstream_model(request.model)
        try:
            counted = upstream_for(account, timeouts).count_tokens(upstream_body)
        except UpstreamError:
            continue
        if counted is not None:
            return counted
    return estimate_request(request)
