"""One request through the gateway: parse → reserve → route → call upstream → render → settle.

Nothing here knows Flask: a route builds a `Call`, gets an `Answer` (a JSON
body or an iterator of SSE bytes) or an ApiError.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

from ..api_error import ApiError
from ..config import Settings
from ..ids import new_id
from ..observability.calls import CallTrace
from ..storage.db import connected
from ..storage.models import Account, ApiKey
from ..storage.ratelimit import count_in_window
from . import billing, threads
from .canonical import RenderContext, Request, Response, ResponseBuilder, TextPart, ToolCallPart, Usage, response_events
from .capacity import has_window_limits, headroom, learn
from .catalog import AccountInfo, ModelInfo, latest, snapshot
from .codecs import CodecError, anthropic, opaque_reasoning, openai_chat, openai_responses
from .file_parts import resolve_file_parts
from .output_cap import OutputWatch, apply_cap
from .pricing import prices_json, prices_of
from .router import cooldowns, order_accounts
from .sse import KEEPALIVE, encode_event
from .tokens import asks_for_caching, bound_request, estimate_request, estimate_text
from .upstreams import upstream_for
from .upstreams.http import Timeouts, UpstreamError

log = logging.getLogger("onekeyllm.gateway")

CODECS = {"chat": openai_chat, "responses": openai_responses, "anthropic": anthropic}
ID_PREFIXES = {"chat": ("chatcmpl", "-"), "responses": ("resp", "_"), "anthropic": ("msg", "_")}
CALL_ID_PREFIXES = {"chat": "call", "responses": "call", "anthropic": "toolu"}
STREAM_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
                  "X-Accel-Buffering": "no"}
CLIENT_CLOSED = 499
TERMINAL_EVENTS = ("message_stop", "response.completed", "response.incomplete")


@dataclass
class Call:
    """An inbound request in one of the three formats."""

    inbound: str  # "chat" | "responses" | "anthropic"
    endpoint: str
    body: dict
    key: Optional[ApiKey]  # the caller's key row: None until read (or granted, see `_reserve`)
    settings: Settings
    forward_headers: dict = field(default_factory=dict)  # anthropic-version / -beta, for passthrough
    query: str = ""
    key_hash: Optional[str] = None  # what the key is stored under: the grant finds it by this
    authenticate: Optional[Callable[[], ApiKey]] = None  # reads and checks the key (401s)
    trace: CallTrace = field(default_factory=CallTrace)  # request id and timings, for headers, metrics and logs

    def ensure_key(self) -> ApiKey:
        """The caller's key row, read and checked (401) where it is needed before the grant."""
        if self.key is None:
            self.key = self.authenticate()
        return self.key


@dataclass
class Answer:
    status: int
    body: Optional[dict] = None
    stream: Optional[Iterator[bytes]] = None
    headers: dict = field(default_factory=dict)


@dataclass
class Turn:
    """What one call carries through the pipeline."""

    call: Call
    request: Request
    model: ModelInfo
    ctx: RenderContext
    input_estimate: int
    started: float
    input_bound: int = 0  # input tokens no upstream can count more of (what is reserved)
    requested_output: Optional[int] = None  # the client's own output limit, if it set one
    prices: Optional[str] = None  # the model's prices as planned (pricing.prices_json), kept in the log row
    watch: OutputWatch = field(default_factory=lambda: OutputWatch(None))  # the stream's output against the cap
    reservation: Optional[billing.Reservation] = None
    thread: Optional[threads.Thread] = None  # Responses only: the gateway's state for this call
    account: Optional[AccountInfo] = None
    settled: bool = False
    candidates: list = field(default_factory=list)  # the accounts to try, as known before the grant


def handle(call: Call) -> Answer:
    """Serve one call; raises ApiError for anything the client must be told before a stream starts."""
    with connected():  # a connection for this phase only: none is held during the upstream call
        try:
            turn, accounts = _prepare(call)
        except ApiError:
            call.ensure_key()  # a bad key is what the client hears first, whatever else is wrong
            raise
    try:
        return _dispatch(turn, accounts)
    except BaseException as error:
        if not turn.settled:
            if turn.account is not None and not isinstance(error, Exception):  # ended by a stop mid-call
                _settle(turn, CLIENT_CLOSED, Usage(), error="The gateway stopped before the upstream answered.")
            elif turn.account is not None:  # the gateway's own failure once its upstream was chosen: the row stays
                _settle(turn, 500, Usage(), error=f"the gateway failed: {type(error).__name__}")
            else:
                with connected():
                    billing.release(turn.reservation)
        raise


def _prepare(call: Call, again: bool = False) -> tuple:
    """Parse, route and plan the call, and reserve its worst case: the turn and the accounts that serve it.
    Runs on one pooled connection (`handle`), returned before the upstream is called.

    The common call reads nothing before its grant: the key is found, checked and charged by the grant
    itself (by its hash), and the catalog is the one this worker holds. The grant answers the key's row and
    the catalog version, so the key's model list and rpm are checked on what it answered, and a call
    planned on a catalog that changed meanwhile is planned again.
    """
    codec = CODECS[call.inbound]
    thread = None
    if call.inbound == "responses":
        thread = threads.open_thread(call.body, lambda: call.ensure_key().id)
        call.body = thread.body
    try:
        request = codec.parse_request(call.body)
    except CodecError as error:
        raise ApiError(400, error.message, param=error.param) from None
    snap = snapshot(call.key.catalog_version) if call.key is not None else latest()
    accounts = snap.serving.get(request.model)
    if not accounts and call.key is None:  # read the key, and the catalog as of now: a model added since is found
        snap = snapshot(call.ensure_key().catalog_version)
        accounts = snap.serving.get(request.model)
    if not accounts:
        raise ApiError(400, f"The model '{request.model}' is not available: no enabled account serves it.",
                       param="model", code="model_not_found")
    checked = call.key is not None
    if checked:
        _check_key(call.key, request.model, count=not again)
    turn = _start_turn(call, request, snap.models[request.model], thread, accounts)
    granted = _reserve(turn)
    learn(granted.account_state)
    try:
        if not checked:
            _check_key(granted, request.model)
    except ApiError:
        billing.release(turn.reservation)
        raise
    call.key = granted
    if granted.catalog_version != snap.version and not again:
        billing.release(turn.reservation)
        return _prepare(call, again=True)
    return turn, accounts


def _reserve(turn: Turn) -> ApiKey:
    """Hold the turn's worst case; the key's row as granted (401 for a key that is not live, 402)."""
    call = turn.call
    if call.key is None:
        granted = billing.grant(turn.reservation, key_hash=call.key_hash)
        if granted is not None:
            return granted
        call.ensure_key()  # a live key whose budget does not fit the uncapped worst case: plan on its figures
        _plan(turn)
    try:
        return billing.reserve(turn.reservation)
    except billing.BudgetExhausted:
        raise _budget_exhausted() from None


def _check_key(key: ApiKey, model: str, count: bool = True) -> None:
    """403 for a model the key may not use; 429 past its rpm (`count`: this call counts toward it)."""
    if key.models and model not in key.models:
        raise ApiError(403, f"This key may not use the model '{model}'.", param="model",
                       type="permission_error", code="model_not_allowed")
    if count:
        _check_rpm(key)


def _budget_exhausted() -> ApiError:
    return ApiError(402, "Budget exhausted: this key cannot afford the request.", code="budget_exhausted",
                    type="insufficient_quota")


def _check_rpm(key: ApiKey) -> None:
    """429 with retry-after once a key with an `rpm` limit has used this minute's requests."""
    if key.rpm:
        used, retry_after = count_in_window(f"rpm:{key.id}", 60)
        if used > key.rpm:
            raise ApiError(429, f"Rate limit reached: this key allows {key.rpm} requests per minute.",
                           code="rate_limit_exceeded", headers={"retry-after": str(retry_after)})


def _start_turn(call: Call, request: Request, model: ModelInfo, thread: Optional[threads.Thread],
                accounts: list) -> Turn:
    prefix, sep = ID_PREFIXES[call.inbound]
    if thread is not None:
        thread.prepend_history(request)
    resolve_file_parts(request, lambda: call.ensure_key().id, call.settings,
                       chat_body=call.body if call.inbound == "chat" else None)
    ctx = RenderContext(response_id=new_id(prefix, sep), model=request.model, created_at=int(time.time()),
                        request_body=call.body, extra=thread.extra if thread else {},
                        include_usage=bool((call.body.get("stream_options") or {}).get("include_usage"))
                        if isinstance(call.body.get("stream_options"), dict) else False)
    turn = Turn(call=call, request=request, model=model, ctx=ctx, input_estimate=estimate_request(request),
                started=time.time(), thread=thread, input_bound=bound_request(request, model.context_window),
                requested_output=request.max_output_tokens, candidates=opaque_reasoning.same_provider_first(
                    order_accounts(accounts, headroom=headroom), request.messages))
    _plan(turn)
    return turn


def _plan(turn: Turn) -> None:
    """The turn's worst case, on its key's figures where read (402 when it cannot afford even a short answer).

    Its output cap becomes the request's: the upstream is always sent the cap that was reserved.
    """
    request, call = turn.request, turn.call
    try:
        turn.reservation = billing.plan_reservation(call.key, turn.model, turn.input_bound,
                                                    turn.requested_output, asks_for_caching(call.body))
    except billing.BudgetExhausted:
        raise _budget_exhausted() from None
    turn.reservation.candidates = tuple(account.id for account in turn.candidates)  # the grant picks one
    request.max_output_tokens = turn.reservation.max_output_tokens
    turn.watch = OutputWatch(request.max_output_tokens)
    turn.prices = prices_json(prices_of(turn.model))
    turn.reservation.pending = billing.PendingRow(call.endpoint, request.model, request.stream, turn.input_estimate,
                                                  turn.prices, call.trace.request_id or None)


# ---------------------------------------------------------------- routing and failover
def _timeouts(settings: Settings) -> Timeouts:
    return Timeouts(connect=settings.upstream_connect_timeout, read=settings.upstream_timeout)


def _route(turn: Turn, accounts: list) -> Iterator[AccountInfo]:
    """The accounts to try: the one the grant picked first, then the others in order (cooldowns as known once
    the first failed), each only once the hold is moved onto it (its window limits checked: failover only).
    The order of the others is drawn only when they are needed."""
    reservation = turn.reservation
    picked = reservation.account_id
    first = next((account for account in accounts if account.id == picked), None) if picked is not None else None
    if first is not None and headroom(first) <= 0:  # spent meanwhile, as another process's answer said
        first = None
    if first is not None:
        yield first
    ordered = opaque_reasoning.same_provider_first(order_accounts(accounts, headroom=headroom),
                                                   turn.request.messages)
    for account in ordered:
        if first is not None and account.id == first.id:
            continue  # tried first
        if account.id != reservation.account_id and (reservation.account_id is not None
                                                      or has_window_limits(account.limits)):
            with connected():
                if not billing.reserve_account(reservation, account.id):
                    continue
        yield account


def _dispatch(turn: Turn, accounts: list) -> Answer:
    failures: list = []
    for account in _route(turn, accounts):
        turn.account = account
        upstream = upstream_for(account, _timeouts(turn.call.settings))
        if upstream.provider == "echo":
            return _echo_answer(turn, upstream)
        passthrough = upstream.wire_name == turn.call.inbound
        body = _passthrough_body(turn, account) if passthrough else upstream.wire.render_request(
            _for_upstream(turn.request, turn.model), account.upstream_model(turn.request.model))
        apply_cap(body, upstream.wire_name, account, turn.request.max_output_tokens)
        headers = turn.call.forward_headers if upstream.provider == "anthropic" and passthrough else None
        try:
            with turn.call.trace.upstream():
                answer = upstream.send(body, stream=turn.request.stream, headers=headers,
                                       query=turn.call.query if passthrough else "")
        except UpstreamError as error:
            _note_failure(account, error)
            if error.retryable:
                failures.append(error)
                continue
            status = error.client_status()
            _settle(turn, status, Usage(), error=error.message)
            # the upstream's error type only where its status is passed on: an account's rejected credential
            # is the gateway's 502, never an authentication_error that tells the client its own key is bad
            raise ApiError(status, f"Upstream error: {error.message}",
                           type=error.error_type if status == error.status else None) from None
        _note_success(account, answer.rate_limits)
        if turn.request.stream:
            return Answer(200, stream=_stream(turn, upstream, answer, passthrough), headers=dict(STREAM_HEADERS))
        return _complete(turn, upstream, answer, passthrough)
    return _exhausted(turn, failures)


def _exhausted(turn: Turn, failures: list) -> Answer:
    if not failures:
        raise ApiError(503, f"No account is available for '{turn.request.model}'.", code="no_capacity")
    last = failures[-1]
    if all(f.status == 429 for f in failures):
        status, headers = 429, {"retry-after": str(int(min(f.retry_after or 1 for f in failures)) or 1)}
    elif all(f.kind == "timeout" for f in failures):
        status, headers = 504, {}
    else:
        status, headers = 503, {}
    _settle(turn, status, Usage(), error=last.message)
    tried = len(failures)
    raise ApiError(status, f"No upstream account could serve the request ({tried} tried; last: {last.message})",
                   headers=headers)


def _note_failure(account: AccountInfo, error: UpstreamError) -> None:
    if not error.retryable:
        return
    until = cooldowns.cool(account.id, error.retry_after)
    with connected():
        Account.update(cooldown_until=until, last_error=error.message[:300]).where(Account.id == account.id).execute()


def _note_stream_failure(turn: Turn, error: Exception) -> None:
    """A stream that broke or stalled cools its account down too (the client already has its error event)."""
    if isinstance(error, UpstreamError) and turn.account is not None:
        try:
            _note_failure(turn.account, error)
        except Exception:  # the request-log row matters more than the cooldown
            log.warning("could not cool down an account", exc_info=True)


def _note_success(account: AccountInfo, rate_limits: dict) -> None:
    if cooldowns.is_cool(account.id):  # tried while cooling down, and it answered: it is back for everyone
        with connected():
            Account.update(cooldown_until=0).where(Account.id == account.id).execute()
    cooldowns.clear(account.id)
    if rate_limits:
        from .capacity import remember_headers

        remember_headers(account.id, rate_limits)


def _for_upstream(request: Request, model: ModelInfo) -> Request:
    """The request as an upstream needs it (Anthropic requires max_tokens)."""
    if request.max_output_tokens is None:
        request.max_output_tokens = model.max_output_tokens or billing.DEFAULT_MAX_OUTPUT
    return request


def _passthrough_body(turn: Turn, account: AccountInfo) -> dict:
    """The client's own body for an upstream of the same format: unknown fields kept, model mapped."""
    body = dict(turn.call.body)
    body["model"] = account.upstream_model(turn.request.model)
    inbound = turn.call.inbound  # the output cap is set by the caller (apply_cap), as for every upstream body
    if inbound == "chat":
        if body.get("stream"):
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    elif inbound == "responses":
        for name in ("previous_response_id", "conversation"):
            body.pop(name, None)
        body["input"] = turn.thread.passthrough_input(turn.request.messages)
        body["store"] = False
    return body


# ---------------------------------------------------------------- answers
def _complete_usage(turn: Turn, response: Response) -> Usage:
    """The usage to bill: the upstream's (zero is an answer), or a local count where it reported none."""
    usage = response.usage
    if usage.reported:
        return usage
    if not usage.input_tokens:
        usage.input_tokens = turn.input_estimate
    if not usage.output_tokens:
        counted = sum(estimate_text(p.text) if isinstance(p, TextPart)
                      else estimate_text(p.arguments) + 3 if isinstance(p, ToolCallPart) else 0
                      for p in response.parts)
        # each delta streamed carried a token at least; the upstream was sent the cap, and a stream past it is
        # stopped there: a local count is never below the one, nor above the other
        usage.output_tokens = min(max(counted, turn.watch.seen), turn.request.max_output_tokens or counted)
    return usage


def _settle(turn: Turn, status: int, usage: Usage, *, error: Optional[str] = None,
            response_id: Optional[str] = None, stored: Optional[tuple] = None) -> int:
    if turn.settled:
        return 0
    turn.settled = True
    entry = billing.LogEntry(
        key_id=turn.call.key.id, endpoint=turn.call.endpoint, model=turn.request.model,
        account=turn.account.name if turn.account else None, stream=turn.request.stream, status_code=status,
        usage=usage, cost=billing.price_usage(turn.model, usage), started=turn.started,
        response_id=response_id, error=error, request_id=turn.call.trace.request_id or None, prices=turn.prices)
    with connected():
        charged = billing.settle(turn.reservation, entry, also=stored)
    turn.call.trace.settled(entry, charged)
    return charged


def _settle_answered(turn: Turn, status: int, usage: Usage, body: dict, response: Response, *,
                     error: Optional[str] = None, response_id: Optional[str] = None) -> None:
    """Settle a call that was answered; a Responses call's stored response is written with its settlement (one
    transaction on SQLite), then the answer joins its conversation, if it has one."""
    thread = turn.thread
    stored = thread.stored(turn.ctx.response_id, turn.request.model, body, turn.request.messages, response) \
        if thread is not None else None
    _settle(turn, status, usage, error=error, response_id=response_id, stored=stored)
    if thread is not None:
        thread.record_conversation(body, response)


def _rewrite_passthrough(turn: Turn, raw: dict) -> dict:
    raw["model"] = turn.request.model
    if turn.call.inbound == "responses":
        raw["id"] = turn.ctx.response_id
        for name in ("previous_response_id", "conversation"):
            if name in turn.ctx.extra:
                raw[name] = turn.ctx.extra[name]
        raw["store"] = turn.thread.store
    return raw


def _complete(turn: Turn, upstream, answer, passthrough: bool) -> Answer:
    try:
        with turn.call.trace.upstream():
            raw = answer.json()
        response = upstream.wire.parse_response(raw)
    except (UpstreamError, CodecError) as error:
        message = getattr(error, "message", str(error))
        _settle(turn, 502, Usage(), error=message)
        raise ApiError(502, f"Upstream error: {message}") from None
    if not passthrough:
        _client_call_ids(turn, response)
    usage = _complete_usage(turn, response)
    if passthrough:
        body = _rewrite_passthrough(turn, raw)
        response_id = body.get("id") or turn.ctx.response_id
    else:
        body = CODECS[turn.call.inbound].render_response(response, turn.ctx)
        response_id = turn.ctx.response_id
    _settle_answered(turn, 200, usage, body, response, response_id=response_id)
    return Answer(200, body=body)


def _echo_answer(turn: Turn, upstream) -> Answer:
    request = _for_upstream(turn.request, turn.model)
    codec = CODECS[turn.call.inbound]
    if not request.stream:
        response = upstream.complete(request)
        _client_call_ids(turn, response)
        body = codec.render_response(response, turn.ctx)
        _settle_answered(turn, 200, response.usage, body, response, response_id=turn.ctx.response_id)
        return Answer(200, body=body)
    batches = ([event] for event in upstream.stream(request))
    return Answer(200, stream=_render_stream(turn, batches, codec), headers=dict(STREAM_HEADERS))


def _client_call_id(turn: Turn, raw: Optional[str]) -> str:
    """A tool-call id with the prefix of the client's format (`call_`, `toolu_`), whatever the upstream gave.

    Applied to the canonical answer, so the client, the stored thread and the next turn's tool result agree.
    """
    prefix = CALL_ID_PREFIXES[turn.call.inbound]
    if not raw:
        return new_id(prefix)
    return raw if raw.startswith(prefix + "_") else f"{prefix}_{raw}"


def _client_call_ids(turn: Turn, response: Response) -> None:
    for part in response.parts:
        if isinstance(part, ToolCallPart):
            part.id = _client_call_id(turn, part.id)


# ---------------------------------------------------------------- streams
def _stream(turn: Turn, upstream, answer, passthrough: bool) -> Iterator[bytes]:
    parser = upstream.wire.StreamParser()
    if passthrough:
        return _passthrough_stream(turn, answer, parser)

    def canonical_batches():
        """The canonical events of what each read brought (a CodecError after those before it), None for a
        silence; error events scrubbed of credentials (upstreams/scrub.py)."""
        batches = answer.event_batches(turn.call.settings.keepalive_seconds)
        try:
            for batch in batches:
                if batch is None:
                    yield None
                    continue
                events, failure = [], None
                try:
                    for name, data in batch:
                        events += parser.feed(name, data)
                except CodecError as exc:
                    failure = exc
                if events:
                    yield events
                if failure is not None:
                    raise failure
        finally:
            batches.close()
        tail = parser.close()
        if tail:
            yield tail

    return _render_stream(turn, canonical_batches(), CODECS[turn.call.inbound])


def _stop_reading(source: Iterator) -> None:
    """Stop the upstream read; the upstream's byte iterator closes its response as it unwinds."""
    try:
        source.close()
    except Exception:  # the request-log row is written after this, whatever happens here
        log.warning("could not stop reading an upstream stream", exc_info=True)


def _render_stream(turn: Turn, source: Iterator, codec) -> Iterator[bytes]:
    """Canonical events rendered in the client's format; billed and stored whatever happens.

    `source` gives the events in lists, those of one upstream read each (None: a keep-alive is due): the
    events that arrive together leave together, one write per upstream read, not per event.
    """
    renderer = codec.StreamRenderer(turn.ctx)
    builder = ResponseBuilder(turn.ctx.response_id, turn.request.model)
    status, error = CLIENT_CLOSED, None
    watch = turn.watch
    out: list = []  # encoded, not yet written
    try:
        for batch in source:
            if batch is None:
                yield KEEPALIVE
                continue
            turn.call.trace.first_token()
            if watch.passes(batch):  # an upstream generating past the cap: it ends here, with a length stop
                batch = watch.ending()
            for event in batch:
                if event.type == "tool_call":
                    event = replace(event, call_id=_client_call_id(turn, event.call_id))
                builder.feed(event)
                if event.type == "error":
                    raise UpstreamError("status", event.text or "The upstream reported an error.",
                                        error_type=event.error_type)
                out += [encode_event(name, payload) for name, payload in renderer.feed(event)]
            if out:
                written, out = b"".join(out), []
                yield written
            if watch.stopped:
                break  # the upstream is closed as the read stops (finally)
        if not builder.finished:
            raise UpstreamError("protocol", "The upstream stream ended early.")
        tail = renderer.close()
        status = 200
        # recorded before the closing events leave: a client that saw the end has its row
        _finish_stream(turn, status, builder.response, error, _final_body(turn, tail, builder.response))
        out += [encode_event(name, payload) for name, payload in tail]
    except (UpstreamError, CodecError) as exc:
        status, error = 502, getattr(exc, "message", str(exc))
        _note_stream_failure(turn, exc)
        out += [encode_event(name, payload) for name, payload in
                renderer.fail(f"Upstream error: {error}", getattr(exc, "error_type", None))]
    finally:
        _stop_reading(source)
        if not turn.settled:
            _finish_stream(turn, status, builder.response, error, None)
    if out:
        yield b"".join(out)


def _final_body(turn: Turn, tail: list, response: Response) -> Optional[dict]:
    """The final response object of a Responses stream (what GET /v1/responses/{id} returns)."""
    if turn.call.inbound != "responses":
        return None
    for _, payload in reversed(tail):
        if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
            return payload["response"]
    return openai_responses.render_response(response, turn.ctx)


def _finish_stream(turn: Turn, status: int, response: Response, error: Optional[str], body: Optional[dict]) -> None:
    try:
        usage = _complete_usage(turn, response)
        if status == 200 and body is not None:
            _settle_answered(turn, status, usage, body, response, error=error, response_id=turn.ctx.response_id)
        else:
            _settle(turn, status, usage, error=error, response_id=turn.ctx.response_id)
    except Exception:  # the client already has its answer; never lose the reason
        log.exception("could not record a streamed request")


def _passthrough_stream(turn: Turn, answer, parser) -> Iterator[bytes]:
    """The upstream's own events, forwarded as they come (those that arrive together in one write),
    observed for usage and storage."""
    builder = ResponseBuilder(turn.ctx.response_id, turn.request.model)
    inbound = turn.call.inbound
    status, error, final = CLIENT_CLOSED, None, None
    adopt_id = inbound != "responses"  # Responses streams get our id; Chat and Messages keep the upstream's
    source = answer.event_batches(turn.call.settings.keepalive_seconds)
    watch = turn.watch
    out: list = []  # encoded, not yet written
    try:
        for batch in source:
            if batch is None:
                yield KEEPALIVE
                continue
            turn.call.trace.first_token()
            for name, data in batch:
                if adopt_id:
                    adopt_id = False
                    _adopt_upstream_id(turn, name, data)
                events = parser.feed(name, data)
                if watch.passes(events):  # an upstream generating past the cap: it ends here, with a length stop
                    tail = _stopped_at_cap(turn, builder, watch)
                    status = 200
                    _finish_stream(turn, status, builder.response, None, _final_body(turn, tail, builder.response))
                    out += [encode_event(name, payload) for name, payload in tail]
                    break
                for event in events:
                    builder.feed(event)
                    if event.type == "error":
                        error = event.text
                forwarded, final = _forwarded_event(turn, name, data, final)
                if forwarded is None:
                    continue
                if (name in TERMINAL_EVENTS or (inbound == "chat" and data.strip() == "[DONE]")) \
                        and builder.finished and not error and not turn.settled:
                    status = 200  # recorded before the closing event leaves
                    _finish_stream(turn, status, builder.response, error, final)
                out.append(forwarded)
            if out:
                written, out = b"".join(out), []
                yield written
            if watch.stopped:
                break  # the upstream is closed as the read stops (finally)
        tail = [] if watch.stopped else parser.close()
        for event in tail:
            builder.feed(event)
        if error:
            status = 502
        elif not builder.finished:
            raise UpstreamError("protocol", "The upstream stream ended early.")
        else:
            status = 200
    except (UpstreamError, CodecError) as exc:
        status, error = 502, getattr(exc, "message", str(exc))
        _note_stream_failure(turn, exc)
        renderer = CODECS[inbound].StreamRenderer(turn.ctx)
        out += [encode_event(name, payload) for name, payload in
                renderer.fail(f"Upstream error: {error}", getattr(exc, "error_type", None))]
    finally:
        _stop_reading(source)
        if not turn.settled:
            _finish_stream(turn, status, builder.response, error, final)
    if out:
        yield b"".join(out)


def _stopped_at_cap(turn: Turn, builder: ResponseBuilder, watch: OutputWatch) -> list:
    """The client format's closing events for a passthrough stream stopped at the cap.

    A renderer of the client's format is brought silently to where the upstream's stream was (the parts so
    far, the last one left open), so that what it writes from there closes what the client has seen.
    """
    renderer = CODECS[turn.call.inbound].StreamRenderer(turn.ctx)
    so_far = [e for e in response_events(builder.response) if e.type not in ("usage", "finish")]
    if so_far and so_far[-1].type == "part_end":
        so_far.pop()
    for event in so_far:
        renderer.feed(event)
    tail = []
    for event in watch.ending():
        builder.feed(event)
        tail += renderer.feed(event)
    return tail + renderer.close()


def _forwarded_event(turn: Turn, name: Optional[str], data: str, final: Optional[dict]) -> tuple:
    """An upstream event as the client gets it (None: not forwarded), and the final Responses object so far."""
    inbound = turn.call.inbound
    rename = turn.account.upstream_model(turn.request.model) != turn.request.model
    if inbound == "chat":
        if data.strip() == "[DONE]":
            return encode_event(None, "[DONE]"), final
        if not turn.ctx.include_usage and ('"choices":[]' in data or '"choices": []' in data):
            return None, final  # the usage chunk the gateway asked for, which the client did not
        if rename:
            data = _rename_model(data, turn.request.model)
    elif inbound == "anthropic" and name == "message_start" and rename:
        data = _rename_model(data, turn.request.model, nested="message")
    elif inbound == "responses" and name in ("response.created", "response.in_progress", "response.completed",
                                             "response.incomplete", "response.failed"):
        payload = json.loads(data)
        response = _rewrite_passthrough(turn, payload.get("response") or {})
        payload["response"] = response
        if name not in ("response.created", "response.in_progress"):
            final = response
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return encode_event(name, data), final


def _adopt_upstream_id(turn: Turn, name: Optional[str], data: str) -> None:
    """The id the client sees in a passthrough stream (the upstream's), so the request-log row names it too."""
    try:
        payload = json.loads(data)
    except ValueError:
        return
    if name == "message_start" and isinstance(payload, dict):
        payload = payload.get("message")
    if isinstance(payload, dict) and isinstance(payload.get("id"), str):
        turn.ctx.response_id = payload["id"]


def _rename_model(data: str, model: str, nested: Optional[str] = None) -> str:
    payload = json.loads(data)
    target = payload.get(nested) if nested else payload
    if isinstance(target, dict) and "model" in target:
        target["model"] = model
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
