"""The figures of the admin pages, read straight from the database."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, func, or_, select, true
from sqlalchemy.orm import Session, selectinload

from newsletter import status as shared
from newsletter.delivery.relay_errors import LastRelayError, last_relay_error, relay_failing
from newsletter.mail.failures import mail_failures_since
from newsletter.models import (
    DeliveryStatus,
    EditionStatus,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Topic,
)

# The dashboard's counts are the CLI's (`newsletter status`).
from newsletter.status import deliveries_by_status as deliveries_by_status
from newsletter.status import subscribers_by_status as subscribers_by_status
from newsletter.subscribers.roster import weekday_name

# Claimed counts as pending on the pages: it is in the middle of being sent.
OUTCOMES = ("sent", "pending", "retry", "bounced", "failed", "suppressed")


def outcome_of(status: DeliveryStatus | str) -> str:
    value = DeliveryStatus(status).value
    return "pending" if value == DeliveryStatus.CLAIMED else value


@dataclass
class EditionRow:
    id: int
    day: date
    status: EditionStatus
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def editions(session: Session, *, limit: int = 60) -> list[EditionRow]:
    """The newest editions with their deliveries per outcome (claimed as pending)."""
    rows = []
    for edition in shared.editions(session, limit=limit):
        row = EditionRow(edition.id, edition.day, EditionStatus(edition.status))
        for status, count in edition.counts.items():
            row.counts[outcome_of(status)] += count
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Problems:
    """What the dashboard puts first: the relay failing, editions stuck in sending,
    account mails not sent (the same figures as ``newsletter status`` and /metrics)."""

    relay_error: LastRelayError | None
    relay_failing: bool
    stuck: list[shared.StuckEdition]
    mail_failures_day: int

    @property
    def any(self) -> bool:
        return self.relay_failing or bool(self.stuck) or self.mail_failures_day > 0


def problems(session: Session, *, now: datetime) -> Problems:
    error = last_relay_error(session, now=now)
    return Problems(
        relay_error=error,
        relay_failing=relay_failing(error, shared.activity(session).last_sent),
        stuck=shared.stuck_editions(session, now=now),
        mail_failures_day=mail_failures_since(session, now - timedelta(days=1)),
    )


def recent_failures(session: Session, *, limit: int = 25) -> list[shared.Failure]:
    return shared.recent_failures(session, limit=limit)


def deliveries_per_day(session: Session, *, days: int = 30) -> list[tuple[date, dict[str, int]]]:
    """Outcomes per edition day, the newest ``days`` editions, oldest first."""
    rows = editions(session, limit=days)
    return [(row.day, row.counts) for row in reversed(rows)]


def subscribers_over_time(
    session: Session, *, today: date, days: int = 30
) -> list[tuple[date, int]]:
    """Confirmed subscribers (who are not gone) at the end of each of the last ``days`` days.

    Counted in the database, per UTC day: loading every confirmation time took seconds
    at a million subscribers, on every view of the dashboard."""
    start = today - timedelta(days=days - 1)
    counted = (Subscriber.confirmed_at.is_not(None), Subscriber.status == SubscriberStatus.ACTIVE)
    start_at = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    running = (
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(*counted, Subscriber.confirmed_at < start_at)
        )
        or 0
    )
    day = _utc_day(Subscriber.confirmed_at, session.get_bind().dialect.name)
    per_day = {
        date.fromisoformat(str(moment)): count
        for moment, count in session.execute(
            select(day, func.count())
            .where(*counted, Subscriber.confirmed_at >= start_at)
            .group_by(day)
        )
    }
    series = []
    for offset in range(days):
        day_of = start + timedelta(days=offset)
        running += per_day.get(day_of, 0)
        series.append((day_of, running))
    return series


def _utc_day(column: SQLColumnExpression[datetime | None], dialect: str) -> ColumnElement[object]:
    """The UTC calendar day of a timestamp, in SQL (a date on PostgreSQL, whatever its
    session's time zone; ISO text on SQLite, which keeps timestamps as UTC text)."""
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def top_topics(session: Session, *, limit: int = 10) -> list[tuple[str, str, int]]:
    """(code, name, followers) of the most followed topics among active subscribers."""
    followers = func.count(Interest.subscriber_id.distinct())
    query = (
        select(Topic.id, Topic.name, followers)
        .join(Interest, Interest.topic_id == Topic.id)
        .join(Subscriber, Interest.subscriber_id == Subscriber.id)
        .where(Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(Topic.id, Topic.name)
        .order_by(followers.desc(), Topic.id)
        .limit(limit)
    )
    return [(code, name, count) for code, name, count in session.execute(query)]


@dataclass(frozen=True)
class SubscriberRow:
    id: int
    email: str
    name: str
    status: str
    paused: bool
    frequency: str
    weekday: str
    timezone: str
    send_hour: int
    created_at: datetime
    confirmed_at: datetime | None
    # "; "-separated, as the CSV import reads them, so an export imports back.
    topics: str
    keywords: str

    @property
    def interests(self) -> str:
        return "; ".join(part for part in (self.topics, self.keywords) if part)


PAGE_SIZE = 50


def _subscriber_filter(search: str, status: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if search:
        pattern = (
            "%" + search.lower().replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"
        )
        conditions.append(
            or_(
                func.lower(Subscriber.email).like(pattern, escape="\\"),
                func.lower(Subscriber.name).like(pattern, escape="\\"),
            )
        )
    if status:
        conditions.append(Subscriber.status == SubscriberStatus(status))
    return conditions


def _row(subscriber: Subscriber) -> SubscriberRow:
    chosen = subscriber.interests
    return SubscriberRow(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=subscriber.status.value,
        paused=subscriber.paused_at is not None,
        frequency=subscriber.frequency.value,
        weekday=weekday_name(subscriber.send_weekday),
        timezone=subscriber.timezone,
        send_hour=subscriber.send_hour,
        created_at=subscriber.created_at,
        confirmed_at=subscriber.confirmed_at,
        topics="; ".join(i.topic_id for i in chosen if i.topic_id is not None),
        keywords="; ".join(i.keywords for i in chosen if i.keywords is not None),
    )


def _newest_first(conditions: list[ColumnElement[bool]]) -> Select[Subscriber]:
    return (
        select(Subscriber)
        .where(*conditions)
        .options(selectinload(Subscriber.interests))
        .order_by(Subscriber.id.desc())
    )


def subscribers(
    session: Session,
    *,
    search: str = "",
    status: str = "",
    limit: int = PAGE_SIZE,
    offset: int = 0,
) -> tuple[list[SubscriberRow], int]:
    """One page of the subscribers matching a search (address or name) and status; and
    how many match."""
    conditions = _subscriber_filter(search, status)
    total = session.scalar(select(func.count()).select_from(Subscriber).where(*conditions)) or 0
    query = _newest_first(conditions).offset(offset).limit(limit)
    return [_row(subscriber) for subscriber in session.scalars(query)], total


def all_subscribers(
    sessions: Callable[[], Session], *, search: str = "", status: str = "", batch: int = 1000
) -> Iterator[SubscriberRow]:
    """Every matching subscriber, newest first, read in batches (keyset on id, a short
    session each), so an export of a million subscribers never holds them all."""
    conditions = _subscriber_filter(search, status)
    below: int | None = None
    while True:
        query = _newest_first(conditions).limit(batch)
        if below is not None:
            query = query.where(Subscriber.id < below)
        with sessions() as session:
            rows = [_row(subscriber) for subscriber in session.scalars(query)]
        yield from rows
        if len(rows) < batch:
            return
        below = rows[-1].id


# The topics catalogue page.


def topic_followers(session: Session) -> dict[str, int]:
    """Active subscribers following each topic (topics nobody follows are absent)."""
    query = (
        select(Interest.topic_id, func.count(Interest.subscriber_id.distinct()))
        .join(Subscriber, Interest.subscriber_id == Subscriber.id)
        .where(Interest.topic_id.is_not(None), Subscriber.status == SubscriberStatus.ACTIVE)
        .group_by(Interest.topic_id)
    )
    return {topic: count for topic, count in session.execute(query) if topic is not None}


def recent_papers_per_category(
    session: Session, categories: Collection[str], *, since: datetime
) -> dict[str, int]:
    """Papers first seen since ``since`` listed in each of ``categories``: one grouped
    query over the papers' JSON category lists (json_each / json_array_elements_text)."""
    if not categories:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        listed = func.json_array_elements_text(Paper.categories).table_valued("value")
    else:
        listed = func.json_each(Paper.categories).table_valued("value")
    each = listed.alias("listed")
    query = (
        select(each.c.value, func.count(Paper.id.distinct()))
        .select_from(Paper)
        .join(each, true())
        .where(Paper.first_seen >= since, each.c.value.in_(sorted(categories)))
        .group_by(each.c.value)
    )
    return {str(category): count for category, count in session.execute(query)}
