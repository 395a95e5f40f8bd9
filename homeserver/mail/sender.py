"""Sending mail through the operator's SMTP server (config ``email``), with aiosmtplib.

A send that fails (server down, refused, bad credentials) raises ``MatrixError``
500 M_UNKNOWN with a generic message: the client learns that the mail did not go
out, the log says why, and neither carries the message itself (it holds a
validation token).
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from homeserver.config import EmailConfig
from homeserver.errors import MatrixError

log = logging.getLogger("myelin.mail")

SMTP_TIMEOUT_S = 30.0


class Mailer:
    def __init__(self, config: EmailConfig) -> None:
        self.config = config

    @property
    def sender_address(self) -> str:
        """``notif_from`` with Synapse's ``%(app)s`` placeholder filled in."""
        return self.config.notif_from.replace("%(app)s", self.config.app_name)

    async def send(self, to: str, subject: str, text: str) -> None:
        """Send one plain-text message to ``to``; 500 M_UNKNOWN if the SMTP server refuses."""
        cfg = self.config
        if not cfg.smtp_host:
            raise MatrixError(500, "M_UNKNOWN", "Email is not configured on this server")
        import aiosmtplib  # on the first mail, not at start: most servers never send one

        msg = EmailMessage()
        msg["From"] = self.sender_address
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=cfg.smtp_host)
        msg.set_content(text)
        try:
            await aiosmtplib.send(
                msg,
                hostname=cfg.smtp_host,
                port=cfg.smtp_port,
                username=cfg.smtp_user,
                password=cfg.smtp_pass,
                use_tls=cfg.force_tls,
                # STARTTLS when offered; required when the operator says so.
                start_tls=True if cfg.require_transport_security else None,
                timeout=SMTP_TIMEOUT_S,
            )
        except (aiosmtplib.SMTPException, OSError) as e:
            log.warning(
                "sending mail via %s:%d failed: %s", cfg.smtp_host, cfg.smtp_port, type(e).__name__
            )
            raise MatrixError(500, "M_UNKNOWN", "The email could not be sent") from None
