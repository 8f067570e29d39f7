"""The dashboard's figures counted in the database, per UTC day, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from newsletter.db import SessionFactory
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.web.admin import stats

TODAY = date(2026, 5, 29)


def _at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


@pytest.mark.both_databases
def test_confirmed_subscribers_per_day_are_counted_by_utc_day(
    sessions: SessionFactory, database_url: str
) -> None:
    start = TODAY - timedelta(days=6)
    confirmed = [
        (_at(start - timedelta(days=40), 12), SubscriberStatus.ACTIVE),  # before the window
        (_at(start - timedelta(days=1), 23, 59, 59), SubscriberStatus.ACTIVE),  # the eve
        (_at(start, 0), SubscriberStatus.ACTIVE),  # the first second of the window
        (_at(start + timedelta(days=2), 23, 59, 59), SubscriberStatus.ACTIVE),
        (_at(start + timedelta(days=3), 0, 0, 1), SubscriberStatus.ACTIVE),
        (_at(start + timedelta(days=3), 9), SubscriberStatus.UNSUBSCRIBED),  # gone: not counted
        (_at(TODAY, 23, 30), SubscriberStatus.ACTIVE),
        (_at(TODAY + timedelta(days=1), 0), SubscriberStatus.ACTIVE),  # after the window
        (None, SubscriberStatus.PENDING),  # never confirmed
    ]
    with sessions.begin() as session:
        for n, (moment, status) in enumerate(confirmed):
            session.add(Subscriber(email=f"r{n}@example.org", status=status, confirmed_at=moment))
    with sessions() as session:
        if session.get_bind().dialect.name == "postgresql":
            # Days are UTC days whatever the connection's time zone (here UTC-4 in May).
            session.execute(text("SET TIME ZONE 'America/New_York'"))
        series = stats.subscribers_over_time(session, today=TODAY, days=7)
    assert series == [
        (start, 3),
        (start + timedelta(days=1), 3),
        (start + timedelta(days=2), 4),
        (start + timedelta(days=3), 5),
        (start + timedelta(days=4), 5),
        (start + timedelta(days=5), 5),
        (TODAY, 6),
    ]
