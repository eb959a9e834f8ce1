"""What a file-repository backend does: store, stream and remove bytes in a key's space, nothing more."""
from __future__ import annotations

from typing import BinaryIO, Iterable, Protocol


class FileStore(Protocol):
    """A backend of the file repository. `segments` is a checked path inside the key's space."""

    def write(self, key_id: str, segments: list[str], chunks: Iterable[bytes], max_bytes: int) -> int:
        """Store the chunks at `segments`, replacing what was there, atomically; the size written (413 past
        `max_bytes`, 503 when the store is unavailable)."""

    def open(self, key_id: str, segments: list[str]) -> BinaryIO:
        """The stored bytes for reading in chunks (404 when they are gone)."""

    def remove(self, key_id: str, segments: list[str]) -> None:
        """Delete the stored bytes, if they are still there."""
