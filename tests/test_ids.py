"""Ids (service/ids.py): random parts from os.urandom through a buffer, never the same twice — across threads,
and across a fork, where the child must not hand out the bytes its parent had read but not used."""
from __future__ import annotations

import os
import re
import threading

from service import ids


def test_ids_have_their_prefix_and_length_and_never_repeat_across_threads():
    seen: list = []

    def make():
        seen.extend(ids.new_id("req", nbytes=16) for _ in range(3000))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 24000 == len(set(seen))
    assert all(re.fullmatch(r"req_[0-9a-f]{32}", value) for value in seen)
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", ids.new_id("chatcmpl", "-"))
    assert len(ids.random_bytes(ids.BUFFER_BYTES)) == ids.BUFFER_BYTES  # past the buffer: read directly


def test_a_forked_child_does_not_reuse_its_parents_buffered_bytes():
    ids.new_id("x")  # the parent has a buffer with unread bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out
        try:
            os.write(write, " ".join(ids.new_id("x") for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = set(os.read(read, 65536).decode().split())
    os.close(read)
    parent = {ids.new_id("x") for _ in range(50)}
    assert status == 0 and len(child) == 50
    assert not child & parent, "the child handed out ids its parent also made"
