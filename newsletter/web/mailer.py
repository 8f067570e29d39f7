"""The web app's own mails (confirm a sign-up, already subscribed, confirm a new address).

Each is an MJML + text + subject template in ``templates/email`` (or the operator's
``templates_dir``, when it has one), rendered by the issue's renderer
(``newsletter.mail.render``) in the subscriber's language where one is known, English
otherwise; this module only builds the message and sends it. They are sent one at a
time through ``SmtpPool`` from a background task, so a request answers at once and in
the same time whatever happens to the mail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from newsletter.db import SessionFactory
from newsletter.delivery.smtp import SmtpPool, smtp_config
from newsletter.errors import NewsletterError
from newsletter.i18n import normalise_locale
from newsletter.mail.addresses import needs_smtputf8, smtp_address
from newsletter.mail.failures import record_mail_failure
from newsletter.mail.message import one_line
from newsletter.mail.render import RenderedIssue, Renderer
from newsletter.models import utcnow
from newsletter.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = ("confirm", "already", "address")


@dataclass(frozen=True)
class Mail:
    to: str
    template: str
    context: dict[str, str]
    locale: str | None = None  # the subscriber's language, where one is known


class Mailer:
    """Builds and sends the web app's mails (rendered by ``newsletter.mail.render``)."""

    def __init__(
        self, settings: Settings, *, list_name: str, sessions: SessionFactory | None = None
    ) -> None:
        self._settings = settings
        self._sessions = sessions  # where failures are stored (None: only logged)
        self._list_name = list_name
        self._renderer = Renderer(settings.templates_dir, packaged_fallback=True)

    def check(self) -> None:
        """Compile every template now, so a broken one stops the app at start-up."""
        for base in TEMPLATES:
            self._renderer.check(base)

    def render(self, mail: Mail) -> RenderedIssue:
        """The mail's subject, HTML and text, from the shared renderer."""
        context: dict[str, Any] = {"list_name": self._list_name, "email": mail.to}
        context.update(mail.context)
        return self._renderer.render_mail(
            mail.template, context, locale=normalise_locale(mail.locale)
        )

    def build(self, mail: Mail) -> bytes:
        """The message as bytes for SMTP (raises ``InvalidAddress`` for an address that
        cannot be written on the wire)."""
        rendered = self.render(mail)
        recipient = smtp_address(mail.to)
        # RFC 6532: an address with a non-ASCII local part is written as UTF-8.
        utf8 = needs_smtputf8(recipient)
        message = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
        sender_name, sender_address = parseaddr(self._settings.sender)
        domain = sender_address.rpartition("@")[2] or "localhost"
        message["From"] = Address(one_line(sender_name), addr_spec=sender_address)
        # A plain string: ``Address`` refuses a non-ASCII local part even under SMTPUTF8.
        message["To"] = recipient if utf8 else Address(addr_spec=recipient)
        message["Subject"] = one_line(rendered.subject)
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = make_msgid(idstring=mail.template, domain=domain)
        # RFC 3834: a machine wrote this; auto-responders must not answer it.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.text, subtype="plain", charset="utf-8")
        message.add_alternative(rendered.html, subtype="html", charset="utf-8")
        return message.as_bytes()

    async def send(self, mail: Mail) -> bool:
        """Send one mail. The request has long been answered, so a failure of any kind
        is logged and stored for the operator (``newsletter.mail.failures``)."""
        try:
            data = self.build(mail)
            async with SmtpPool(smtp_config(self._settings)) as pool:
                result = await pool.send(
                    sender=self._settings.sender_address,
                    recipients=[smtp_address(mail.to)],
                    message=data,
                )
        except Exception as exc:  # a background task: nobody else would hear of it
            reason = str(exc) or type(exc).__name__
            await self._failed(
                mail,
                None,
                reason if isinstance(exc, NewsletterError) else (f"{type(exc).__name__}: {reason}"),
            )
            return False
        if result.status != "sent":
            await self._failed(mail, result.code, result.reply)
            return False
        return True

    async def _failed(self, mail: Mail, code: int | None, reason: str) -> None:
        log.error("%s mail to %s not sent: %s %s", mail.template, mail.to, code or "", reason)
        if self._sessions is None:
            return
        try:
            await asyncio.to_thread(_store_failure, self._sessions, mail, code, reason)
        except Exception:  # the log line above is then all there is
            log.exception("could not store the failure of a %s mail", mail.template)


def _store_failure(sessions: SessionFactory, mail: Mail, code: int | None, reason: str) -> None:
    with sessions.begin() as session:
        record_mail_failure(
            session,
            template=mail.template,
            email=mail.to,
            code=code,
            reason=one_line(reason, limit=2000),
            now=utcnow(),
        )
