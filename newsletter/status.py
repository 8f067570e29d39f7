"""What is pending, due and failing: the figures `newsletter status`, /metrics and the
admin pages show, read straight from the database (every worker and the scheduler
share it, so no process keeps counters of its own).

Functions take a session and a ``now``; the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from newsletter.delivery.outbox import due_now_condition, lease_expired_condition
from newsletter.delivery.relay_errors import LastRelayError, last_relay_error, relay_failing
from newsletter.mail.failures import MailFailure, mail_failures_since, recent_mail_failures
from newsletter.models import (
    OPEN,
    WAITING,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Paper,
    Subscriber,
    SubscriberStatus,
)

FAILURE_STATES = (DeliveryStatus.RETRY, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


def _counts(enum: type[DeliveryStatus] | type[SubscriberStatus]) -> dict[str, int]:
    return dict.fromkeys((member.value for member in enum), 0)


def subscribers_by_status(session: Session) -> dict[str, int]:
    """Subscribers per status, every status present (0 when none)."""
    counts = _counts(SubscriberStatus)
    for status, count in session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ):
        counts[status.value] = count
    return counts


def deliveries_by_status(session: Session, *, edition_id: int | None = None) -> dict[str, int]:
    """Deliveries per status (of one edition, or of all), every status present."""
    counts = _counts(DeliveryStatus)
    query = select(Delivery.status, func.count()).group_by(Delivery.status)
    if edition_id is not None:
        query = query.where(Delivery.edition_id == edition_id)
    for status, count in session.execute(query):
        counts[status.value] = count
    return counts


@dataclass(frozen=True)
class Queue:
    """The outbox as a worker sees it."""

    due_now: int  # pending or retry, next_attempt_at unset or passed
    scheduled_later: int  # pending or retry, next_attempt_at in the future
    claimed_live: int  # being sent: the lease still runs
    claimed_expired: int  # its worker died: claimable again
    sent_today: int  # accepted by the relay since midnight UTC


def queue(session: Session, *, now: datetime, edition_id: int | None = None) -> Queue:
    """Split the open deliveries by when they can be sent."""

    def count(*conditions: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(Delivery).where(*conditions)
        if edition_id is not None:
            query = query.where(Delivery.edition_id == edition_id)
        return int(session.scalar(query) or 0)

    claimed = Delivery.status == DeliveryStatus.CLAIMED
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return Queue(
        due_now=count(due_now_condition(now)),
        scheduled_later=count(Delivery.status.in_(WAITING), Delivery.next_attempt_at > now),
        claimed_live=count(
            claimed, or_(Delivery.lease_until.is_(None), Delivery.lease_until >= now)
        ),
        claimed_expired=count(lease_expired_condition(now)),
        sent_today=count(
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at >= midnight,
            Delivery.sent_at < midnight + timedelta(days=1),
        ),
    )


@dataclass
class EditionRow:
    """One edition with its deliveries counted per status."""

    id: int
    day: date
    status: str
    created_at: datetime
    counts: dict[str, int] = field(default_factory=lambda: _counts(DeliveryStatus))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def editions(session: Session, *, limit: int = 5, day: date | None = None) -> list[EditionRow]:
    """The newest ``limit`` editions (or the one of ``day``), newest first."""
    query = select(Edition).order_by(Edition.date.desc()).limit(limit)
    if day is not None:
        query = query.where(Edition.date == day)
    rows = [EditionRow(e.id, e.date, e.status.value, e.created_at) for e in session.scalars(query)]
    by_id = {row.id: row for row in rows}
    if by_id:
        for edition_id, status, count in session.execute(
            select(Delivery.edition_id, Delivery.status, func.count())
            .where(Delivery.edition_id.in_(by_id))
            .group_by(Delivery.edition_id, Delivery.status)
        ):
            by_id[edition_id].counts[status.value] = count
    for row in rows:
        row.status = shown_status(row.status, row.counts)
    return rows


def shown_status(stored: str, counts: dict[str, int]) -> str:
    """The edition's status as operators see it: never "sent" while any of its
    deliveries may still go out (pending, claimed or to retry). The stored status can
    say sent when deliveries were planned into an edition after it was sent."""
    still_open = sum(counts.get(state.value, 0) for state in OPEN)
    if stored == EditionStatus.SENT and still_open:
        return EditionStatus.SENDING.value
    return stored


# An edition is stuck when deliveries have been due this long with nothing sent meanwhile.
STUCK_AFTER = timedelta(minutes=30)


@dataclass(frozen=True)
class StuckEdition:
    """An edition with deliveries overdue by more than ``STUCK_AFTER`` and no issue of
    it sent meanwhile: no worker is delivering it (none runs, or the relay is down)."""

    day: date
    overdue: int  # deliveries due (or held by a dead worker) since before the cut-off
    due_since: datetime  # the oldest of them was due then
    last_sent: datetime | None  # an issue of this edition was last accepted then


def stuck_editions(
    session: Session, *, now: datetime, after: timedelta = STUCK_AFTER
) -> list[StuckEdition]:
    """Editions stuck in sending, oldest first (see ``StuckEdition``)."""
    cutoff = now - after
    due_at = func.coalesce(Delivery.next_attempt_at, Delivery.created_at)
    overdue = or_(
        and_(Delivery.status.in_(WAITING), due_at <= cutoff),
        and_(Delivery.status == DeliveryStatus.CLAIMED, Delivery.lease_until <= cutoff),
    )
    candidates = session.execute(
        select(Edition.id, Edition.date, func.count(), func.min(due_at))
        .join(Delivery, Delivery.edition_id == Edition.id)
        .where(overdue)
        .group_by(Edition.id, Edition.date)
        .order_by(Edition.date)
    ).all()
    if not candidates:
        return []
    last_sent = dict(
        session.execute(
            select(Delivery.edition_id, func.max(Delivery.sent_at))
            .where(Delivery.edition_id.in_([row[0] for row in candidates]))
            .group_by(Delivery.edition_id)
        ).all()
    )
    stuck = []
    for edition_id, day, count, since in candidates:
        sent = last_sent.get(edition_id)
        if sent is None or sent <= cutoff:
            stuck.append(StuckEdition(day, count, since, sent))
    return stuck


@dataclass(frozen=True)
class Failure:
    """A delivery that did not go out (yet), with the relay's last word on it."""

    delivery_id: int
    day: date
    email: str
    status: str
    attempts: int
    code: int | None
    reply: str
    next_attempt_at: datetime | None


def recent_failures(
    session: Session, *, limit: int = 10, edition_id: int | None = None
) -> list[Failure]:
    """Deliveries to retry, bounced or failed, newest first."""
    query = (
        select(Delivery, Edition.date, Subscriber.email)
        .join(Edition, Delivery.edition_id == Edition.id)
        .join(Subscriber, Delivery.subscriber_id == Subscriber.id)
        .where(Delivery.status.in_(FAILURE_STATES))
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if edition_id is not None:
        query = query.where(Delivery.edition_id == edition_id)
    return [
        Failure(
            delivery_id=delivery.id,
            day=day,
            email=email,
            status=delivery.status.value,
            attempts=delivery.attempts,
            code=delivery.last_smtp_code,
            reply=delivery.last_smtp_reply or "",
            next_attempt_at=delivery.next_attempt_at,
        )
        for delivery, day, email in session.execute(query)
    ]


@dataclass(frozen=True)
class Activity:
    """When each stage last did something (None: never)."""

    last_ingest: datetime | None  # a paper was last added or updated
    last_plan: datetime | None  # the newest edition was created
    last_sent: datetime | None  # an issue was last accepted by the relay


def activity(session: Session) -> Activity:
    return Activity(
        last_ingest=session.scalar(select(func.max(Paper.updated_at))),
        last_plan=session.scalar(select(func.max(Edition.created_at))),
        last_sent=session.scalar(select(func.max(Delivery.sent_at))),
    )


@dataclass(frozen=True)
class Status:
    """Everything `newsletter status` shows."""

    now: datetime
    edition: date | None
    subscribers: dict[str, int]
    deliveries: dict[str, int]
    queue: Queue
    editions: list[EditionRow]
    failures: list[Failure]
    activity: Activity
    mail_failures: list[MailFailure] = field(default_factory=list)  # account mails
    mail_failures_day: int = 0  # account mails that failed in the last 24 hours
    relay_error: LastRelayError | None = None  # the newest: unreachable, deferred, refused
    stuck: list[StuckEdition] = field(default_factory=list)

    @property
    def relay_failing(self) -> bool:
        """The relay's newest word is an error: nothing was accepted since."""
        return relay_failing(self.relay_error, self.activity.last_sent)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: dates and times as ISO 8601 strings."""

        def plain(value: Any) -> Any:
            if isinstance(value, date | datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {key: plain(item) for key, item in value.items()}
            if isinstance(value, list):
                return [plain(item) for item in value]
            return value

        return {
            "now": plain(self.now),
            "edition": plain(self.edition),
            "subscribers": self.subscribers,
            "deliveries": self.deliveries,
            "queue": asdict(self.queue),
            "editions": [
                {
                    "id": row.id,
                    "date": plain(row.day),
                    "status": row.status,
                    "created_at": plain(row.created_at),
                    "counts": row.counts,
                    "total": row.total,
                }
                for row in self.editions
            ],
            "failures": [
                {
                    "delivery_id": failure.delivery_id,
                    "edition": plain(failure.day),
                    "email": failure.email,
                    "status": failure.status,
                    "attempts": failure.attempts,
                    "code": failure.code,
                    "reply": failure.reply,
                    "next_attempt_at": plain(failure.next_attempt_at),
                }
                for failure in self.failures
            ],
            "activity": plain(asdict(self.activity)),
            "account_mail_failures": {
                "last_24h": self.mail_failures_day,
                "newest": [plain(asdict(failure)) for failure in self.mail_failures],
            },
            "relay": {
                "failing": self.relay_failing,
                "last_error": plain(asdict(self.relay_error)) if self.relay_error else None,
            },
            "stuck_editions": [plain(asdict(row)) for row in self.stuck],
        }


def find_edition_id(session: Session, day: date) -> int | None:
    return session.scalar(select(Edition.id).where(Edition.date == day))


def status(
    session: Session,
    *,
    now: datetime,
    edition_id: int | None = None,
    day: date | None = None,
    editions_limit: int = 5,
    failures_limit: int = 10,
) -> Status:
    """Collect every figure of `newsletter status` (of one edition when ``edition_id``)."""
    return Status(
        now=now,
        edition=day,
        subscribers=subscribers_by_status(session),
        deliveries=deliveries_by_status(session, edition_id=edition_id),
        queue=queue(session, now=now, edition_id=edition_id),
        editions=editions(session, limit=editions_limit, day=day),
        failures=recent_failures(session, limit=failures_limit, edition_id=edition_id),
        activity=activity(session),
        mail_failures=recent_mail_failures(session, limit=failures_limit),
        mail_failures_day=mail_failures_since(session, now - timedelta(days=1)),
        relay_error=last_relay_error(session, now=now),
        stuck=stuck_editions(session, now=now),
    )
