"""When a reader's next issue comes, as the preferences page says it.

The time comes from the scheduler's own rules (``scheduler.sendtimes.rule_for`` and
``scheduler.slots``), so the page cannot promise another hour than the one the
scheduler keeps: an issue already planned goes at its ``next_attempt_at``; otherwise
the next slot after their last issue (before the first: after they confirmed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import OPEN, Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from newsletter.scheduler.sendtimes import rule_for
from newsletter.scheduler.slots import next_issue_at, slots_after


def next_issue_time(session: Session, subscriber: Subscriber, *, now: datetime) -> datetime | None:
    """The UTC instant of the reader's next issue, or None when none is coming (they
    unsubscribed, paused or never confirmed)."""
    if subscriber.status != SubscriberStatus.ACTIVE or subscriber.paused_at is not None:
        return None
    planned = session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.subscriber_id == subscriber.id, Delivery.status.in_(OPEN)
        )
    )
    if planned is not None:
        return max(_utc(planned), now)
    last_sent = session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.subscriber_id == subscriber.id, Delivery.status == DeliveryStatus.SENT
        )
    )
    baseline = last_sent or subscriber.confirmed_at or subscriber.created_at
    rule = rule_for(subscriber)
    due = next_issue_at(rule, last_issue_at=_utc(baseline) if baseline else None, now=now)
    # A missed slot is caught up when the next edition is planned, at the next slot.
    return due if due > now else slots_after(rule, now)


def describe(moment: datetime, timezone: str) -> str:
    """``moment`` on the reader's wall clock: "Wednesday 9 December at 07:00"."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return format_datetime(moment, "EEEE d MMMM 'at' HH:mm", tzinfo=zone, locale="en")


def _utc(value: datetime) -> datetime:
    """Stored times are UTC (an aggregate may come back naive on SQLite)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
