"""Header blocks read by http/header_block.py are the ones the email parser would have produced, and
whatever is not a plain block still goes to the email parser (its defects are what framing checks read)."""
from __future__ import annotations

import http.client
import io
import random

import pytest
from conftest import run_script
from gevent import pywsgi

from service.http import header_block

BLOCKS = [
    b"Host: 127.0.0.1:8000\r\nAuthorization: Bearer sk-lazytech-x\r\nContent-Length: 12\r\n\r\n",
    b"HoSt:a\r\nX-Empty:\r\nX-Spaces:   padded value  \t\r\n\r\n",
    b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Type: application/json; charset=utf-8\r\n\r\n",
    b"Host: a\nAccept: */*\n\n",  # bare LF line ends
    b"X-Latin: caf\xe9 \xff\r\n\r\n",
    b"\r\n",  # no header at all
    # what the email parser must see: folding, malformed lines, MIME containers, a block cut short
    b"Host: a\r\nX-Folded: one\r\n two\r\n\r\n",
    b" leading: continuation\r\nHost: a\r\n\r\n",
    b"Content-Length : 5\r\nHost: a\r\n\r\n",
    b"Host: a\r\nno colon here\r\nX: y\r\n\r\n",
    b": no name\r\nHost: a\r\n\r\n",
    b"From someone\r\nHost: a\r\n\r\n",
    b"Host: a\rX-Hidden: b\r\n\r\n",  # a bare CR: a line break to the email parser
    b"Content-Type: multipart/form-data; boundary=x\r\n\r\n",
    b"content-type:  Message/RFC822\r\n\r\n",
    b"Host: a\r\nX-Cut: b\r\n",  # the connection ended before the blank line
    b"X\x00Nul: a\r\n\r\n",
    b"X-Nul: a\x00b\r\n\r\n",
]


def both(block: bytes, cls=http.client.HTTPMessage):
    return (header_block.email_parse_headers(io.BytesIO(block), _class=cls),
            header_block.parse_headers(io.BytesIO(block), _class=cls))


def state(message) -> dict:
    """What a parsed message holds, nested messages and defects by value."""
    fields = {k: v for k, v in vars(message).items() if k not in ("defects", "_payload")}
    payload = message._payload
    fields["_payload"] = [state(part) for part in payload] if isinstance(payload, list) else payload
    fields["defects"] = [type(defect) for defect in message.defects]
    return {"class": type(message), **fields}


def same(expected, got) -> None:
    assert state(got) == state(expected)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("cls", [http.client.HTTPMessage, pywsgi.OldMessage])
def test_a_block_reads_as_the_email_parser_reads_it(block, cls):
    same(*both(block, cls))


def test_random_blocks_read_alike():
    pieces = ["Host", "X-A", "content-type", "Content-Length", ":", ": ", " ", "\t", "\r\n", "\n", "\r", "v",
              "multipart/x", "message/y", "From ", "a=b", "\xe9", "\x00", "(", '"']
    rng = random.Random(18)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14))) + rng.choice(["\r\n\r\n", "\n\n", ""])
        same(*both(text.encode("latin-1")))


def test_only_plain_blocks_skip_the_email_parser(monkeypatch):
    calls = []
    real = header_block.email.parser.Parser.parsestr
    monkeypatch.setattr(header_block.email.parser.Parser, "parsestr",
                        lambda self, text, headersonly=False: calls.append(text) or real(self, text, headersonly))
    header_block.parse_headers(io.BytesIO(BLOCKS[0]))
    assert calls == []
    header_block.parse_headers(io.BytesIO(b"Host: a\r\nX-Folded: one\r\n two\r\n\r\n"))
    assert len(calls) == 1


def test_the_app_installs_it(tmp_path):
    script = ("import http.client, sys\n"
              "from service import create_app\n"
              "from service.http import header_block\n"
              "assert http.client.parse_headers is header_block.email_parse_headers\n"
              f"create_app({{'database_url': 'sqlite:///{tmp_path / 'db.sqlite'}'}})\n"
              "sys.exit(0 if http.client.parse_headers is header_block.parse_headers else 3)\n")
    run_script(script)
