"""What a file-repository backend does: store, stream and remove bytes in a key's space, nothing more."""
from __future__ import annotations

import logging
import os
from typing import BinaryIO, Iterable, Protocol

from ...api_error import ApiError

log = logging.getLogger("onekeyllm.files")


class FileStore(Protocol):
    """A backend of the file repository. `segments` is a checked path inside the key's space."""

    def write(self, key_id: str, segments: list[str], chunks: Iterable[bytes], max_bytes: int) -> int:
        """Store the chunks at `segments`, replacing what was there, atomically; the size written (413 past
        `max_bytes`, 503 when the store is unavailable)."""

    def open(self, key_id: str, segments: list[str]) -> BinaryIO:
        """The stored bytes for reading in chunks (404 when they are gone); `content_size` tells their size."""

    def remove(self, key_id: str, segments: list[str]) -> None:
        """Delete the stored bytes, if they are still there."""

    def check(self) -> None:
        """Answer cheaply whether the store is usable (503 when it is not): the readiness probe."""


def unavailable(reason: object) -> ApiError:
    """The 503 every backend answers when its store cannot be used (the reason is logged, not shown)."""
    log.warning("file repository unavailable: %s", reason)
    return ApiError(503, "The file repository is unavailable.", type="service_unavailable",
                    code="repository_unavailable")


def content_missing() -> ApiError:
    """The 404 for a file whose row is there but whose bytes are not."""
    return ApiError(404, "The file's content is missing from the repository.")


def too_large(max_bytes: int) -> ApiError:
    """The 413 for a body past the file size limit."""
    return ApiError(413, f"The file is larger than the limit of {max_bytes} bytes.", code="file_too_large")


def content_size(stream) -> int:
    """The size of an opened file's bytes: what the backend said, else the open file's own."""
    size = getattr(stream, "size", None)
    if size is None:
        size = os.fstat(stream.fileno()).st_size
    return size
