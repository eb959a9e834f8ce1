"""Upstream clients: `upstream_for(account)` gives the client for one provider account."""
from __future__ import annotations

from ..catalog import AccountInfo
from .http import Timeouts


def upstream_for(account: AccountInfo, timeouts: Timeouts):
    """An OpenAIUpstream, AnthropicUpstream or EchoUpstream for `account`."""
    if account.provider == "anthropic":
        from .anthropic import AnthropicUpstream

        return AnthropicUpstream(account, timeouts)
    if account.provider == "echo":
        from .echo import EchoUpstream

        return EchoUpstream(account)
    from .openai import OpenAIUpstream

    return OpenAIUpstream(account, timeouts)
