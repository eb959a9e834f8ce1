"""Stored files: their rows, the rules for a client's path, and what a file holds.

Backend-independent: the bytes go through a `FileStore`; the rows live in the `stored_file` table.
Multipart uploads live at `.uploads/<file id>` in the key's space; `PUT /v1/files/{path}` writes at `path`.
"""
from __future__ import annotations

import mimetypes
import os
import re
import secrets
import time
from typing import BinaryIO, Iterator, Optional
from urllib.parse import unquote

from ...api_error import ApiError
from ..models import StoredFile, now
from .store import FileStore

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
CHUNK_BYTES = 64 * 1024
UPLOADS = ".uploads"  # multipart uploads, by file id; not writable by path
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
DRIVE = re.compile(r"^[A-Za-z]:/")
MAGIC = ((b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
         (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def split_path(path: str) -> list[str]:
    """The segments of a client's path inside its space; 400 for anything that could leave it."""
    def refuse(why: str):
        raise ApiError(400, f"Invalid file path: {why}.", param="path", code="invalid_path")

    if not path:
        refuse("it is empty")
    if len(path) > MAX_PATH_CHARS:
        refuse(f"it is longer than {MAX_PATH_CHARS} characters")
    if "\\" in path:
        refuse("backslashes are not allowed")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        refuse("control characters are not allowed")
    if path.startswith("/") or DRIVE.match(path):
        refuse("absolute paths are not allowed")
    segments = path.split("/")
    for segment in segments:
        if not segment:
            refuse("empty segments are not allowed")
        if segment in (".", "..") or unquote(segment) in (".", ".."):
            refuse("'.' and '..' segments are not allowed")
        if len(segment.encode("utf-8")) > MAX_NAME_BYTES:
            refuse(f"a segment is longer than {MAX_NAME_BYTES} bytes")
    if segments[0] == UPLOADS:
        refuse(f"'{UPLOADS}' is reserved")
    return segments


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """A binary stream as chunks of CHUNK_BYTES."""
    return iter(lambda: stream.read(CHUNK_BYTES), b"")


# ---------------------------------------------------------------- file objects
def new_file_id() -> str:
    """`file-…`, in creation order within a second too (lists page by created_at, then id)."""
    return f"file-{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


def file_object(row: StoredFile) -> dict:
    """The OpenAI FileObject of a stored file."""
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": row.created_at,
            "filename": row.filename, "purpose": row.purpose, "status": "processed"}


def store_upload(repository: FileStore, key_id: str, stream: BinaryIO, filename: Optional[str],
                 purpose: str, content_type: Optional[str], max_bytes: int) -> StoredFile:
    """Keep a multipart upload under a new file id."""
    file_id = new_file_id()
    segments = [UPLOADS, file_id]
    size = repository.write(key_id, segments, read_chunks(stream), max_bytes)
    name = os.path.basename((filename or "").replace("\\", "/"))[:MAX_NAME_BYTES] or "upload"
    try:
        return StoredFile.create(id=file_id, key_id=key_id, filename=name, path="/".join(segments),
                                 purpose=purpose, bytes=size, content_type=_content_type(content_type))
    except Exception:  # no row, no bytes: nothing would ever name them again
        repository.remove(key_id, segments)
        raise


def store_at_path(repository: FileStore, key_id: str, path: str, stream: BinaryIO,
                  content_type: Optional[str], max_bytes: int) -> StoredFile:
    """Write a body at `path` in the key's space (replacing what was there); its file object row."""
    segments = split_path(path)
    size = repository.write(key_id, segments, read_chunks(stream), max_bytes)
    relative = "/".join(segments)
    row = StoredFile.get_or_none((StoredFile.key_id == key_id) & (StoredFile.path == relative))
    if row is None:
        return StoredFile.create(id=new_file_id(), key_id=key_id, filename=relative, path=relative,
                                 purpose="user_data", bytes=size, content_type=_content_type(content_type))
    row.bytes, row.content_type, row.created_at = size, _content_type(content_type), now()
    row.save()
    return row


def _content_type(declared: Optional[str]) -> Optional[str]:
    return declared[:200] if declared else None  # the column's width; a longer one is not a real type


def get_file(file_id: str, key_id: str, param: str = "file_id") -> StoredFile:
    """One of the key's files (404 for an unknown id or another key's)."""
    row = StoredFile.get_or_none((StoredFile.id == file_id) & (StoredFile.key_id == key_id))
    if row is None:
        raise ApiError(404, f"No such File object: {file_id}", param=param)
    return row


def open_content(repository: FileStore, row: StoredFile) -> BinaryIO:
    """The stored bytes of a file, for reading in chunks."""
    return repository.open(row.key_id, row.path.split("/"))


def delete_file(repository: FileStore, row: StoredFile) -> dict:
    """Remove a file from the store and from the table; the deleted object."""
    repository.remove(row.key_id, row.path.split("/"))
    StoredFile.delete().where(StoredFile.id == row.id).execute()
    return {"id": row.id, "object": "file", "deleted": True}


def download_type(row: StoredFile) -> str:
    """The content type to serve a stored file with."""
    return mimetypes.guess_type(row.filename)[0] or row.content_type or "application/octet-stream"


def media_type_of(head: bytes, filename: str, declared: Optional[str]) -> str:
    """What a file holds: its magic bytes, else its name, else what the uploader said, else text or bytes."""
    for magic, media_type in MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    guessed = mimetypes.guess_type(filename)[0]
    if guessed:
        return guessed
    if declared and declared.split(";")[0] not in ("application/octet-stream", ""):
        return declared.split(";")[0]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"
