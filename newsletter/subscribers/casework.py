"""What an operator does about one subscriber: look at everything stored about them, and
unsubscribe, delete, reopen a sign-up or lift a suppression, each recorded with who did
it and why (``admin_actions``).

One home for the admin subscriber page and ``newsletter subscribers show|unsubscribe|
delete``; the rules themselves (what unsubscribing or deleting does) stay in
``accounts``. Functions take a session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import NewsletterError
from newsletter.mail.addresses import address_key
from newsletter.models import (
    AdminAction,
    Bounce,
    Delivery,
    DeliveryItem,
    Edition,
    Interest,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscribers import accounts

UNSUBSCRIBE = "unsubscribe"
DELETE = "delete"
RESEND_CONFIRMATION = "resend-confirmation"
LIFT_SUPPRESSION = "lift-suppression"


class CaseworkError(NewsletterError):
    """An operator's action that cannot be done as asked (shown to the operator)."""


def find_subscriber(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address (compared as stored, lower case), with their
    interests and topics loaded."""
    return session.scalars(
        select(Subscriber)
        .where(func.lower(Subscriber.email) == address_key(email))
        .options(selectinload(Subscriber.interests).selectinload(Interest.topic))
    ).first()


def record_action(
    session: Session, *, operator: str, action: str, email: str, reason: str = "", now: datetime
) -> None:
    session.add(
        AdminAction(
            operator=operator[:64],
            action=action,
            email=email[:320],
            reason=reason.strip()[:2000],
            created_at=now,
        )
    )


def unsubscribe(
    session: Session, subscriber: Subscriber, *, operator: str, reason: str = "", now: datetime
) -> bool:
    """Unsubscribe them (``accounts.unsubscribe``: their open issues are cancelled);
    False when they were not subscribed (nothing is recorded then)."""
    if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return False
    accounts.unsubscribe(session, subscriber)
    record_action(
        session,
        operator=operator,
        action=UNSUBSCRIBE,
        email=subscriber.email,
        reason=reason,
        now=now,
    )
    return True


def delete(
    session: Session, subscriber: Subscriber, *, operator: str, reason: str = "", now: datetime
) -> None:
    """Delete everything stored about them (``accounts.delete_subscriber``); the note
    that an operator did so keeps the address."""
    email = subscriber.email
    accounts.delete_subscriber(session, subscriber)
    record_action(session, operator=operator, action=DELETE, email=email, reason=reason, now=now)


def reopen_signup(
    session: Session, subscriber: Subscriber, *, operator: str, now: datetime
) -> None:
    """Make their sign-up confirmable again (a new link when the old one lapsed), so a
    confirmation mail can be sent; only for a sign-up waiting for confirmation."""
    if subscriber.status == SubscriberStatus.ACTIVE or (
        subscriber.status != SubscriberStatus.PENDING and subscriber.pending_signup is None
    ):
        raise CaseworkError(f"{subscriber.email} has no sign-up waiting for confirmation")
    if session.get(Suppression, address_key(subscriber.email)) is not None:
        raise CaseworkError(f"{subscriber.email} is suppressed: lift the suppression first")
    if accounts.check_signup(subscriber, _stamp(subscriber), now=now) != "confirmed":
        subscriber.signup_at = now
    record_action(
        session, operator=operator, action=RESEND_CONFIRMATION, email=subscriber.email, now=now
    )


def _stamp(subscriber: Subscriber) -> int | None:
    return accounts.signup_stamp(subscriber.signup_at) if subscriber.signup_at else None


def lift_suppression(
    session: Session, email: str, *, operator: str, reason: str, now: datetime
) -> bool:
    """Take an address off the suppression list, with a reason (required); a subscriber
    it had marked bounced who had confirmed is active again. False: not suppressed."""
    if not reason.strip():
        raise CaseworkError("say why the suppression is lifted (it is recorded)")
    address = address_key(email)
    row = session.get(Suppression, address)
    if row is None:
        return False
    session.delete(row)
    subscriber = find_subscriber(session, address)
    if (
        subscriber is not None
        and subscriber.status == SubscriberStatus.BOUNCED
        and subscriber.confirmed_at is not None
    ):
        subscriber.status = SubscriberStatus.ACTIVE
    record_action(
        session, operator=operator, action=LIFT_SUPPRESSION, email=address, reason=reason, now=now
    )
    return True


# --- the record -------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryLine:
    edition: str
    status: str
    attempts: int
    code: int | None
    reply: str
    sent_at: datetime | None
    papers: int


@dataclass(frozen=True)
class RatingLine:
    value: int  # +1 more like this, -1 less
    paper: str  # arXiv id
    title: str
    at: datetime


@dataclass(frozen=True)
class BounceLine:
    kind: str
    source: str
    code: int | None
    reply: str
    at: datetime


@dataclass(frozen=True)
class ActionLine:
    action: str
    operator: str
    reason: str
    at: datetime


@dataclass
class SubscriberRecord:
    """Everything an operator looks at about one subscriber."""

    id: int
    email: str
    name: str
    status: str  # active, paused, pending, unsubscribed, bounced
    created_at: datetime
    confirmed_at: datetime | None
    frequency: str
    send_hour: int
    timezone: str
    locale: str
    topics: list[tuple[str, str]]  # (code, name)
    keywords: list[tuple[str, float]]  # (phrase, weight)
    signup_waiting: bool  # a sign-up waits for its confirmation
    suppression: tuple[str, datetime] | None  # (reason, since)
    deliveries: list[DeliveryLine] = field(default_factory=list)
    ratings: list[RatingLine] = field(default_factory=list)
    bounces: list[BounceLine] = field(default_factory=list)
    actions: list[ActionLine] = field(default_factory=list)


def subscriber_record(
    session: Session, subscriber: Subscriber, *, limit: int = 20
) -> SubscriberRecord:
    """The subscriber, their interests, newest deliveries (with outcomes), ratings,
    bounces, suppression and what operators did."""
    address = address_key(subscriber.email)
    suppression = session.get(Suppression, address)
    papers = (
        select(func.count(DeliveryItem.rank))
        .where(DeliveryItem.delivery_id == Delivery.id)
        .scalar_subquery()
    )
    deliveries = session.execute(
        select(Delivery, Edition.date, papers)
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Edition.date.desc(), Delivery.id.desc())
        .limit(limit)
    ).all()
    bounces = session.scalars(
        accounts.bounces_of(subscriber)
        .order_by(Bounce.created_at.desc(), Bounce.id.desc())
        .limit(limit)
    )
    actions = session.scalars(
        accounts.actions_about(subscriber)
        .order_by(AdminAction.created_at.desc(), AdminAction.id.desc())
        .limit(limit)
    )
    return SubscriberRecord(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=accounts.status_name(subscriber),
        created_at=subscriber.created_at,
        confirmed_at=subscriber.confirmed_at,
        frequency=subscriber.frequency.value,
        send_hour=subscriber.send_hour,
        timezone=subscriber.timezone,
        locale=subscriber.locale,
        topics=[
            (i.topic_id, i.topic.name if i.topic else i.topic_id)
            for i in subscriber.interests
            if i.topic_id is not None
        ],
        keywords=[(i.keywords, i.weight) for i in subscriber.interests if i.keywords],
        signup_waiting=subscriber.status == SubscriberStatus.PENDING
        or subscriber.pending_signup is not None,
        suppression=(suppression.reason, suppression.created_at) if suppression else None,
        deliveries=[
            DeliveryLine(
                edition=day.isoformat(),
                status=d.status.value,
                attempts=d.attempts,
                code=d.last_smtp_code,
                reply=d.last_smtp_reply or "",
                sent_at=d.sent_at,
                papers=int(count or 0),
            )
            for d, day, count in deliveries
        ],
        ratings=[
            RatingLine(fb.value, paper.external_id, paper.title, fb.created_at)
            for fb, paper in accounts.recent_feedback(session, subscriber, limit=limit)
        ],
        bounces=[
            BounceLine(b.kind.value, b.source, b.code, b.reply, b.created_at) for b in bounces
        ],
        actions=[ActionLine(a.action, a.operator, a.reason, a.created_at) for a in actions],
    )
