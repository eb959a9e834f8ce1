"""The local backend of the file repository: each key's files on disk under ONEKEYLLM_FILES_DIR.

A key's space is `<files_dir>/<key_id>/`. A path inside it is walked one
directory descriptor at a time without ever following a symbolic link, so
nothing is written (or read) outside the space. Bodies go to disk in chunks,
into a temporary file that is renamed into place once complete.
"""
from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from typing import BinaryIO, Iterable, Iterator

from ...api_error import ApiError
from .store import content_missing, too_large
from .store import unavailable as _unavailable

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _outside(segment: str) -> ApiError:
    return ApiError(400, f"Invalid file path: '{segment}' is a link or a file, not a directory of the file space.",
                    param="path", code="invalid_path")


class LocalFileStore:
    """The key spaces under one root directory (the `FileStore` interface)."""

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
                raise content_missing() from None
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

    def check(self) -> None:
        """The root is there (made if need be) and a directory this process may write in."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            usable = stat.S_ISDIR(os.stat(self.root).st_mode) and os.access(self.root, os.W_OK | os.X_OK)
        except OSError as error:
            raise _unavailable(error) from None
        if not usable:
            raise _unavailable(f"{self.root} is not a writable directory")

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
                    raise content_missing() from None
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
                raise too_large(max_bytes)
            out.write(chunk)
    return size
