"""Which listing days an issue covers: the nominal window of its frequency, widened to
the days since the subscriber's previous issue, up to a cap (pure date maths, plus the
one grouped query that finds each subscriber's previous issue)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryStatus, Edition, Frequency

# An issue covers the listing days since the subscriber's previous issue: at least
# WINDOW_DAYS (a first issue, or a changed frequency), at most MAX_WINDOW_DAYS (one
# catch-up issue after a long downtime does not reach back for ever).
WINDOW_DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7}
MAX_WINDOW_DAYS = {Frequency.DAILY: 7, Frequency.WEEKLY: 14}
# Deliveries in these states hold papers that are (or will be) in someone's inbox.
HOLDING = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.SENT)


class Joined(Protocol):
    """What the window of a subscriber's issue depends on besides their previous one."""

    @property
    def id(self) -> int: ...
    @property
    def confirmed_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime | None: ...


def window(edition: date, frequency: Frequency) -> tuple[date, date]:
    """The listing dates (inclusive) an issue of ``frequency`` covers at least."""
    return edition - timedelta(days=WINDOW_DAYS[frequency] - 1), edition


def earliest_reach(edition: date) -> date:
    """The first listing date any issue of ``edition`` can cover (the widest cap)."""
    return edition - timedelta(days=max(MAX_WINDOW_DAYS.values()) - 1)


def window_start(edition: date, frequency: Frequency, previous: date | None) -> date:
    """The first listing date an issue of ``edition`` covers for a subscriber whose
    previous issue (sent or planned) was the edition ``previous`` (before the first
    issue: the day before they subscribed): the day after it, never later than the
    nominal window's start, never earlier than the cap's. None: the nominal window."""
    nominal = edition - timedelta(days=WINDOW_DAYS[frequency] - 1)
    if previous is None:
        return nominal
    earliest = edition - timedelta(days=MAX_WINDOW_DAYS[frequency] - 1)
    return max(earliest, min(previous + timedelta(days=1), nominal))


def previous_issues(
    session: Session, day: date, *, between: tuple[int, int] | None = None
) -> dict[int, date]:
    """Each subscriber's newest edition before ``day`` with an issue sent or on its way.

    One grouped query over the editions the longest window can reach back to (an
    older issue changes nothing: the window is capped), not one per subscriber.
    ``between``: only the subscribers with ids in this range (inclusive; one batch).
    """
    reach = day - timedelta(days=max(MAX_WINDOW_DAYS.values()))
    query = (
        select(Delivery.subscriber_id, func.max(Edition.date))
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Edition.date < day,
            Edition.date >= reach,
            Delivery.status.in_((*HOLDING, DeliveryStatus.RETRY)),
        )
        .group_by(Delivery.subscriber_id)
    )
    if between is not None:
        query = query.where(Delivery.subscriber_id.between(*between))
    return {subscriber_id: last for subscriber_id, last in session.execute(query)}


def since(subscriber: Joined, previous: Mapping[int, date]) -> date | None:
    """The listing date an issue for ``subscriber`` follows on from: their previous
    issue's edition, or (none within reach) the day before they subscribed. None for
    a profile not stored (a test send): the nominal window."""
    last = previous.get(subscriber.id)
    if last is not None:
        return last
    joined = subscriber.confirmed_at or subscriber.created_at
    if joined is None:
        return None
    return joined.astimezone(UTC).date() - timedelta(days=1)
