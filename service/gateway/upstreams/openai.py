"""OpenAI and OpenAI-compatible servers (vLLM, Ollama, llama.cpp…), over Chat or Responses."""
from __future__ import annotations

from typing import Optional

from ... import json_codec
from ..catalog import AccountInfo
from ..codecs import openai_chat, openai_responses
from .http import HttpClient, Timeouts, UpstreamResponse, client_for


class OpenAIUpstream:
    provider = "openai"

    def __init__(self, account: AccountInfo, timeouts: Timeouts):
        self.account = account
        self.wire_name = "responses" if account.api == "responses" else "chat"
        self.wire = openai_responses if self.wire_name == "responses" else openai_chat
        self.path = "/responses" if self.wire_name == "responses" else "/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if account.api_key:
            headers["Authorization"] = f"Bearer {account.api_key}"
        fingerprint = (account.base_url, account.api_key, timeouts.connect, timeouts.read)
        self.http: HttpClient = client_for(account.id, fingerprint,
                                           lambda: HttpClient(account.base_url, headers, timeouts))

    def send(self, body: dict, stream: bool, headers: Optional[dict] = None, query: str = "") -> UpstreamResponse:
        """POST a body in this account's wire format."""
        data = json_codec.dumps(body)
        return self.http.request("POST", self.path, body=data, headers=headers, stream=stream)

    def probe(self) -> UpstreamResponse:
        """A cheap call that proves the account works: list its models."""
        return self.http.request("GET", "/models", read_timeout=15)

    def count_tokens(self, body: dict) -> Optional[int]:
        return None
