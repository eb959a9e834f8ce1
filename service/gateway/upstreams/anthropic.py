"""Anthropic's Messages API."""
from __future__ import annotations

from typing import Optional

from ... import json_codec
from ..catalog import AccountInfo
from ..codecs import anthropic as anthropic_codec
from .http import HttpClient, Timeouts, UpstreamResponse, client_for

DEFAULT_VERSION = "2023-06-01"
FORWARDED_HEADERS = ("anthropic-version", "anthropic-beta")


class AnthropicUpstream:
    provider = "anthropic"
    wire_name = "anthropic"
    wire = anthropic_codec

    def __init__(self, account: AccountInfo, timeouts: Timeouts):
        self.account = account
        headers = {"Content-Type": "application/json", "anthropic-version": DEFAULT_VERSION,
                   "Accept": "application/json, text/event-stream"}
        if account.api_key:
            headers["x-api-key"] = account.api_key
        fingerprint = (account.base_url, account.api_key, timeouts.connect, timeouts.read)
        self.http: HttpClient = client_for(account.id, fingerprint,
                                           lambda: HttpClient(account.base_url, headers, timeouts))

    def send(self, body: dict, stream: bool, headers: Optional[dict] = None, query: str = "") -> UpstreamResponse:
        """POST /v1/messages (the client's anthropic-version and -beta headers are forwarded)."""
        data = json_codec.dumps(body)
        path = "/v1/messages" + (f"?{query}" if query else "")
        return self.http.request("POST", path, body=data, headers=headers, stream=stream)

    def probe(self) -> UpstreamResponse:
        return self.http.request("GET", "/v1/models", read_timeout=15)

    def count_tokens(self, body: dict, headers: Optional[dict] = None) -> Optional[int]:
        """The upstream's own count for a Messages body."""
        data = json_codec.dumps(body)
        answer = self.http.request("POST", "/v1/messages/count_tokens", body=data, headers=headers, read_timeout=30)
        value = answer.json().get("input_tokens")
        return int(value) if isinstance(value, int) else None
