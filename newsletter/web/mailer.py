"""The web app's own mails (confirm a sign-up, already subscribed, confirm a new address).

Each is an MJML + text + subject template in ``templates/email`` (or the operator's
``templates_dir``, when it has one), compiled once and filled by autoescaping Jinja,
like the issue. They are sent one at a time through ``SmtpPool`` from a background
task, so a request answers at once and in the same time whatever happens to the mail.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any

import jinja2
from mjml import mjml2html

from newsletter.db import SessionFactory
from newsletter.delivery import smtp_config
from newsletter.delivery.smtp import SmtpPool
from newsletter.errors import NewsletterError, TemplateError
from newsletter.mail.addresses import needs_smtputf8, smtp_address
from newsletter.mail.failures import record_mail_failure
from newsletter.mail.message import one_line
from newsletter.mail.render import RenderedIssue
from newsletter.models import utcnow
from newsletter.resources import resource_path
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
    """Renders and sends the web app's mails."""

    def __init__(
        self, settings: Settings, *, list_name: str, sessions: SessionFactory | None = None
    ) -> None:
        self._settings = settings
        self._sessions = sessions  # where failures are stored (None: only logged)
        self._list_name = list_name
        self._dirs = [d for d in (settings.templates_dir,) if d is not None]
        self._dirs.append(resource_path("templates") / "email")
        self._html = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
        self._text = jinja2.Environment(
            autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
        )
        self._cache: dict[str, jinja2.Template] = {}
        self._lock = threading.Lock()

    def _path(self, name: str) -> Path:
        for directory in self._dirs:
            if (directory / name).is_file():
                return directory / name
        raise TemplateError(f"template {name} not found in {', '.join(map(str, self._dirs))}")

    def _template(self, name: str) -> jinja2.Template:
        with self._lock:
            template = self._cache.get(name)
            if template is None:
                path = self._path(name)
                try:
                    source = path.read_text(encoding="utf-8")
                    if name.endswith(".mjml"):
                        template = self._html.from_string(mjml2html(source, fonts={}))
                    else:
                        template = self._text.from_string(source)
                except (OSError, ValueError, jinja2.TemplateError) as exc:
                    raise TemplateError(f"template {path} does not compile: {exc}") from None
                self._cache[name] = template
            return template

    def check(self) -> None:
        """Compile every template now, so a broken one stops the app at start-up."""
        for base in TEMPLATES:
            for suffix in (".mjml", ".txt", ".subject.txt"):
                self._template(base + suffix)

    def render(self, mail: Mail) -> RenderedIssue:
        context: dict[str, Any] = {"list_name": self._list_name, "email": mail.to}
        context.update(mail.context)
        subject = " ".join(self._template(f"{mail.template}.subject.txt").render(context).split())
        context["subject"] = subject
        html = self._template(f"{mail.template}.mjml").render(context)
        text = self._template(f"{mail.template}.txt").render(context)
        return RenderedIssue(subject=subject, html=html, text=text)

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
