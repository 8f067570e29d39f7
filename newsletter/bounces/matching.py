"""Matching a bounce report to the delivery it is about, and applying the bounce rules.

Matching, most trustworthy first: the VERP address the DSN was delivered to (signed,
so it cannot be forged); the Message-ID of the returned original; else the address
alone. Each report then goes through ``newsletter.delivery.suppression.apply_bounce``,
the same rules SMTP refusals go through. Processing the same DSN again records
nothing new.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.bounces.dsn import MAX_REPLY, BounceReport, message_id_in, parse_dsn
from newsletter.delivery.suppression import BounceOutcome, apply_bounce
from newsletter.mail.addresses import address_key
from newsletter.mail.verp import parse_verp, return_path_base
from newsletter.models import Bounce, BounceKind, Delivery, Subscriber
from newsletter.settings import Settings

SOURCE = "dsn"
# Headers a delivery agent stamps with the envelope recipient (the VERP address), in
# order of trust; To and Return-Path as last resorts.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Return-Path")
_OUR_MESSAGE_ID = re.compile(r"<issue-\d{8}-(\d{1,18})@[^>]+>")


@dataclass(frozen=True)
class BounceResult:
    """What became of one report: the delivery it was matched to, and how."""

    report: BounceReport
    email: str
    delivery_id: int | None
    matched_by: Literal["verp", "message-id", "address"]
    outcome: BounceOutcome


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
    return message_id_in(headers.get("Message-ID"))


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
    if address_key(address) != address_key(report.recipient):
        # A forwarded address failed: the delivery's own address is what bounced.
        reply = f"{reply} (reported for {report.recipient})".strip()
    if dsn_id:
        reply = f"{reply} [DSN {dsn_id}]".strip()
    reply = reply[:MAX_REPLY]
    if delivery_id is None and _already_recorded(session, address, report.kind, reply):
        # apply_bounce de-duplicates per delivery; an unmatched bounce is recognised
        # by its text, which names the DSN.
        outcome = BounceOutcome(recorded=False, suppressed=False)
        return BounceResult(report, address_key(address), None, matched_by, outcome)
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
    return BounceResult(report, address_key(address), delivery_id, matched_by, outcome)


def _already_recorded(session: Session, address: str, kind: BounceKind, reply: str) -> bool:
    known = session.scalar(
        select(Bounce.id)
        .where(
            Bounce.email == address_key(address),
            Bounce.delivery_id.is_(None),
            Bounce.kind == kind,
            Bounce.source == SOURCE,
            Bounce.reply == reply,
        )
        .limit(1)
    )
    return known is not None
