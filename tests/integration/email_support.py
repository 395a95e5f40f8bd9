"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives,
and Myelin servers configured to send their mail through it."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.smtp import SMTP, Envelope, Session

from homeserver.app import RunningServer
from homeserver.clock import Clock
from tests.conftest import ServerFactory, free_port

LINK_RE = re.compile(r"https?://\S+/_synapse/client/email/submit_token\?\S+")


@dataclass
class CapturedMail:
    """What the SMTP server received: envelope recipients and the parsed message."""

    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    def link(self) -> str:
        found = LINK_RE.search(self.text)
        assert found is not None, self.text
        return found.group(0)

    def link_params(self) -> dict[str, str]:
        """sid, client_secret and token, read out of the link in the mail."""
        query = parse_qs(urlsplit(self.link()).query)
        return {k: v[0] for k, v in query.items()}


@dataclass
class Mailbox:
    host: str
    port: int
    received: list[CapturedMail] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(CapturedMail(list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def only_one_for(self, address: str) -> CapturedMail:
        mails = [m for m in self.received if address in m.rcpt_tos]
        assert len(mails) == 1, [m.rcpt_tos for m in self.received]
        return mails[0]

    def take(self, address: str) -> CapturedMail:
        """The one message for ``address`` received since the last take."""
        mail = self.only_one_for(address)
        self.received.remove(mail)
        return mail


@asynccontextmanager
async def smtp_mailbox() -> AsyncIterator[Mailbox]:
    """Run the capturing SMTP server for the duration of the block (in the test's loop)."""
    box = Mailbox("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, hostname="mail.test"), host="127.0.0.1", port=0
    )
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


async def email_server(
    make_server: ServerFactory, mailbox: Mailbox, **overrides: Any
) -> RunningServer:
    """A server that mails through ``mailbox``; its client listener on a fixed port so
    that the links in its mail (built from public_baseurl) reach it."""
    port = free_port()
    email_cfg = {
        "smtp_host": mailbox.host,
        "smtp_port": mailbox.port,
        "notif_from": "%(app)s <matrix@localhost>",
        "app_name": "Myelin Test",
        **overrides.pop("email", {}),
    }
    return await make_server(
        client_listener={"bind": "127.0.0.1", "port": port},
        public_baseurl=f"http://127.0.0.1:{port}",
        email=email_cfg,
        **overrides,
    )


class ShiftedClock(Clock):
    """The wall clock moved ``offset_ms`` ahead: expiry without waiting."""

    def __init__(self, offset_ms: int) -> None:
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms
