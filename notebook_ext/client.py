"""A small client for the gateway on `requests`: responses, usage and the catalog, as dicts or DataFrames."""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Union

import pandas as pd
import requests

from . import frames
from .attachments import compose
from .errors import GatewayError, error_from_exception, error_from_response
from .sse import iter_events

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
CONNECT_TIMEOUT = 10.0
PAGE_SIZE = 100
TimeLike = Union[int, float, str, datetime, pd.Timestamp, None]


class Reply(NamedTuple):
    """The final text of a response and the response object itself."""

    text: str
    response: dict


def root_url(url: str) -> str:
    """The gateway's root URL: no trailing slash, a trailing `/v1` tolerated and dropped."""
    url = url.strip().rstrip("/")
    return url[:-3].rstrip("/") if url.endswith("/v1") else url


def redact(key: Optional[str]) -> str:
    """A key as it may be shown: its prefix and last four characters."""
    if not key:
        return "(none)"
    return f"{key[:12]}...{key[-4:]}" if len(key) > 20 else "..." + key[-4:]


def to_unix(value: TimeLike) -> Optional[int]:
    """Unix seconds from a number, a datetime, an ISO date, or a look-back such as `7d`, `12h`, `30m`."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return int(float(text))
        match = re.fullmatch(r"(\d+)\s*([smhdw])", text)
        if match:
            seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
            return int(pd.Timestamp.now(tz="UTC").timestamp()) - seconds
        value = text
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.timestamp())


def output_text(response: dict) -> str:
    """The text of a response's message outputs (what the SDK calls `output_text`)."""
    parts = [part.get("text", "") for item in response.get("output") or [] if item.get("type") == "message"
             for part in item.get("content") or [] if part.get("type") == "output_text"]
    return "".join(parts)


def _list_data(body: Any) -> list:
    return body.get("data", []) if isinstance(body, dict) else list(body or [])


class Client:
    """The gateway seen from Python; arguments win over `ONEKEYLLM_BASE_URL` / `_API_KEY` / `_MODEL`."""

    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None,
                 model: Optional[str] = None, *, timeout: float = 600.0):
        self.base_url = root_url(base_url or os.environ.get("ONEKEYLLM_BASE_URL") or DEFAULT_BASE_URL)
        self.api_key = api_key or os.environ.get("ONEKEYLLM_API_KEY") or None
        self.model = model or os.environ.get("ONEKEYLLM_MODEL") or None
        self.timeout = timeout
        self.session = requests.Session()
        self.started_at = time.time()  # `session_frame()`: what this client (this notebook) has spent since
        self.response_ids: list[str] = []

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key={redact(self.api_key)!r}, model={self.model!r})"

    def configure(self, base_url: Optional[str] = None, api_key: Optional[str] = None,
                  model: Optional[str] = None) -> "Client":
        """Change the settings given; the others stay."""
        if base_url:
            self.base_url = root_url(base_url)
        if api_key:
            self.api_key = api_key
        if model:
            self.model = model
        return self

    # ------------------------------------------------------------------------------------------ transport

    def _headers(self, auth: bool) -> dict:
        if not auth:
            return {}
        if not self.api_key:
            raise GatewayError("no API key: set ONEKEYLLM_API_KEY or run %onekey config --key sk-lazytech-…")
        return {"Authorization": f"Bearer {self.api_key}"}

    def _call(self, method: str, path: str, *, auth: bool = True, stream: bool = False,
              **kwargs: Any) -> requests.Response:
        headers = self._headers(auth)
        try:
            response = self.session.request(method, self.base_url + path, headers=headers, stream=stream,
                                            timeout=(CONNECT_TIMEOUT, self.timeout), **kwargs)
        except requests.RequestException as exc:
            raise error_from_exception(self.base_url, exc) from None
        if response.status_code >= 400:
            error = error_from_response(response)
            response.close()
            raise error
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise GatewayError(f"{path} answered something that is not JSON", status=response.status_code) from None

    # ------------------------------------------------------------------------------------------ responses

    def respond(self, input: Union[str, list], *, model: Optional[str] = None,
                instructions: Optional[str] = None, previous_response_id: Optional[str] = None,
                stream: bool = True, on_delta: Optional[Callable[[str], None]] = None,
                values: Optional[Mapping[str, Any]] = None, images: Iterable[Any] = (),
                files: Iterable[Union[str, os.PathLike]] = (), **fields: Any) -> Reply:
        """Create a response; with `stream`, `on_delta` gets each piece of text as it arrives.

        With `values`, `{name}` in a text input is filled from it: a DataFrame or Series as a Markdown table,
        a matplotlib Figure attached as an image. `images` (Figures, PNG bytes, paths) are attached as
        `input_image` parts, `files` (paths) uploaded through /v1/files and attached as `input_file` parts.
        """
        model = model or self.model
        if not model:
            raise GatewayError("no model chosen: pass model=…, set ONEKEYLLM_MODEL or run %onekey config --model M")
        if isinstance(input, str) and (values is not None or images or files):
            _, input = compose(input, values, images=images, files=files, upload=self.upload_file)
        reply = self._respond(input, model, instructions, previous_response_id, stream, on_delta, fields)
        if reply.response.get("id"):
            self.response_ids.append(reply.response["id"])
        return reply

    def _respond(self, input: Union[str, list], model: str, instructions: Optional[str],
                 previous_response_id: Optional[str], stream: bool, on_delta: Optional[Callable[[str], None]],
                 fields: dict) -> Reply:
        body = {"model": model, "input": input, "stream": stream, **fields}
        if instructions:
            body["instructions"] = instructions
        if previous_response_id:
            body["previous_response_id"] = previous_response_id
        if not stream:
            response = self._json("POST", "/v1/responses", json=body)
            text = output_text(response)
            if on_delta and text:
                on_delta(text)
            return Reply(text, response)
        answer = self._call("POST", "/v1/responses", json=body, stream=True)
        with answer:
            if "text/event-stream" not in answer.headers.get("content-type", ""):
                response = answer.json()
                return Reply(output_text(response), response)
            return self._read_stream(answer, on_delta)

    def _read_stream(self, answer: requests.Response, on_delta: Optional[Callable[[str], None]]) -> Reply:
        pieces: list[str] = []
        final: Optional[dict] = None
        try:
            for event in iter_events(answer.iter_content(chunk_size=None)):
                try:
                    payload = json.loads(event.data)
                except ValueError:
                    continue
                kind = payload.get("type") or event.event
                if kind == "response.output_text.delta":
                    pieces.append(payload.get("delta", ""))
                    if on_delta:
                        on_delta(payload.get("delta", ""))
                elif kind in ("response.completed", "response.incomplete"):
                    final = payload.get("response") or {}
                elif kind == "response.failed":
                    error = (payload.get("response") or {}).get("error") or {}
                    raise GatewayError(error.get("message") or "the response failed", status=502,
                                       code=error.get("code"))
                elif kind == "error":
                    error = payload.get("error") if isinstance(payload.get("error"), dict) else payload
                    raise GatewayError(error.get("message") or "the stream reported an error", status=502,
                                       code=error.get("code"))
        except requests.RequestException as exc:
            raise error_from_exception(self.base_url, exc) from None
        if final is None:
            raise GatewayError("the stream ended before the response completed", status=502)
        return Reply(output_text(final) or "".join(pieces), final)

    def response(self, response_id: str) -> dict:
        """A stored response of this key."""
        return self._json("GET", f"/v1/responses/{response_id}")

    def upload_file(self, path: Union[str, os.PathLike], purpose: str = "user_data") -> dict:
        """Upload a file through /v1/files; returns its FileObject (its `id` goes in an `input_file` part)."""
        path = os.fspath(path)
        try:
            handle = open(path, "rb")
        except OSError as error:
            raise GatewayError(f"cannot read {path}: {error.strerror}") from None
        with handle:
            return self._json("POST", "/v1/files", data={"purpose": purpose},
                              files={"file": (os.path.basename(path), handle)})

    # ------------------------------------------------------------------------------------------ usage

    def models(self) -> list[dict]:
        """The models the gateway serves (no key needed)."""
        return _list_data(self._json("GET", "/v1/models", auth=False))

    def usage(self) -> dict:
        """The key's budget: `GET /v1/usage`."""
        return self._json("GET", "/v1/usage")

    def request_log(self, *, since: TimeLike = None, until: TimeLike = None, model: Optional[str] = None,
                    limit: int = 100) -> list[dict]:
        """The key's own request log, newest first, following the cursor up to `limit` rows."""
        return list(self._iter_request_log(since=since, until=until, model=model, limit=limit))

    def _iter_request_log(self, *, since: TimeLike, until: TimeLike, model: Optional[str],
                          limit: int) -> Iterator[dict]:
        params: dict[str, Any] = {"since": to_unix(since), "until": to_unix(until), "model": model}
        params = {k: v for k, v in params.items() if v is not None}
        seen = 0
        while seen < limit:
            params["limit"] = min(PAGE_SIZE, limit - seen)
            body = self._json("GET", "/v1/usage/requests", params=params)
            rows = _list_data(body)
            for row in rows:
                yield row
            seen += len(rows)
            if not rows or not (isinstance(body, dict) and body.get("has_more")):
                return
            params["after"] = rows[-1]["id"]

    def summary(self, group_by: str = "day") -> list[dict]:
        """Spend and tokens grouped by `day` or `model`."""
        if group_by not in ("day", "model"):
            raise GatewayError(f"group_by must be 'day' or 'model', not {group_by!r}")
        return _list_data(self._json("GET", "/v1/usage/summary", params={"group_by": group_by}))

    def capacity(self, refresh: bool = False) -> list[dict]:
        """Estimated remaining capacity of the upstream accounts serving this key's models."""
        if refresh:
            return _list_data(self._json("POST", "/v1/usage/account_capacity/refresh"))
        return _list_data(self._json("GET", "/v1/usage/account_capacity"))

    def cost_of(self, response_id: str, model: Optional[str] = None) -> Optional[Decimal]:
        """The cost of one response, from its request-log row (None when the row is not found)."""
        params = {"limit": 10, **({"model": model} if model else {})}
        for row in _list_data(self._json("GET", "/v1/usage/requests", params=params)):
            if row.get("response_id") == response_id:
                return Decimal(str(row.get("cost_usd") or "0"))
        return None

    # ------------------------------------------------------------------------------------------ frames

    def models_frame(self) -> pd.DataFrame:
        """The catalog: id, owned_by, created."""
        return frames.models_frame(self.models())

    def usage_frame(self) -> pd.DataFrame:
        """The key's budget as one row: limit_usd, used_usd, remaining_usd and the key's dates."""
        return frames.usage_frame(self.usage())

    def requests_frame(self, *, since: TimeLike = None, until: TimeLike = None, model: Optional[str] = None,
                       limit: int = 1000) -> pd.DataFrame:
        """The request log, newest first, one row per request."""
        return frames.requests_frame(self.request_log(since=since, until=until, model=model, limit=limit))

    def summary_frame(self, group_by: str = "day") -> pd.DataFrame:
        """Requests, tokens and cost_usd per day or per model."""
        return frames.summary_frame(self.summary(group_by), group_by)

    def capacity_frame(self, refresh: bool = False) -> pd.DataFrame:
        """One row per upstream account and budget window."""
        return frames.capacity_frame(self.capacity(refresh))

    def spend_frame(self, by: str = "day") -> pd.DataFrame:
        """Requests, tokens and cost_usd by `day`, `model` or `key` (a user token sees each of its keys)."""
        if by in ("day", "model"):
            return self.summary_frame(by)
        if by != "key":
            raise GatewayError(f"by must be 'day', 'model' or 'key', not {by!r}")
        log = self.requests_frame(limit=100_000)
        if "key_id" not in log.columns:  # a key sees its own rows only
            log["key_id"] = self.usage().get("id") if not log.empty else pd.Series(dtype="object")
        return frames.spend_by_key(log)

    def session_frame(self) -> pd.DataFrame:
        """The request-log rows of the responses this client created (this notebook's session)."""
        if not self.response_ids:
            return frames.requests_frame([])
        log = self.requests_frame(since=int(self.started_at) - 1, limit=max(100, 4 * len(self.response_ids)))
        return log[log["response_id"].isin(set(self.response_ids))].reset_index(drop=True)
