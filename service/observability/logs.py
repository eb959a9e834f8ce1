"""Log lines: text (the default) or one JSON object per line (ONEKEYLLM_LOG_FORMAT=json), and the access line.

The access line is one per request, written when its answer is done (a stream's at its end), with what an
operator needs to follow a call: request id, key id (never the key), route, model, account, status, tokens,
cost and latencies. Fields ride on the record as `extra={"fields": {...}}`; the JSON formatter puts them at
the top level, the text formatter after the message as `name=value`.
"""
from __future__ import annotations

import json
import logging
import time

ACCESS = logging.getLogger("onekeyllm.access")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fields(record: logging.LogRecord) -> dict:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class SecondCache:
    """A time format applied once per second (every access line and every answer's Date header asks for it)."""

    def __init__(self, render):
        self._render = render
        self._cached = (None, "")  # (second, its text): one tuple, so that threads never see a torn pair

    def __call__(self, created: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, self._render(second))
        return cached[1]


_UTC_SECOND = SecondCache(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
_LOCAL_SECOND = SecondCache(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _UTC_SECOND(record.created) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update(_fields(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual text line, the record's fields after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:  # noqa: N802 - logging's name
        """As logging's default (`2026-12-02 01:02:03,456`, local time), the second part made once a second."""
        if datefmt:
            return super().formatTime(record, datefmt)
        return f"{_LOCAL_SECOND(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        return text + " " + " ".join(f"{name}={'-' if value is None else value}" for name, value in fields.items())


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of ONEKEYLLM_LOG_FORMAT (`text` for anything but `json`)."""
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(log_format: str) -> None:
    """The root logger writes to stderr in the chosen format (the process's other loggers propagate to it)."""
    root = logging.getLogger()
    if not any(getattr(handler, "onekeyllm", False) for handler in root.handlers):
        handler = logging.StreamHandler()
        handler.onekeyllm = True
        root.addHandler(handler)
    for handler in root.handlers:
        if getattr(handler, "onekeyllm", False):
            handler.setFormatter(formatter_for(log_format))
    root.setLevel(logging.INFO)


def log_access(fields: dict) -> None:
    """The request's access line (made without logging's search of the stack for its caller: always here)."""
    if ACCESS.isEnabledFor(logging.INFO):
        record = ACCESS.makeRecord(ACCESS.name, logging.INFO, __file__, 0, "%s %s %s",
                                   (fields.get("method"), fields.get("route"), fields.get("status")), None,
                                   func="log_access", extra={"fields": fields})
        ACCESS.handle(record)
