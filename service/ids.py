"""Object ids in the prefixes clients expect (`resp_`, `msg_`, `chatcmpl-`, `file-`, …).

Their random part comes from the operating system's generator (`os.urandom`, what `secrets` uses), read
4 KiB at a time: a gateway call makes three ids, and each read is a system call (≈ 1 % of a call's CPU on
the bench machine). A forked child forgets its parent's unread bytes, so no two processes hand out the same.
"""
import os
import threading

BUFFER_BYTES = 4096
_lock = threading.Lock()
_buffer = b""
_taken = 0


def random_bytes(count: int) -> bytes:
    """`count` bytes from os.urandom, through a buffer."""
    global _buffer, _taken
    if count > BUFFER_BYTES // 8:
        return os.urandom(count)
    with _lock:
        if _taken + count > len(_buffer):
            _buffer, _taken = os.urandom(BUFFER_BYTES), 0
        start = _taken
        _taken = start + count
        return _buffer[start:start + count]


def _forget() -> None:
    global _buffer, _taken, _lock
    _buffer, _taken, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget)


def new_id(prefix: str, sep: str = "_", nbytes: int = 12) -> str:
    """A random id such as `resp_3f2a…` (sep "-" for `chatcmpl-…` and `file-…`)."""
    return f"{prefix}{sep}{random_bytes(nbytes).hex()}"
