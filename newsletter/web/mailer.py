"""The web app's own mails (confirm a sign-up, already subscribed, confirm a new address).

Each is an MJML + text + subject template in ``templates/email`` (or the operator's
``templates_dir``, when it has one), compiled once and filled by autoescaping Jinja,
like the issue. They are sent one at a time through ``SmtpPool`` from a background
task, so a request answers at once and in the same time whatever happens to the mail.
"""

from __future__ import annotations

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

from newsletter.delivery import smtp_config
from newsletter.errors import NewsletterError, TemplateError
from newsletter.message import one_line
from newsletter.models import utcnow
from newsletter.render import RenderedIssue
from newsletter.resources import resource_path
from newsletter.settings import Settings
from newsletter.smtp import SmtpPool

log = logging.getLogger(__name__)

TEMPLATES = ("confirm", "already", "address")


@dataclass(frozen=True)
class Mail:
    to: str
    template: str
    context: dict[str, str]


class Mailer:
    """Renders and sends the web app's mails."""

    def __init__(self, settings: Settings, *, list_name: str) -> None:
        self._settings = settings
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
        """The message as bytes for SMTP."""
        rendered = self.render(mail)
        message = EmailMessage(policy=policy.SMTP)
        sender_name, sender_address = parseaddr(self._settings.sender)
        domain = sender_address.rpartition("@")[2] or "localhost"
        message["From"] = Address(one_line(sender_name), addr_spec=sender_address)
        message["To"] = Address(addr_spec=mail.to)
        message["Subject"] = one_line(rendered.subject)
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = make_msgid(idstring=mail.template, domain=domain)
        # RFC 3834: a machine wrote this; auto-responders must not answer it.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(rendered.text, subtype="plain", charset="utf-8")
        message.add_alternative(rendered.html, subtype="html", charset="utf-8")
        return message.as_bytes()

    async def send(self, mail: Mail) -> bool:
        """Send one mail; a failure is logged (the request has long been answered)."""
        try:
            data = self.build(mail)
            async with SmtpPool(smtp_config(self._settings)) as pool:
                result = await pool.send(
                    sender=self._settings.sender_address, recipients=[mail.to], message=data
                )
        except NewsletterError as exc:
            log.error("%s mail to %s not sent: %s", mail.template, mail.to, exc)
            return False
        if result.status != "sent":
            log.error(
                "%s mail to %s refused: %s %s", mail.template, mail.to, result.code, result.reply
            )
            return False
        return True
