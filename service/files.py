"""The file repository: each key's files on disk under ONEKEYLLM_FILES_DIR, and our file ids made inline content.

A key's space is `<files_dir>/<key_id>/`. `PUT /v1/files/{path}` writes at
`path` inside it; multipart uploads live in `.uploads/<file id>`. A client's
path is checked as a string first, then walked one directory descriptor at a
time without ever following a symbolic link, so nothing is written (or read)
outside the space. Bodies go to disk in chunks, into a temporary file that is
renamed into place once complete.
"""
from __future__ import annotations

import base64
import logging
import mimetypes
import os
import re
import secrets
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator, Optional
from urllib.parse import unquote

from .api_error import ApiError
from .config import Settings
from .gateway.canonical import FilePart, ImagePart, Request, ToolResultPart
from .models import StoredFile, now

log = logging.getLogger("onekeyllm.files")

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
CHUNK_BYTES = 64 * 1024
UPLOADS = ".uploads"  # multipart uploads, by file id; not writable by path
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
DRIVE = re.compile(r"^[A-Za-z]:/")
MAGIC = ((b"%PDF-", "application/pdf"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
         (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


# ---------------------------------------------------------------- paths and the disk
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


def _unavailable(error: OSError) -> ApiError:
    log.warning("file repository unavailable: %s", error)
    return ApiError(503, "The file repository is unavailable.", type="service_unavailable",
                    code="repository_unavailable")


def _outside(segment: str) -> ApiError:
    return ApiError(400, f"Invalid file path: '{segment}' is a link or a file, not a directory of the file space.",
                    param="path", code="invalid_path")


class FileRepository:
    """The key spaces under one root directory."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    def write(self, key_id: str, segments: list[str], chunks: Iterable[bytes], max_bytes: int) -> int:
        """Store the chunks at `segments` inside the key's space, atomically; the size written."""
        *folders, name = segments
        with self._directory(key_id, folders, create=True) as folder:
            _refuse_link_or_directory(folder, name)
            temporary = f".tmp-{secrets.token_hex(8)}"
            try:
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
            except OSError as error:
                raise _unavailable(error) from None
            done = False
            try:
                size = _copy(chunks, fd, max_bytes)
                os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
                done = True
                return size
            except OSError as error:
                raise _unavailable(error) from None
            finally:
                if not done:
                    try:
                        os.unlink(temporary, dir_fd=folder)
                    except OSError:
                        pass

    def open(self, key_id: str, segments: list[str]) -> BinaryIO:
        """The stored file for reading (404 when it is gone from disk)."""
        *folders, name = segments
        with self._directory(key_id, folders, create=False) as folder:
            try:
                return os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder), "rb")
            except FileNotFoundError:
                raise ApiError(404, "The file's content is missing from the repository.") from None
            except OSError as error:
                raise _unavailable(error) from None

    def remove(self, key_id: str, segments: list[str]) -> None:
        """Delete the stored file, if it is still there."""
        *folders, name = segments
        try:
            with self._directory(key_id, folders, create=False) as folder:
                os.unlink(name, dir_fd=folder)
        except ApiError as error:
            if error.status != 404:
                raise
        except FileNotFoundError:
            pass
        except OSError as error:
            raise _unavailable(error) from None

    @contextmanager
    def _directory(self, key_id: str, folders: list[str], create: bool) -> Iterator[int]:
        """A descriptor of `folders` inside the space, walked without following links."""
        space = os.path.join(self.root, key_id)
        try:
            os.makedirs(space, mode=0o700, exist_ok=True)
            fd = os.open(space, DIRECTORY_FLAGS)
        except OSError as error:
            raise _unavailable(error) from None
        try:
            for folder in folders:
                if create:
                    try:
                        os.mkdir(folder, 0o700, dir_fd=fd)
                    except FileExistsError:
                        pass
                    except OSError as error:
                        raise _unavailable(error) from None
                try:
                    inner = os.open(folder, DIRECTORY_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    raise ApiError(404, "The file's content is missing from the repository.") from None
                except OSError:  # ELOOP (a link) or ENOTDIR (a file)
                    raise _outside(folder) from None
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)


def _refuse_link_or_directory(folder: int, name: str) -> None:
    try:
        mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise _unavailable(error) from None
    if stat.S_ISLNK(mode) or stat.S_ISDIR(mode):
        raise _outside(name)


def _copy(chunks: Iterable[bytes], fd: int, max_bytes: int) -> int:
    size = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, f"The file is larger than the limit of {max_bytes} bytes.",
                               code="file_too_large")
            out.write(chunk)
    return size


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
            "filename": row.filename, "purpose": row.purpose, "status": "processed", "expires_at": None,
            "status_details": None}


def store_upload(repository: FileRepository, key_id: str, stream: BinaryIO, filename: Optional[str],
                 purpose: str, content_type: Optional[str], max_bytes: int) -> StoredFile:
    """Keep a multipart upload under a new file id."""
    file_id = new_file_id()
    segments = [UPLOADS, file_id]
    size = repository.write(key_id, segments, read_chunks(stream), max_bytes)
    name = os.path.basename((filename or "").replace("\\", "/"))[:MAX_NAME_BYTES] or "upload"
    return StoredFile.create(id=file_id, key_id=key_id, filename=name, path="/".join(segments), purpose=purpose,
                             bytes=size, content_type=_content_type(content_type))


def store_at_path(repository: FileRepository, key_id: str, path: str, stream: BinaryIO,
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


def open_content(repository: FileRepository, row: StoredFile) -> BinaryIO:
    """The stored bytes of a file, for reading in chunks."""
    return repository.open(row.key_id, row.path.split("/"))


def delete_file(repository: FileRepository, row: StoredFile) -> dict:
    """Remove a file from disk and from the table; the deleted object."""
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


# ---------------------------------------------------------------- file ids as inline content
@dataclass
class InlineFile:
    data: str  # base64
    media_type: str
    filename: str

    @property
    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


class _InlineFiles:
    """Loads the key's files by id, once each, for one request."""

    def __init__(self, key_id: Callable[[], str], settings: Settings):
        self._key_id: Callable[[], str] = key_id
        self._key: Optional[str] = None
        self.repository = FileRepository(settings.files_dir)
        self.max_bytes = settings.max_body_bytes
        self.loaded: dict[str, InlineFile] = {}

    @property
    def key_id(self) -> str:
        if self._key is None:
            self._key = self._key_id()
        return self._key

    def load(self, file_id: str) -> InlineFile:
        if file_id not in self.loaded:
            row = get_file(file_id, self.key_id)
            if row.bytes > self.max_bytes:
                raise ApiError(413, f"The file '{file_id}' is too large to send inline ({row.bytes} bytes; "
                                    f"at most {self.max_bytes}).", param="file_id", code="file_too_large")
            with open_content(self.repository, row) as stream:
                content = stream.read(self.max_bytes + 1)
            name = row.filename.rsplit("/", 1)[-1]
            self.loaded[file_id] = InlineFile(base64.b64encode(content).decode("ascii"),
                                              media_type_of(content[:16], name, row.content_type), name)
        return self.loaded[file_id]

    def part(self, part) -> None:
        if isinstance(part, FilePart) and part.file_id and not part.data:
            inline = self.load(part.file_id)
            part.data, part.media_type, part.inlined_from = inline.data, inline.media_type, part.file_id
            part.file_id, part.filename = None, part.filename or inline.filename
        elif isinstance(part, ImagePart) and part.file_id:
            part.url, part.inlined_from, part.file_id = self.load(part.file_id).data_url, part.file_id, None
        elif isinstance(part, ToolResultPart) and isinstance(part.content, list):
            for inner in part.content:
                self.part(inner)

    def chat_body(self, body: dict) -> None:
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for part in content if isinstance(content, list) else []:
                file = part.get("file") if isinstance(part, dict) and part.get("type") == "file" else None
                if isinstance(file, dict) and isinstance(file.get("file_id"), str) and not file.get("file_data"):
                    inline = self.load(file["file_id"])
                    part["file"] = {"file_data": inline.data_url, "filename": file.get("filename") or inline.filename}


def resolve_file_parts(request: Request, key_id: Callable[[], str], settings: Settings,
                       chat_body: Optional[dict] = None) -> None:
    """Make every file id of the key in the request inline content (404 for an id that is not the key's).

    `key_id` gives the key's id; it is asked only when the request names a file.

    `FilePart.file_id` becomes base64 `data` with its media type and name,
    `ImagePart.file_id` a data URL. `chat_body`, a Chat body that may be sent
    upstream as it is, gets its `file.file_id` parts replaced by `file_data`.
    """
    files = _InlineFiles(key_id, settings)
    for message in request.messages:
        for part in message.parts:
            files.part(part)
    if chat_body is not None:
        files.chat_body(chat_body)
