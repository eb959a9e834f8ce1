"""Object ids in the prefixes clients expect (`resp_`, `msg_`, `chatcmpl-`, `file-`, …).

Their random part comes from the operating system's generator (`os.urandom`, what `secrets` uses), read
4 KiB at a time: a gateway call makes three ids, and each read is a system call (≈ 1 % of a call's CPU on
the bench machine). The buffer is cut into 16-byte slots, each handed out once, by a counter (`next` on an
`itertools.count` is atomic): no lock, and threads that race for a new buffer each read a fresh one. A forked
child forgets its parent's buffer, so no two processes hand out the same bytes.
"""
import itertools
import os

SLOT_BYTES = 16
BUFFER_BYTES = 4096
SLOTS = BUFFER_BYTES // SLOT_BYTES
_slots = itertools.count()
_current = (-1, b"")  # (generation: slot number // SLOTS, its buffer)


def random_bytes(count: int) -> bytes:
    """`count` bytes from os.urandom (through a buffer for up to SLOT_BYTES)."""
    global _current
    if count > SLOT_BYTES:
        return os.urandom(count)
    generation, slot = divmod(next(_slots), SLOTS)
    current = _current
    if current[0] != generation:
        current = _current = (generation, os.urandom(BUFFER_BYTES))
    start = slot * SLOT_BYTES
    return current[1][start:start + count]


def _forget() -> None:
    global _current
    _current = (-1, b"")


os.register_at_fork(after_in_child=_forget)


def new_id(prefix: str, sep: str = "_", nbytes: int = 12) -> str:
    """A random id such as `resp_3f2a…` (sep "-" for `chatcmpl-…` and `file-…`)."""
    return f"{prefix}{sep}{random_bytes(nbytes).hex()}"
