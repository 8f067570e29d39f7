"""MIME assembly of one issue: multipart/alternative (text, then HTML) and its headers.

Every header value is collapsed to one line before it is set, so no subscriber or
paper data can add a header or a MIME part; the ``email`` package then encodes
non-ASCII (RFC 2047) and folds long lines.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from newsletter.render import RenderedIssue


def one_line(value: str, *, limit: int = 500) -> str:
    """One printable line: whitespace runs (line breaks too) become single spaces,
    control characters (NUL, ESC, DEL ...) go, and the result is cut at ``limit``
    characters so that no header line can outgrow RFC 5322's 998 bytes."""
    text = " ".join(value.split())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    return text[:limit].rstrip()


def message_id_for(*, delivery_id: int, edition: date, sender_address: str) -> str:
    """A Message-ID derived from the delivery, so a resend is recognisable as the same issue."""
    domain = sender_address.rpartition("@")[2] if "@" in sender_address else ""
    return f"<issue-{edition:%Y%m%d}-{delivery_id}@{domain or 'localhost'}>"


@dataclass(frozen=True)
class MessageHeaders:
    sender: str  # 'Name <address>'
    to_address: str
    to_name: str
    message_id: str
    list_id: str
    list_name: str
    unsubscribe_url: str
    date: datetime


def build_message(rendered: RenderedIssue, headers: MessageHeaders) -> bytes:
    """The message as bytes ready for SMTP (CRLF line ends)."""
    message = EmailMessage(policy=policy.SMTP)
    sender_name, sender_address = parseaddr(headers.sender)
    message["From"] = Address(one_line(sender_name), addr_spec=sender_address)
    message["To"] = Address(one_line(headers.to_name, limit=200), addr_spec=headers.to_address)
    message["Subject"] = one_line(rendered.subject)
    message["Date"] = format_datetime(headers.date)
    message["Message-ID"] = headers.message_id
    message["List-Id"] = f"{one_line(headers.list_name)} <{headers.list_id}>"
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    # RFC 8058 one-click unsubscribe. The URL is one long unbreakable token, which the
    # email package would wrongly turn into RFC 2047 encoded words when folding, so
    # these two headers are written as raw bytes ahead of the generated ones.
    url = _header_url(headers.unsubscribe_url)
    raw = (
        f"List-Unsubscribe: <{url}>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    ).encode("ascii")
    return raw + message.as_bytes()


_MAX_HEADER_LINE = 998 - len("List-Unsubscribe: <>")


# RFC 3986 characters, less the angle brackets that delimit the URL in the header.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


def _header_url(url: str) -> str:
    """Check that a URL can stand unencoded on one header line."""
    if not _URL_CHARACTERS.fullmatch(url):
        raise ValueError(f"URL not safe in a header: {url!r}")
    if len(url) > _MAX_HEADER_LINE:
        raise ValueError(f"URL too long for a header line ({len(url)} characters)")
    return url
