"""The bounce rules, shared by SMTP refusals and delivery status notifications.

A hard bounce (5xx at RCPT or DATA, or a DSN reporting a permanent failure) is
recorded once per delivery. When an address has collected ``bounce_limit`` hard
bounces it goes on the suppression list, its subscriber is marked bounced, and its
deliveries that have not gone out yet are suppressed: nothing is ever sent to it again.
A soft bounce (a DSN reporting a delay or a temporary failure) is only recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.mail.addresses import address_key
from newsletter.models import (
    Bounce,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.subscribers.accounts import cancel_open_deliveries


@dataclass(frozen=True)
class BounceOutcome:
    recorded: bool  # False: this bounce was already known (same delivery and kind)
    suppressed: bool  # the address is now (or was already) on the suppression list


def is_suppressed(session: Session, email: str) -> bool:
    return session.get(Suppression, address_key(email)) is not None


def suppress(session: Session, email: str, reason: str) -> None:
    """Put an address on the suppression list, mark its subscriber bounced and
    suppress its open deliveries. Idempotent; the first reason is kept."""
    address = address_key(email)
    if session.get(Suppression, address) is None:
        session.add(Suppression(email=address, reason=reason[:200]))
        session.flush()
    subscriber_ids = select(Subscriber.id).where(Subscriber.email == address)
    session.execute(
        update(Subscriber)
        .where(Subscriber.id.in_(subscriber_ids), Subscriber.status == SubscriberStatus.ACTIVE)
        .values(status=SubscriberStatus.BOUNCED)
    )
    cancel_open_deliveries(session, subscriber_ids)


def apply_bounce(
    session: Session,
    *,
    email: str,
    delivery_id: int | None,
    kind: BounceKind,
    source: str,
    code: int | None,
    reply: str,
    bounce_limit: int,
) -> BounceOutcome:
    """Record one bounce and apply the rules; the caller commits."""
    address = address_key(email)
    if delivery_id is not None:
        known = session.scalar(
            select(Bounce.id).where(Bounce.delivery_id == delivery_id, Bounce.kind == kind)
        )
        if known is not None:
            return BounceOutcome(recorded=False, suppressed=is_suppressed(session, address))
    session.add(
        Bounce(
            email=address,
            delivery_id=delivery_id,
            kind=kind,
            source=source,
            code=code,
            reply=reply[:2000],
            created_at=utcnow(),
        )
    )
    session.flush()
    if kind != BounceKind.HARD:
        return BounceOutcome(recorded=True, suppressed=is_suppressed(session, address))
    if delivery_id is not None:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status != DeliveryStatus.BOUNCED)
            .values(
                status=DeliveryStatus.BOUNCED, last_smtp_code=code, last_smtp_reply=reply[:2000]
            )
        )
    hard = session.scalar(
        select(func.count(Bounce.id)).where(Bounce.email == address, Bounce.kind == BounceKind.HARD)
    )
    if (hard or 0) >= bounce_limit:
        suppress(session, address, f"hard bounce ({source}): {code or ''} {reply}".strip())
        return BounceOutcome(recorded=True, suppressed=True)
    return BounceOutcome(recorded=True, suppressed=is_suppressed(session, address))
