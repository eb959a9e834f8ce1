"""Plain-text email over SMTP, configured by one URL (`smtp://user:pass@host:port` or `smtps://…`).

Under gevent the sockets are patched, so smtplib waits cooperatively.
"""
from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional
from urllib.parse import unquote, urlsplit

log = logging.getLogger("onekeyllm.mailer")

DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
TIMEOUT_SECONDS = 15.0


class MailError(Exception):
    """The mail could not be handed to the SMTP server (the message never holds a secret)."""


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect, parsed from ONEKEYLLM_SMTP_URL."""

    scheme: str
    host: str
    port: int
    username: Optional[str] = None
    password: Optional[str] = None

    def __repr__(self) -> str:  # never show the password
        return f"SmtpServer({self.scheme}://{self.host}:{self.port})"


def parse_smtp_url(url: str) -> SmtpServer:
    """The server of an `smtp://` or `smtps://` URL (ValueError otherwise); user and password URL-decoded."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("ONEKEYLLM_SMTP_URL must look like smtp://user:pass@host:port or smtps://…")
    return SmtpServer(scheme=scheme, host=parts.hostname, port=parts.port or DEFAULT_PORTS[scheme],
                      username=unquote(parts.username) if parts.username else None,
                      password=unquote(parts.password) if parts.password is not None else None)


def build_message(sender: str, recipient: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message with the headers a mail server expects."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(body)
    return message


def _connect(server: SmtpServer) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if server.scheme == "smtps":
        return smtplib.SMTP_SSL(server.host, server.port, timeout=TIMEOUT_SECONDS, context=context)
    client = smtplib.SMTP(server.host, server.port, timeout=TIMEOUT_SECONDS)
    client.ehlo()
    if client.has_extn("starttls"):
        client.starttls(context=context)
        client.ehlo()
    return client


def send_mail(smtp_url: str, sender: str, recipient: str, subject: str, body: str) -> None:
    """Hand one plain-text email to the SMTP server; MailError when that fails."""
    try:
        server = parse_smtp_url(smtp_url)
    except ValueError as error:
        raise MailError(str(error)) from None
    message = build_message(sender, recipient, subject, body)
    try:
        with _connect(server) as client:
            if server.username:
                client.login(server.username, server.password or "")
            client.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        # The class and the SMTP status only: a server reply could quote what it was sent.
        status = getattr(error, "smtp_code", None)
        log.warning("mail to the SMTP server %s:%s failed: %s%s", server.host, server.port,
                    type(error).__name__, f" ({status})" if status else "")
        raise MailError(f"The mail server refused or could not be reached ({type(error).__name__}).") from None
