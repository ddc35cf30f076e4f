"""Sending email over SMTP (stdlib smtplib), configured from the environment.

| variable          | default                          |
| ----------------- | -------------------------------- |
| SMTP_HOST         | 127.0.0.1                        |
| SMTP_PORT         | 1025                             |
| SMTP_USER         | (none: no login)                 |
| SMTP_PASSWORD     | (none)                           |
| SMTP_STARTTLS     | false                            |
| SMTP_TIMEOUT      | 10 (seconds, connect and each command) |
| SHOP_EMAIL_FROM   | "<SHOP_NAME> <no-reply@localhost>" |

There is no silent fallback: when a message cannot be handed to the server, `send` raises a
`MailerError` subclass (`MailerUnavailable`: no connection; `MailerRejected`: the server said no)
whose `shopper_message` the caller can show as an honest reply.
"""
from __future__ import annotations

import os
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Optional

from shop.settings import shop_settings

__all__ = ["MailerError", "MailerRejected", "MailerUnavailable", "SmtpMailer", "SmtpSettings", "smtp_settings"]

SHOPPER_MESSAGE = "I couldn't send the email just now. Please try again in a few minutes."


class MailerError(RuntimeError):
    """The message was not sent. str() is for logs; `shopper_message` is safe to show a shopper."""

    shopper_message = SHOPPER_MESSAGE


class MailerUnavailable(MailerError):
    """The SMTP server could not be reached (refused, timed out, TLS failed, connection dropped)."""


class MailerRejected(MailerError):
    """The SMTP server answered but refused the login, the sender or the recipient."""


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    value = value.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a boolean: use true or false")


def _number(name: str, default: float, kind=int):
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    try:
        return kind(value.strip())
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a number") from None


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 1025
    user: str = ""
    password: str = ""
    starttls: bool = False
    sender: str = ""
    timeout: float = 10.0


def smtp_settings() -> SmtpSettings:
    """Read on each call, so a long-running server and the tests see their own environment."""
    sender = os.environ.get("SHOP_EMAIL_FROM", "").strip() or formataddr((shop_settings().name, "no-reply@localhost"))
    return SmtpSettings(
        host=os.environ.get("SMTP_HOST", "").strip() or "127.0.0.1",
        port=_number("SMTP_PORT", 1025),
        user=os.environ.get("SMTP_USER", ""),
        password=os.environ.get("SMTP_PASSWORD", ""),
        starttls=_flag("SMTP_STARTTLS", False),
        sender=sender,
        timeout=_number("SMTP_TIMEOUT", 10.0, float),
    )


class SmtpMailer:
    """`send(to, subject, body)` delivers one plain-text message or raises a MailerError."""

    def __init__(self, settings: Optional[SmtpSettings] = None):
        self.settings = settings or smtp_settings()

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailerUnavailable(f"cannot connect to the SMTP server at {self.where}: {_reason(exc)}") from exc
        try:
            client.ehlo()
            if s.starttls:
                if not client.has_extn("starttls"):
                    raise MailerUnavailable(
                        f"the SMTP server at {self.where} does not offer STARTTLS but SMTP_STARTTLS is true"
                    )
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if s.user:
                try:
                    client.login(s.user, s.password)
                except smtplib.SMTPAuthenticationError as exc:
                    raise MailerRejected(
                        f"the SMTP server at {self.where} refused the login of {s.user!r}: {_reason(exc)}"
                    ) from exc
                except smtplib.SMTPNotSupportedError as exc:
                    raise MailerRejected(
                        f"the SMTP server at {self.where} does not support login (SMTP_USER is set)"
                    ) from exc
        except MailerError:
            _close(client)
            raise
        except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
            _close(client)
            raise MailerUnavailable(f"the SMTP session with {self.where} failed: {_reason(exc)}") from exc
        return client

    def check(self) -> None:
        """Connect (and log in) without sending: raises the same errors `send` would."""
        client = self._connect()
        _close(client)

    def send(self, to: str, subject: str, body: str) -> str:
        """Send a plain-text message; returns its Message-ID."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = to
        message["Subject"] = subject
        message_id = make_msgid(domain="shop.local")
        message["Message-ID"] = message_id
        message.set_content(body)
        client = self._connect()
        try:
            refused = client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailerRejected(f"the SMTP server at {self.where} refused the recipient {to!r}") from exc
        except smtplib.SMTPSenderRefused as exc:
            raise MailerRejected(
                f"the SMTP server at {self.where} refused the sender {self.settings.sender!r}: {_reason(exc)}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise MailerRejected(f"the SMTP server at {self.where} refused the message: {_reason(exc)}") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise MailerUnavailable(f"sending through {self.where} failed: {_reason(exc)}") from exc
        finally:
            _close(client)
        if refused:
            raise MailerRejected(f"the SMTP server at {self.where} refused the recipient {to!r}")
        return message_id


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {text}".strip()
    if isinstance(exc, socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()
