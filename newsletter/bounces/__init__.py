"""Asynchronous bounces: read delivery status notifications and apply the bounce rules.

A relay that accepted an issue and failed to deliver it later reports so in a DSN
sent to the envelope sender. This module reads those DSNs from a Maildir, an IMAP
folder or a POP3 mailbox, finds each failed recipient (RFC 3464 fields when the DSN
has them, flufl.bounce's detectors for the many bounces that are not standard),
matches it to the delivery it is about, and hands it to
``newsletter.delivery.suppression.apply_bounce``, the same rules SMTP refusals go through.

Matching, most trustworthy first: the VERP address the DSN was delivered to (signed,
so it cannot be forged); the Message-ID of the returned original; else the address
alone. Reading is safe to repeat: a mailbox message is only marked done (seen, or
deleted on POP3) after its bounces are committed, and a bounce already recorded
changes nothing the second time.
"""

from __future__ import annotations

import contextlib
import email
import imaplib
import logging
import os
import poplib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from email import policy
from email.message import Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses
from functools import partial
from pathlib import Path
from typing import Literal

from flufl.bounce import all_failures
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.delivery.suppression import BounceOutcome, apply_bounce, normalise
from newsletter.errors import ConfigError, NewsletterError
from newsletter.mail.verp import check_return_path, parse_verp, return_path_base
from newsletter.migrations import require_current
from newsletter.models import Bounce, BounceKind, Delivery, Subscriber
from newsletter.settings import Settings

log = logging.getLogger(__name__)

SOURCE = "dsn"
# Headers a delivery agent stamps with the envelope recipient (the VERP address), in
# order of trust; To and Return-Path as last resorts.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"^\s*(?:smtp\s*;)?\s*([245]\d\d)\b", re.IGNORECASE)
_QUOTED_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^>\s]+>)", re.I | re.M)
_OUR_MESSAGE_ID = re.compile(r"<issue-\d{8}-(\d{1,18})@[^>]+>")
_MAX_REPLY = 2000
_TIMEOUT = 60.0  # seconds per IMAP/POP3 operation


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


@dataclass(frozen=True)
class BounceResult:
    """What became of one report: the delivery it was matched to, and how."""

    report: BounceReport
    email: str
    delivery_id: int | None
    matched_by: Literal["verp", "message-id", "address"]
    outcome: BounceOutcome


@dataclass
class BounceSummary:
    """Counts of one run over a bounce mailbox."""

    read: int = 0  # messages read
    bounces: int = 0  # failed or delayed recipients found in them
    hard: int = 0
    soft: int = 0
    unmatched: int = 0  # bounces matched to no delivery (recorded against the address)
    not_bounces: int = 0  # messages that report no failure (junk, auto-replies, broken)
    errors: int = 0  # messages that could not be processed (left for the next run)

    def add(self, results: list[BounceResult]) -> None:
        self.read += 1
        if not results:
            self.not_bounces += 1
        for result in results:
            self.bounces += 1
            if result.report.kind == BounceKind.HARD:
                self.hard += 1
            else:
                self.soft += 1
            if result.delivery_id is None:
                self.unmatched += 1

    def __str__(self) -> str:
        return (
            f"read {self.read} messages: {self.bounces} bounces ({self.hard} hard, "
            f"{self.soft} soft, {self.unmatched} unmatched), {self.not_bounces} not bounces, "
            f"{self.errors} errors"
        )


# --------------------------------------------------------------------------- parsing


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
    known = {normalise(r.recipient) for r in reports}
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
            if not recipient or normalise(recipient) in known:
                continue
            known.add(normalise(recipient))
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
                found = _message_id(payload[0].get("Message-ID"))
                if found:
                    return found
        elif content_type in ("text/rfc822-headers", "message/global-headers"):
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                headers = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
                found = _message_id(headers.get("Message-ID"))
                if found:
                    return found
    # Non-MIME bounces (older Exim, qmail ...) quote the original below their text.
    _head, _sep, body = raw.partition(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n")
    match = _QUOTED_MESSAGE_ID.search(body)
    return match.group(1).decode("ascii", "replace") if match else None


def _message_id(value: object) -> str | None:
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
                    return _one_line(candidate)[:_MAX_REPLY]
        break
    return ""


# --------------------------------------------------------------------------- matching


def envelope_recipients(raw: bytes) -> list[str]:
    """The addresses a DSN was delivered to, as the receiving system recorded them."""
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    except Exception:
        return []
    found: list[str] = []
    for name in _ENVELOPE_HEADERS:
        values = [str(v) for v in headers.get_all(name, [])]
        found.extend(address for _name, address in getaddresses(values) if address)
    return found


def process_bounce(session: Session, raw: bytes, *, settings: Settings) -> list[BounceResult]:
    """Parse one DSN, match each report to a delivery and apply the bounce rules.

    The caller commits. Processing the same DSN again records nothing new.
    """
    reports = parse_dsn(raw)
    if not reports:
        return []
    verp_id = _verp_delivery_id(raw, settings)
    dsn_id = _dsn_message_id(raw)
    results = []
    for report in reports:
        report = replace(report, verp_delivery_id=verp_id)
        results.append(_apply(session, report, dsn_id=dsn_id, settings=settings))
    return results


def _verp_delivery_id(raw: bytes, settings: Settings) -> int | None:
    # Tried even when verp is off now: bounces for mail sent while it was on still
    # arrive, and the signature makes a match trustworthy either way.
    base = return_path_base(settings)
    secret = settings.secret_key.get_secret_value()
    for address in envelope_recipients(raw):
        delivery_id = parse_verp(address, return_path=base, secret=secret)
        if delivery_id is not None:
            return delivery_id
    return None


def _dsn_message_id(raw: bytes) -> str | None:
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    except Exception:
        return None
    return _message_id(headers.get("Message-ID"))


def _match(
    session: Session, report: BounceReport
) -> tuple[int | None, str, Literal["verp", "message-id", "address"]]:
    """(delivery id, address to bounce, how) for one report."""
    if report.verp_delivery_id is not None and _same_message(session, report):
        found = _delivery_email(session, report.verp_delivery_id)
        if found is not None:
            return report.verp_delivery_id, found, "verp"
    if report.original_message_id:
        delivery_id = _delivery_by_message_id(session, report.original_message_id)
        if delivery_id is not None:
            found = _delivery_email(session, delivery_id)
            if found is not None:
                return delivery_id, found, "message-id"
    return None, report.recipient, "address"


def _same_message(session: Session, report: BounceReport) -> bool:
    """Whether the delivery a VERP address names can be the message reported on.

    SQLite reuses the highest ids after a delete, so a late bounce for a deleted
    subscriber's issue may name an id that now belongs to someone else's delivery. Our
    Message-IDs carry the delivery id and the edition: a report quoting one of ours for
    this very id that is not the one stored for it is about the earlier delivery.
    """
    quoted = _OUR_MESSAGE_ID.fullmatch(report.original_message_id or "")
    if quoted is None or int(quoted.group(1)) != report.verp_delivery_id:
        return True
    stored = session.scalar(
        select(Delivery.message_id).where(Delivery.id == report.verp_delivery_id)
    )
    return stored is None or stored == report.original_message_id


def _delivery_email(session: Session, delivery_id: int) -> str | None:
    email_address: str | None = session.scalar(
        select(Subscriber.email)
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.id == delivery_id)
    )
    return email_address


def _delivery_by_message_id(session: Session, message_id: str) -> int | None:
    # Our Message-IDs carry the delivery id: a primary-key look-up, checked against the
    # stored Message-ID; anything else falls back to searching the column.
    ours = _OUR_MESSAGE_ID.fullmatch(message_id)
    if ours is not None:
        stored = session.scalar(
            select(Delivery.message_id).where(Delivery.id == int(ours.group(1)))
        )
        if stored == message_id:
            return int(ours.group(1))
    delivery_id: int | None = session.scalar(
        select(Delivery.id).where(Delivery.message_id == message_id).limit(1)
    )
    return delivery_id


def _apply(
    session: Session, report: BounceReport, *, dsn_id: str | None, settings: Settings
) -> BounceResult:
    delivery_id, address, matched_by = _match(session, report)
    reply = " ".join(part for part in (report.status, report.diagnostic) if part)
    if normalise(address) != normalise(report.recipient):
        # A forwarded address failed: the delivery's own address is what bounced.
        reply = f"{reply} (reported for {report.recipient})".strip()
    if dsn_id:
        reply = f"{reply} [DSN {dsn_id}]".strip()
    reply = reply[:_MAX_REPLY]
    if delivery_id is None and _already_recorded(session, address, report.kind, reply):
        # apply_bounce de-duplicates per delivery; an unmatched bounce is recognised
        # by its text, which names the DSN.
        outcome = BounceOutcome(recorded=False, suppressed=False)
        return BounceResult(report, normalise(address), None, matched_by, outcome)
    outcome = apply_bounce(
        session,
        email=address,
        delivery_id=delivery_id,
        kind=report.kind,
        source=SOURCE,
        code=report.smtp_code,
        reply=reply,
        bounce_limit=settings.bounce_limit,
    )
    return BounceResult(report, normalise(address), delivery_id, matched_by, outcome)


def _already_recorded(session: Session, address: str, kind: BounceKind, reply: str) -> bool:
    known = session.scalar(
        select(Bounce.id)
        .where(
            Bounce.email == normalise(address),
            Bounce.delivery_id.is_(None),
            Bounce.kind == kind,
            Bounce.source == SOURCE,
            Bounce.reply == reply,
        )
        .limit(1)
    )
    return known is not None


# --------------------------------------------------------------------------- mailboxes


def _process_one(
    session_factory: SessionFactory,
    raw: bytes,
    settings: Settings,
    summary: BounceSummary,
    done: Callable[[], None],
) -> None:
    """Process one message in its own transaction, then mark it done; count an error
    (and leave the message for the next run) if anything fails."""
    try:
        with session_factory.begin() as session:
            results = process_bounce(session, raw, settings=settings)
        done()
    except Exception:
        log.exception("could not process a message from the bounce mailbox")
        summary.read += 1
        summary.errors += 1
        return
    summary.add(results)


def process_maildir(
    session_factory: SessionFactory, path: Path, *, settings: Settings
) -> BounceSummary:
    """Process every message of a Maildir not yet seen, and mark each seen after commit.

    Messages are renamed into cur/ with the ``S`` flag as the Maildir convention says
    (never rewritten), so a mail client sees them as read and the next run skips them.
    """
    _check_maildir(path)
    check_return_path(return_path_base(settings))
    summary = BounceSummary()
    for message_path in _unseen(path):
        try:
            raw = message_path.read_bytes()
        except FileNotFoundError:
            continue  # taken by another reader since the directory was listed
        except OSError:
            log.exception("cannot read %s", message_path)
            summary.read += 1
            summary.errors += 1
            continue
        _process_one(
            session_factory, raw, settings, summary, partial(_mark_seen, path, message_path)
        )
    return summary


def _check_maildir(path: Path) -> None:
    if not path.exists():
        raise NewsletterError(f"bounce Maildir {path} does not exist")
    if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
        raise NewsletterError(f"{path} is not a Maildir (it needs new/, cur/ and tmp/)")


def _info(name: str) -> tuple[str, str]:
    """(unique name, flags) of a Maildir file name ``unique:2,FLAGS``."""
    unique, sep, info = name.partition(":2,")
    return unique, info if sep else ""


def _unseen(path: Path) -> Iterator[Path]:
    for sub in ("new", "cur"):
        for name in sorted(os.listdir(path / sub)):
            if name.startswith("."):
                continue
            if sub == "cur" and "S" in _info(name)[1]:
                continue
            yield path / sub / name


def _mark_seen(maildir: Path, message_path: Path) -> None:
    unique, flags = _info(message_path.name)
    flags = "".join(sorted(set(flags) | {"S"}))
    message_path.rename(maildir / "cur" / f"{unique}:2,{flags}")


def process_mailbox(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Process the bounce mailbox the settings name (maildir, imap or pop3)."""
    check_mailbox_settings(settings)
    check_return_path(return_path_base(settings))
    if settings.bounce_mailbox == "imap":
        return _process_imap(session_factory, settings)
    if settings.bounce_mailbox == "pop3":
        return _process_pop3(session_factory, settings)
    assert settings.bounce_maildir is not None  # checked above
    return process_maildir(session_factory, settings.bounce_maildir, settings=settings)


def check_mailbox_settings(settings: Settings) -> None:
    """Refuse a bounce mailbox configuration that cannot work, naming the setting."""
    kind = settings.bounce_mailbox
    if kind == "none":
        raise ConfigError(
            "invalid setting bounce_mailbox (NEWSLETTER_BOUNCE_MAILBOX): none; set it to "
            "maildir, imap or pop3 (or pass --maildir PATH)"
        )
    if kind == "maildir":
        required: tuple[tuple[str, object], ...] = (("bounce_maildir", settings.bounce_maildir),)
    else:
        required = (
            ("bounce_host", settings.bounce_host),
            ("bounce_username", settings.bounce_username),
            ("bounce_password", settings.bounce_password),
        )
    for name, value in required:
        if not value:
            raise ConfigError(
                f"invalid setting {name} (NEWSLETTER_{name.upper()}): not set, "
                f"but bounce_mailbox is {kind}"
            )


def _server_settings(settings: Settings) -> tuple[str, str, str]:
    """(host, username, password) for IMAP or POP3 (checked to be set)."""
    password = settings.bounce_password.get_secret_value() if settings.bounce_password else ""
    return settings.bounce_host or "", settings.bounce_username or "", password


def _process_imap(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Fetch UNSEEN messages of ``bounce_folder`` and flag each \\Seen after commit."""
    host, username, password = _server_settings(settings)
    summary = BounceSummary()
    try:
        client: imaplib.IMAP4 = (
            imaplib.IMAP4_SSL(host, settings.bounce_port or 993, timeout=_TIMEOUT)
            if settings.bounce_tls
            else imaplib.IMAP4(host, settings.bounce_port or 143, timeout=_TIMEOUT)
        )
    except (imaplib.IMAP4.error, OSError) as exc:
        raise NewsletterError(f"cannot reach the bounce mailbox imap://{host}: {exc}") from None
    try:
        client.login(username, password)
        status, _ = client.select(_imap_quote(settings.bounce_folder))
        if status != "OK":
            raise NewsletterError(f"IMAP folder {settings.bounce_folder!r} cannot be selected")
        _status, data = client.uid("SEARCH", "UNSEEN")
        uids = data[0].split() if data and isinstance(data[0], bytes) else []
        for uid in uids:
            raw = _imap_fetch(client, uid.decode("ascii"))
            if raw is None:
                summary.read += 1
                summary.errors += 1
                continue
            seen = partial(_imap_seen, client, uid.decode("ascii"))
            _process_one(session_factory, raw, settings, summary, seen)
    except (imaplib.IMAP4.error, OSError) as exc:
        raise NewsletterError(f"bounce mailbox imap://{host}: {exc}") from None
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return summary


def _imap_quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _imap_fetch(client: imaplib.IMAP4, uid: str) -> bytes | None:
    # BODY.PEEK so that a message whose processing fails stays unseen.
    status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    if status != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _imap_seen(client: imaplib.IMAP4, uid: str) -> None:
    status, _ = client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    if status != "OK":
        raise NewsletterError(f"IMAP server refused to flag message {uid} seen")


def _process_pop3(session_factory: SessionFactory, settings: Settings) -> BounceSummary:
    """Retrieve every message and delete each after its bounces are committed (the
    deletions take effect at QUIT; a crash before then only means re-reading)."""
    host, username, password = _server_settings(settings)
    summary = BounceSummary()
    try:
        client: poplib.POP3 = (
            poplib.POP3_SSL(host, settings.bounce_port or 995, timeout=_TIMEOUT)
            if settings.bounce_tls
            else poplib.POP3(host, settings.bounce_port or 110, timeout=_TIMEOUT)
        )
    except (poplib.error_proto, OSError) as exc:
        raise NewsletterError(f"cannot reach the bounce mailbox pop3://{host}: {exc}") from None
    try:
        client.user(username)
        client.pass_(password)
        count, _size = client.stat()
        for number in range(1, count + 1):
            _response, lines, _octets = client.retr(number)
            raw = b"\r\n".join(lines) + b"\r\n"
            delete = partial(_pop3_delete, client, number)
            _process_one(session_factory, raw, settings, summary, delete)
        client.quit()
    except (poplib.error_proto, OSError) as exc:
        client.close()
        raise NewsletterError(f"bounce mailbox pop3://{host}: {exc}") from None
    return summary


def _pop3_delete(client: poplib.POP3, number: int) -> None:
    client.dele(number)


# --------------------------------------------------------------------------- command


def run_bounces(settings: Settings, maildir: Path | None) -> BounceSummary:
    """What ``newsletter bounces [--maildir PATH]`` does: open the database and process
    the given Maildir, or the bounce mailbox the settings configure."""
    if maildir is None:
        check_mailbox_settings(settings)  # before connecting to anything
    engine = make_engine(settings.database_url)
    try:
        require_current(engine)
        sessions = make_session_factory(engine)
        if maildir is not None:
            return process_maildir(sessions, maildir, settings=settings)
        return process_mailbox(sessions, settings)
    finally:
        engine.dispose()
