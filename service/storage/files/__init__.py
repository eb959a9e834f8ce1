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
from .store import FileStore, content_size

__all__ = ["CHUNK_BYTES", "PURPOSES", "FileStore", "LocalFileStore", "content_size", "delete_file", "download_type",
           "file_object", "get_file", "media_type_of", "open_content", "read_chunks", "split_path", "store_at_path",
           "store_for", "store_upload"]


_STORES: dict = {}  # one per place and process: an S3 client (and its connection pool) is made once


def store_for(settings: Settings) -> FileStore:
    """The backend that keeps file contents for these settings: S3 for an `s3://bucket/prefix` files URL,
    else the local directory it names (or `files_dir`)."""
    place = settings.files_url or settings.files_dir
    cached = _STORES.get((place, settings.s3_endpoint_url))
    if cached is not None:
        return cached
    if place.startswith("s3://"):
        from .s3 import S3FileStore  # boto3 is imported only where S3 is used

        store: FileStore = S3FileStore(place, settings.s3_endpoint_url)
    else:
        store = LocalFileStore(place[len("file://"):] if place.startswith("file://") else place)
    _STORES[(place, settings.s3_endpoint_url)] = store
    return store
