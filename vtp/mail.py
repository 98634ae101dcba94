"""Sending e-mail (password-reset links) over SMTP, when VTP_SMTP_HOST is set.

smtplib is blocking: each message is sent in a worker thread. Messages are sent in the
background so that a request's timing says nothing about whether an address exists.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from email.message import EmailMessage

from aiohttp import web

from vtp.config import Config

log = logging.getLogger(__name__)
_TIMEOUT_S = 20.0


class Mailer:
    def __init__(self, config: Config) -> None:
        self._config = config
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def configured(self) -> bool:
        return bool(self._config.smtp_host)

    def _send_now(self, message: EmailMessage) -> None:
        config = self._config
        assert config.smtp_host
        # The EHLO name: the sender's domain (smtplib would otherwise look up this host's
        # FQDN, which takes seconds where reverse DNS is missing).
        helo = config.smtp_from.rpartition("@")[2] or "localhost"
        with smtplib.SMTP(
            config.smtp_host, config.smtp_port, local_hostname=helo, timeout=_TIMEOUT_S
        ) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_username:
                smtp.login(config.smtp_username, config.smtp_password.get_secret_value())
            smtp.send_message(message)

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self._config.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        await asyncio.to_thread(self._send_now, message)

    def send_later(self, to: str, subject: str, text: str) -> None:
        """Send in the background; a failure is logged, never shown to the requester."""

        async def run() -> None:
            try:
                await self.send(to, subject, text)
            except (OSError, smtplib.SMTPException) as exc:
                log.error("could not send e-mail via %s: %s", self._config.smtp_host, exc)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the messages being sent (at shutdown, and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


MAILER = web.AppKey("mailer", Mailer)


async def mailer_ctx(app: web.Application) -> AsyncIterator[None]:
    from vtp.appkeys import CONFIG

    mailer = Mailer(app[CONFIG])
    app[MAILER] = mailer
    yield
    await mailer.drain()
