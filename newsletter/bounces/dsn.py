"""Reading delivery status notifications into ``BounceReport``s.

A bounce mailbox receives DSNs from every kind of mail system, and junk besides. This
module turns one raw message into the failed and delayed recipients it reports: the
RFC 3464 fields (and RFC 6533's UTF-8 variant) when the DSN has them, then
flufl.bounce's detectors for the many bounces that are not standard, plus the
Message-ID of the returned original so the report can be matched to its delivery
(``newsletter.bounces.matching``). Pure: no database, and it never raises on junk.
"""

from __future__ import annotations

import email
import logging
import re
from dataclasses import dataclass, replace
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser

from flufl.bounce import all_failures

from newsletter.mail.addresses import address_key
from newsletter.models import BounceKind

log = logging.getLogger(__name__)

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"^\s*(?:smtp\s*;)?\s*([245]\d\d)\b", re.IGNORECASE)
_QUOTED_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^>\s]+>)", re.I | re.M)
# The longest reply text a bounce keeps (the column's size).
MAX_REPLY = 2000


@dataclass(frozen=True)
class BounceReport:
    """One failed (or delayed) recipient reported by one DSN."""

    recipient: str
    kind: BounceKind
    status: str  # RFC 3463 enhanced status, e.g. "5.1.1"; "" when the bounce gives none
    diagnostic: str  # the remote server's words, e.g. "smtp; 550 5.1.1 user unknown"
    original_message_id: str | None
    verp_delivery_id: int | None = None

    @property
    def smtp_code(self) -> int | None:
        """The SMTP reply code in the diagnostic, when it gives one."""
        match = _SMTP_CODE.match(self.diagnostic)
        return int(match.group(1)) if match else None


def parse_dsn(raw: bytes) -> list[BounceReport]:
    """The failed and delayed recipients a bounce reports; [] for anything else.

    Never raises: a bounce mailbox also receives spam, auto-replies and mail that no
    parser can make sense of, and one of those must not stop the others.
    """
    if not raw.strip():
        return []
    try:
        message = email.message_from_bytes(raw)
    except Exception:  # the parser is lenient, but never let junk escape
        log.warning("unparseable message in the bounce mailbox", exc_info=True)
        return []
    try:
        reports = _rfc3464_reports(message)
    except Exception:
        log.warning("malformed delivery-status part", exc_info=True)
        reports = []
    try:
        original = _original_message_id(message, raw)
    except Exception:
        log.warning("cannot read the returned message's headers", exc_info=True)
        original = None
    reports = [replace(r, original_message_id=original) for r in reports]
    known = {address_key(r.recipient) for r in reports}
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripping over a malformed message
        log.warning("flufl.bounce could not scan a message", exc_info=True)
        return reports
    # flufl.bounce recognises dozens of non-standard bounce formats; add what it finds
    # that the RFC 3464 fields did not already report.
    for addresses, kind in ((permanent, BounceKind.HARD), (temporary, BounceKind.SOFT)):
        for address in sorted(addresses):
            recipient = address.decode("ascii", "replace").strip()
            if not recipient or address_key(recipient) in known:
                continue
            known.add(address_key(recipient))
            diagnostic = _diagnostic_from_text(message, recipient)
            status = _STATUS.search(diagnostic)
            reports.append(
                BounceReport(
                    recipient=recipient,
                    kind=kind,
                    status=".".join(status.groups()) if status else "",
                    diagnostic=diagnostic,
                    original_message_id=original,
                )
            )
    return reports


def _rfc3464_reports(message: Message) -> list[BounceReport]:
    reports: list[BounceReport] = []
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        for block in _status_blocks(part):
            report = _recipient_report(block)
            if report is not None:
                reports.append(report)
    return reports


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status part (per-message, then per-recipient)."""
    payload = part.get_payload()
    if part.get_content_type() == "message/delivery-status" and isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    # message/global-delivery-status (RFC 6533, UTF-8): the parser reads it as one
    # message whose body holds the remaining blocks, so split the flattened text.
    if isinstance(payload, list):
        data = b"".join(m.as_bytes() for m in payload if isinstance(m, Message))
    else:
        decoded = part.get_payload(decode=True)
        data = decoded if isinstance(decoded, bytes) else b""
    text = data.decode("utf-8", "replace")
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser().parsestr(chunk.strip() + "\n") for chunk in chunks if chunk.strip()]


def _recipient_report(block: Message) -> BounceReport | None:
    recipient = _typed_address(block.get("Original-Recipient")) or _typed_address(
        block.get("Final-Recipient")
    )
    if not recipient:
        return None  # the per-message block, or a block without a recipient
    action = _one_line(block.get("Action", "")).lower()
    status_match = _STATUS.search(_one_line(block.get("Status", "")))
    status = ".".join(status_match.groups()) if status_match else ""
    if action.startswith(("fail", "error")):
        kind = BounceKind.HARD
    elif action.startswith("delay"):
        kind = BounceKind.SOFT
    elif action:  # delivered, relayed, expanded: not a bounce
        return None
    elif status.startswith("5"):
        kind = BounceKind.HARD
    elif status.startswith("4"):
        kind = BounceKind.SOFT
    else:
        return None
    return BounceReport(
        recipient=recipient,
        kind=kind,
        status=status,
        diagnostic=_one_line(block.get("Diagnostic-Code", "")),
        original_message_id=None,
    )


def _typed_address(value: object) -> str:
    """The address of an RFC 3464 ``address-type; address`` field (rfc822 or utf-8)."""
    if value is None:
        return ""
    text = _one_line(str(value))
    address_type, semicolon, address = text.partition(";")
    if not semicolon:
        address = address_type  # seen in the wild: no address type at all
    elif address_type.strip().lower() not in ("rfc822", "utf-8"):
        return ""
    address = address.strip().strip("<>").strip()
    return address if "@" in address else ""


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _original_message_id(message: Message, raw: bytes) -> str | None:
    """The Message-ID of the returned original (message/rfc822 or text/rfc822-headers
    part), or failing those the first Message-ID header quoted in the bounce's body."""
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found = message_id_in(payload[0].get("Message-ID"))
                if found:
                    return found
        elif content_type in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                headers = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
                found = message_id_in(headers.get("Message-ID"))
                if found:
                    return found
    # Non-MIME bounces (older Exim, qmail ...) quote the original below their text.
    _head, _sep, body = raw.partition(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n")
    match = _QUOTED_MESSAGE_ID.search(body)
    return match.group(1).decode("ascii", "replace") if match else None


def message_id_in(value: object) -> str | None:
    """The first ``<...>`` Message-ID in a header value, if there is one."""
    if value is None:
        return None
    match = re.search(r"<[^>\s]+>", _one_line(str(value)))
    return match.group(0) if match else None


def _diagnostic_from_text(message: Message, recipient: str) -> str:
    """The line of a non-standard bounce that mentions the recipient with an SMTP code."""
    for part in message.walk():
        if part.get_content_type() != "text/plain":
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        lines = data.decode(part.get_content_charset() or "utf-8", "replace").splitlines()
        for index, line in enumerate(lines):
            if recipient.lower() not in line.lower():
                continue
            for candidate in [line, *lines[index + 1 : index + 4]]:
                if re.search(r"\b[45]\d\d\b", candidate):
                    return _one_line(candidate)[:MAX_REPLY]
        break
    return ""
