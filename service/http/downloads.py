"""Stored bytes go out as downloads, never as live web content on the gateway's origin."""
from __future__ import annotations

import unicodedata
from urllib.parse import quote

from werkzeug.http import dump_options_header

# A stored file may be HTML, SVG or script whatever its name says: the browser saves it, does not guess its
# type, and, should it render it anyway, runs it in a sandbox with no access to this origin.
DOWNLOAD_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
RFC5987_SAFE = "!#$&+-.^_`|~"  # attr-chars left as they are in `filename*` (as werkzeug's send_file does)


def _plain(name: str) -> bool:
    """A name every client reads back the same in a quoted `filename` (no escapes needed)."""
    return name.isascii() and name.isprintable() and '"' not in name and "\\" not in name


def attachment_headers(filename: str) -> dict:
    """The headers that serve a stored file as a download named `filename` (RFC 6266: an ASCII `filename`,
    and the exact name in `filename*` when it is not plain ASCII)."""
    name = filename.rpartition("/")[2] or "download"
    if _plain(name):
        options = {"filename": name}
    else:
        fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        fallback = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in fallback).strip() or "download"
        options = {"filename": fallback, "filename*": "UTF-8''" + quote(name, safe=RFC5987_SAFE)}
    return {"Content-Disposition": dump_options_header("attachment", options), **DOWNLOAD_HEADERS}
