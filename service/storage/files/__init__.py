"""The file repository: where file contents live, behind one small interface (`FileStore`).

`store_for(settings)` gives the configured backend; `records` keeps the rows and the path rules.
"""
from __future__ import annotations

from ...config import Settings
from .local import LocalFileStore
from .records import (
    CHUNK_BYTES,
    PURPOSES,
    delete_file,
    download_type,
    file_object,
    get_file,
    media_type_of,
    open_content,
    read_chunks,
    split_path,
    store_at_path,
    store_upload,
)
from .store import FileStore

__all__ = ["CHUNK_BYTES", "PURPOSES", "FileStore", "LocalFileStore", "delete_file", "download_type", "file_object",
           "get_file", "media_type_of", "open_content", "read_chunks", "split_path", "store_at_path", "store_for",
           "store_upload"]


def store_for(settings: Settings) -> FileStore:
    """The backend that keeps file contents for these settings."""
    return LocalFileStore(settings.files_dir)
