"""What a subscriber can do to their own record: sign up, confirm, change address,
pause, unsubscribe, rate papers, export or delete their data.

The domain side of the subscriber pages and the JSON API, kept out of ``web`` so the CLI
and the scheduler can use it without loading the web app. Functions take a session and
never commit (the caller owns the transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from newsletter.mail.addresses import address_key
from newsletter.mail.failures import forget_mail_failures
from newsletter.models import (
    WAITING,
    AdminAction,
    Bounce,
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Feedback,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscribers.library import library_export
from newsletter.tokens import MAX_AGE, Purpose

# A sign-up waits for its confirmation as long as the confirmation link lives.
SIGNUP_TTL: timedelta = MAX_AGE[Purpose.CONFIRM] or timedelta(days=7)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def signup_stamp(when: datetime) -> int:
    """The number a confirmation link carries to name the sign-up it confirms (microseconds)."""
    return (when - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Choices:
    """What a subscriber wants, validated (see ``forms``)."""

    topics: tuple[str, ...]
    keywords: tuple[tuple[str, float], ...]
    frequency: Frequency
    timezone: str
    send_hour: int
    max_papers: int | None = None
    always_send: bool = False
    send_weekday: int = 0  # 0 = Monday; the day a weekly issue goes out
    locale: str | None = None  # the language of their mails; None keeps what they have

    def as_json(self) -> dict[str, Any]:
        """The choices as JSON data (a pending sign-up keeps them so until confirmed)."""
        return {
            "topics": list(self.topics),
            "keywords": [[phrase, weight] for phrase, weight in self.keywords],
            "frequency": self.frequency.value,
            "timezone": self.timezone,
            "send_hour": self.send_hour,
            "max_papers": self.max_papers,
            "always_send": self.always_send,
            "send_weekday": self.send_weekday,
            "locale": self.locale,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Choices:
        """The choices ``as_json`` stored."""
        return cls(
            topics=tuple(str(topic) for topic in data["topics"]),
            keywords=tuple((str(phrase), float(weight)) for phrase, weight in data["keywords"]),
            frequency=Frequency(data["frequency"]),
            timezone=str(data["timezone"]),
            send_hour=int(data["send_hour"]),
            max_papers=None if data["max_papers"] is None else int(data["max_papers"]),
            always_send=bool(data["always_send"]),
            send_weekday=int(data["send_weekday"]),
            locale=None if data.get("locale") is None else str(data["locale"]),
        )


SignupOutcome = Literal["confirm", "already", "nothing"]


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return session.scalars(select(Subscriber).where(Subscriber.email == email)).one_or_none()


def apply_choices(subscriber: Subscriber, choices: Choices) -> None:
    """Replace the subscriber's interests and delivery settings with ``choices``."""
    wanted = [(t, None, 1.0) for t in choices.topics] + [(None, k, w) for k, w in choices.keywords]
    current = [(i.topic_id, i.keywords, i.weight) for i in subscriber.interests]
    if current != wanted:
        subscriber.interests = [Interest(topic_id=t, keywords=k, weight=w) for t, k, w in wanted]
    subscriber.frequency = choices.frequency
    subscriber.timezone = choices.timezone
    subscriber.send_hour = choices.send_hour
    subscriber.send_weekday = choices.send_weekday
    subscriber.max_papers = choices.max_papers
    subscriber.always_send = choices.always_send
    if choices.locale is not None:
        subscriber.locale = choices.locale


def _signup_open(subscriber: Subscriber, now: datetime) -> bool:
    return subscriber.signup_at is not None and subscriber.signup_at + SIGNUP_TTL > now


def request_signup(
    session: Session, email: str, choices: Choices, *, now: datetime
) -> tuple[SignupOutcome, Subscriber | None]:
    """Record a sign-up and say which mail it needs.

    A new address becomes a pending subscriber with these choices. For a pending or
    unsubscribed one, the choices wait in ``pending_signup`` and nothing of theirs
    changes until the link is confirmed (anyone can type an address into the form).
    Each link confirms the choices it was mailed for: asking again for the same
    choices keeps the open sign-up's link (an earlier mail still works), other choices
    get a new one. An active one is told it is subscribed already and nothing changes.
    A bounced or suppressed address gets nothing. The caller shows the same page in
    every case.
    """
    if session.get(Suppression, email) is not None:
        return "nothing", None
    subscriber = session.scalars(
        select(Subscriber)
        .where(Subscriber.email == email)
        .options(selectinload(Subscriber.interests))
    ).one_or_none()
    if subscriber is None:
        subscriber = Subscriber(email=email, status=SubscriberStatus.PENDING, created_at=now)
        session.add(subscriber)
        # Nobody's record yet, so the choices can be on it at once (the admin lists them).
        apply_choices(subscriber, choices)
    elif subscriber.status == SubscriberStatus.ACTIVE:
        return "already", subscriber
    elif subscriber.status == SubscriberStatus.BOUNCED:
        return "nothing", None
    wanted = choices.as_json()
    if not (_signup_open(subscriber, now) and subscriber.pending_signup == wanted):
        subscriber.signup_at = now
        subscriber.pending_signup = wanted
    session.flush()
    return "confirm", subscriber


def sign_up(
    session: Session, email: str, choices: Choices, *, now: datetime
) -> tuple[SignupOutcome, Subscriber | None]:
    """The one sign-up of the form and the JSON API: forget lapsed sign-ups first (so an
    address whose sign-up lapsed starts afresh), then ``request_signup``."""
    purge_expired_signups(session, now=now)
    return request_signup(session, email, choices, now=now)


ConfirmOutcome = Literal["confirmed", "already", "expired", "invalid"]


def check_signup(subscriber: Subscriber, stamp: int | None, *, now: datetime) -> ConfirmOutcome:
    """What confirming this link would do (nothing is changed)."""
    if subscriber.signup_at is None or stamp != signup_stamp(subscriber.signup_at):
        # Used already (the link is spent once confirmed), or replaced.
        return "already" if subscriber.status == SubscriberStatus.ACTIVE else "invalid"
    if not _signup_open(subscriber, now):
        return "expired"
    return "confirmed"


def confirm_signup(subscriber: Subscriber, stamp: int | None, *, now: datetime) -> ConfirmOutcome:
    """Activate a subscriber whose sign-up this is, with the choices it asked for;
    idempotent."""
    outcome = check_signup(subscriber, stamp, now=now)
    if outcome == "confirmed":
        if subscriber.pending_signup is not None:
            apply_choices(subscriber, Choices.from_json(subscriber.pending_signup))
            subscriber.pending_signup = None
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now
        subscriber.signup_at = None
        subscriber.paused_at = None
    return outcome


def status_name(subscriber: Subscriber) -> str:
    """The status a subscriber sees: active, paused, pending, unsubscribed or bounced."""
    if subscriber.status == SubscriberStatus.ACTIVE:
        return "paused" if subscriber.paused_at is not None else "active"
    return subscriber.status.value


def unsubscribe(session: Session, subscriber: Subscriber) -> None:
    """Unsubscribe and cancel the issues not sent yet; idempotent."""
    if subscriber.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    subscriber.signup_at = None
    subscriber.pending_signup = None  # a sign-up nobody confirmed is dropped with it
    cancel_open_deliveries(session, [subscriber.id])


def set_paused(session: Session, subscriber: Subscriber, *, paused: bool, now: datetime) -> None:
    """Pause (issues not sent yet are cancelled too) or resume; idempotent."""
    if not paused:
        subscriber.paused_at = None
        return
    if subscriber.paused_at is None:
        subscriber.paused_at = now
    cancel_open_deliveries(session, [subscriber.id])


def resubscribe(session: Session, subscriber: Subscriber, *, now: datetime) -> bool:
    """Subscribe an unsubscribed reader again, with the choices they had, from their own
    signed link: a fresh consent, so ``confirmed_at`` becomes ``now``. False (nothing
    changes) unless they unsubscribed, or when their address is suppressed."""
    if subscriber.status != SubscriberStatus.UNSUBSCRIBED:
        return False
    if session.get(Suppression, subscriber.email) is not None:
        return False
    subscriber.status = SubscriberStatus.ACTIVE
    subscriber.confirmed_at = now
    subscriber.paused_at = None
    subscriber.signup_at = None
    subscriber.pending_signup = None
    return True


def switch_to_weekly(subscriber: Subscriber) -> None:
    """Fewer mails instead of none: weekly issues, on the weekday they have (Monday unless
    they chose one); idempotent."""
    subscriber.frequency = Frequency.WEEKLY


def cancel_open_deliveries(session: Session, subscriber_ids: Select[Any] | Sequence[int]) -> None:
    """Issues planned for these subscribers but not sent yet will not be sent: their
    waiting deliveries are suppressed (one a worker holds right now is left to it). The
    one home of this rule: leaving, pausing and a suppressed address all come here."""
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id.in_(subscriber_ids), Delivery.status.in_(WAITING))
        .values(status=DeliveryStatus.SUPPRESSED, lease_owner=None, lease_until=None)
    )


def purge_expired_signups(session: Session, *, now: datetime) -> int:
    """Forget sign-ups never confirmed in time; return how many subscribers went."""
    cutoff = now - SIGNUP_TTL
    gone = session.execute(
        delete(Subscriber).where(
            Subscriber.status == SubscriberStatus.PENDING,
            ((Subscriber.signup_at.is_not(None)) & (Subscriber.signup_at < cutoff))
            | ((Subscriber.signup_at.is_(None)) & (Subscriber.created_at < cutoff)),
        )
    )
    # A returning subscriber who never confirmed keeps their record, not the request.
    session.execute(
        update(Subscriber)
        .where(Subscriber.signup_at.is_not(None), Subscriber.signup_at < cutoff)
        .values(signup_at=None, pending_signup=None)
    )
    return int(getattr(gone, "rowcount", 0) or 0)


def feedback_item(
    session: Session, subscriber: Subscriber, delivery_id: int, rank: int
) -> DeliveryItem | None:
    """The item at ``rank`` of the subscriber's delivery, with its paper, or None."""
    return session.scalars(
        select(DeliveryItem)
        .join(Delivery, Delivery.id == DeliveryItem.delivery_id)
        .where(
            DeliveryItem.delivery_id == delivery_id,
            DeliveryItem.rank == rank,
            Delivery.subscriber_id == subscriber.id,
        )
        .options(selectinload(DeliveryItem.paper))
    ).one_or_none()


def record_feedback(
    session: Session, subscriber: Subscriber, paper_id: int, value: int, *, now: datetime
) -> None:
    """More (+1) or less (-1) like this paper; the last choice wins."""
    if value not in (-1, 1):
        raise ValueError(f"feedback must be +1 or -1, not {value}")
    for _ in range(2):
        existing = session.scalars(
            select(Feedback).where(
                Feedback.subscriber_id == subscriber.id, Feedback.paper_id == paper_id
            )
        ).one_or_none()
        if existing is not None:
            if existing.value != value:
                existing.value = value
                existing.created_at = now
            return
        try:
            # A savepoint: a second click racing this one must not abort the request.
            with session.begin_nested():
                session.add(
                    Feedback(
                        subscriber_id=subscriber.id, paper_id=paper_id, value=value, created_at=now
                    )
                )
        except IntegrityError:
            continue
        return


def current_feedback(session: Session, subscriber: Subscriber, paper_id: int) -> int | None:
    """The subscriber's rating of a paper (+1, -1) or None."""
    return session.scalar(
        select(Feedback.value).where(
            Feedback.subscriber_id == subscriber.id, Feedback.paper_id == paper_id
        )
    )


def recent_feedback(
    session: Session, subscriber: Subscriber, *, limit: int = 20
) -> list[tuple[Feedback, Paper]]:
    rows = session.execute(
        select(Feedback, Paper)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == subscriber.id)
        .order_by(Feedback.created_at.desc(), Feedback.id.desc())
        .limit(limit)
    )
    return [(feedback, paper) for feedback, paper in rows]


def undo_feedback(session: Session, subscriber: Subscriber, paper_id: int) -> None:
    session.execute(
        delete(Feedback).where(
            Feedback.subscriber_id == subscriber.id, Feedback.paper_id == paper_id
        )
    )


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about the subscriber, as JSON-ready data."""
    feedback = session.execute(
        select(Feedback, Paper)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(Feedback.subscriber_id == subscriber.id)
        .order_by(Feedback.id)
    ).all()
    deliveries = session.scalars(
        select(Delivery)
        .where(Delivery.subscriber_id == subscriber.id)
        .options(
            selectinload(Delivery.edition),
            selectinload(Delivery.items).selectinload(DeliveryItem.paper),
        )
        .order_by(Delivery.id)
    )
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status.value,
        "created_at": _when(subscriber.created_at),
        "confirmed_at": _when(subscriber.confirmed_at),
        "paused_at": _when(subscriber.paused_at),
        "pending_email": subscriber.pending_email,
        "frequency": subscriber.frequency.value,
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "send_weekday": subscriber.send_weekday,
        "max_papers": subscriber.max_papers,
        "always_send": subscriber.always_send,
        "interests": [
            {"topic": i.topic_id, "keywords": i.keywords, "weight": i.weight}
            for i in subscriber.interests
        ],
        "feedback": [
            {
                "paper": paper.external_id,
                "title": paper.title,
                "value": fb.value,
                "at": _when(fb.created_at),
            }
            for fb, paper in feedback
        ],
        "issues": [
            {
                "edition": d.edition.date.isoformat(),
                "status": d.status.value,
                "sent_at": _when(d.sent_at),
                "papers": [
                    {"rank": item.rank, "paper": item.paper.external_id, "title": item.paper.title}
                    for item in d.items
                ],
            }
            for d in deliveries
        ],
        "bounces": [
            {"kind": b.kind.value, "code": b.code, "reply": b.reply, "at": _when(b.created_at)}
            for b in session.scalars(bounces_of(subscriber).order_by(Bounce.id))
        ],
        "operator_actions": [
            {"action": a.action, "reason": a.reason, "at": _when(a.created_at)}
            for a in session.scalars(actions_about(subscriber).order_by(AdminAction.id))
        ],
        **library_export(session, subscriber.id),
    }


def bounces_of(subscriber: Subscriber) -> Select[Bounce]:
    """The bounces recorded for the subscriber's address."""
    return select(Bounce).where(Bounce.email == address_key(subscriber.email))


def actions_about(subscriber: Subscriber) -> Select[AdminAction]:
    """What operators did about the subscriber (recorded under the address as typed or
    as compared)."""
    emails = {address_key(subscriber.email), subscriber.email}
    return select(AdminAction).where(AdminAction.email.in_(emails))


def delete_subscriber(session: Session, subscriber: Subscriber) -> None:
    """Forget the subscriber: interests, feedback and issues go with them (cascades), and
    so do the records of account mails to their address that could not be sent."""
    forget_mail_failures(session, subscriber.email)
    session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))


def request_address_change(session: Session, subscriber: Subscriber, email: str) -> bool:
    """Note the new address; True when a confirmation should be mailed to it.

    A taken or suppressed address gets no mail, but the page says the same.
    """
    if email == subscriber.email:
        return False
    if session.get(Suppression, email) is not None or find_by_email(session, email) is not None:
        return False
    subscriber.pending_email = email
    return True


def confirm_address_change(session: Session, subscriber: Subscriber, email: str) -> bool:
    """Switch to the confirmed new address and revoke older links; False if not possible."""
    if subscriber.pending_email != email:
        return False
    if session.get(Suppression, email) is not None or find_by_email(session, email) is not None:
        return False
    subscriber.email = email
    subscriber.pending_email = None
    # The old links went to the old address; only the new one speaks for the subscriber.
    subscriber.token_version += 1
    return True
