"""Credentials out of upstream texts: one scrubber, applied by the upstream client where upstream text enters.

An upstream's error message may quote what it was sent (`Bearer <credential>`,
`x-api-key: …`), or a key of someone else's. Every text an upstream hands us
for an error — a non-2xx body, an error event in a stream — passes `scrub`
before anything shows, stores or logs it: the account's own credential is cut
out wherever it appears, and so is anything shaped like a key or a bearer.
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Optional

REDACTED = "[redacted]"
MIN_CREDENTIAL = 4  # a shorter credential is not cut out of every word that contains it

_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+|%20|\+)(?!\[redacted\])[A-Za-z0-9\-._~+/]+=*")
_PREFIXED_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk|pk|rk|ak)[-_][A-Za-z0-9_\-]{6,}")
_KEY_FIELD = re.compile(
    r"(?i)((?:x-api-key|x-goog-api-key|api[-_]?key|access[-_]?token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[redacted\]|bearer\b|basic\b)([^\s\"',;}&]+)")
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=]{24,}")
_SEGMENT = re.compile(r"[-_/]")
LONG_SEGMENT = 20  # a run this long of mixed letters and digits, unbroken by -, _ or /, is taken for a secret


def _looks_random(token: str) -> bool:
    """A long run of letters mixed with digits (keys, tokens, base64), not an identifier of short words."""
    return any(len(part) >= LONG_SEGMENT and re.search(r"\d", part) and re.search(r"[A-Za-z]", part)
               for part in _SEGMENT.split(token))


def scrub(text: Optional[str], credentials: Iterable[str] = ()) -> Optional[str]:
    """`text` without the given credentials and without anything shaped like a key or a bearer token."""
    if not text:
        return text
    for secret in credentials:
        if secret and len(secret) >= MIN_CREDENTIAL:
            for form in {secret, json.dumps(secret)[1:-1]}:  # as sent, and as a JSON string quotes it
                text = text.replace(form, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PREFIXED_KEY.sub(REDACTED, text)
    text = _KEY_FIELD.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), text)


def credentials_in(headers: dict) -> tuple:
    """The credentials among request headers: what `scrub` must cut out of that upstream's answers."""
    found = []
    for name, value in headers.items():
        if name.lower() in ("authorization", "x-api-key", "api-key", "x-goog-api-key") and value:
            found.append(value)
            scheme, _, rest = value.partition(" ")
            if rest and scheme.lower() in ("bearer", "basic"):
                found.append(rest.strip())
    return tuple(sorted(set(found), key=len, reverse=True))


def is_error_event(name: Optional[str], data: str) -> bool:
    """An SSE event that reports a failure (Anthropic `error`, Responses `error` / `response.failed`, a Chat
    chunk with an `error` member): its text is the upstream's own, to be scrubbed like an error body."""
    if name in ("error", "response.failed"):
        return True
    return '"error"' in data and data.lstrip().startswith("{") and _has_error_member(data)


def _has_error_member(data: str) -> bool:
    try:
        payload = json.loads(data)
    except ValueError:
        return False
    return isinstance(payload, dict) and (payload.get("error") is not None or payload.get("type") == "error")
