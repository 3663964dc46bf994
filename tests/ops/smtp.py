"""A real SMTP server for the alert tests: aiosmtpd on a free loopback port, optionally with
STARTTLS (a self-signed certificate made by openssl) and AUTH LOGIN/PLAIN."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool


@dataclass
class Inbox:
    """What the server accepted, and the logins it saw."""

    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), msg, session.ssl is not None)
        )
        return "250 OK"

    def bodies(self) -> list[str]:
        return [str(r.message.get_content()) for r in self.received]

    def subjects(self) -> list[str]:
        return [str(r.message["Subject"]) for r in self.received]


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class SmtpServer:
    """``with SmtpServer(port) as inbox:`` runs a real SMTP server until the block ends."""

    def __init__(
        self,
        port: int,
        *,
        tls: tuple[Path, Path] | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.inbox = Inbox()
        kwargs: dict[str, Any] = {}
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            kwargs.update(tls_context=ctx, require_starttls=True)
        if credentials is not None:
            inbox = self.inbox

            def authenticator(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                assert isinstance(data, LoginPassword)
                pair = (data.login.decode(), data.password.decode())
                inbox.logins.append(pair)
                return AuthResult(success=pair == credentials)

            kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port, **kwargs)

    def __enter__(self) -> Inbox:
        self.controller.start()
        return self.inbox

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
