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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        line.update(_fields(record))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual text line, the record's fields after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

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
    """The request's access line."""
    if ACCESS.isEnabledFor(logging.INFO):
        ACCESS.info("%s %s %s", fields.get("method"), fields.get("route"), fields.get("status"),
                    extra={"fields": fields})
