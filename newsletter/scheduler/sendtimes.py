"""Planning at each subscriber's own send time: who is due, and when their issue goes.

Subscribers alike (same timezone, send hour, frequency and weekday) form a group with
one schedule rule (``newsletter.scheduler.slots``), computed once per group. The plan
job plans the newest edition for the subscribers due within the lookahead and gives
each new delivery its subscriber's send time, so the deliver job sends it then.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, case, func, select, update
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.delivery.outbox import claimable_now
from newsletter.models import (
    OPEN,
    Delivery,
    DeliveryStatus,
    Frequency,
    Subscriber,
    SubscriberStatus,
)
from newsletter.planning.latest import edition_available_at, latest_edition_day
from newsletter.scheduler.slots import Rule, due_cutoff, send_time

if TYPE_CHECKING:
    from newsletter.planning.options import PlanOptions, PlanSummary
    from newsletter.settings import Settings

log = logging.getLogger(__name__)

# A group of subscribers alike: (timezone, send hour, frequency, weekday). The weekday
# of a daily subscriber is 0 whatever they stored: it would only split their group.
GroupKey = tuple[str, int, str, int]


def _group_weekday() -> ColumnElement[int]:
    """The subscriber's weekday as their group has it (see ``GroupKey``)."""
    return case((Subscriber.frequency == Frequency.WEEKLY, Subscriber.send_weekday), else_=0)


def _rule(timezone: str, send_hour: int, frequency: str, weekday: int = 0) -> Rule:
    """The schedule rule of one group, from a subscriber's stored settings."""
    weekly = str(frequency) == Frequency.WEEKLY
    weekday = weekday if weekly and 0 <= weekday <= 6 else 0
    try:
        rule = Rule(timezone, send_hour, str(frequency), weekday)
        rule.zone  # noqa: B018 - validates the timezone name
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown timezone %r: sending at %d:00 UTC", timezone, send_hour)
        return Rule("UTC", send_hour, str(frequency), weekday)
    return rule


def rule_for(subscriber: Subscriber) -> Rule:
    """When ``subscriber`` gets issues (their timezone, hour, frequency and weekday)."""
    return _rule(
        subscriber.timezone,
        subscriber.send_hour,
        str(subscriber.frequency),
        subscriber.send_weekday,
    )


def due_subscribers(
    session: Session,
    *,
    now: datetime,
    lookahead: timedelta,
    available_since: datetime | None = None,
) -> list[int]:
    """Active subscribers with an issue due by ``now + lookahead`` and none in flight.

    Due means: one of their slots lies after their last issue (before the first one:
    when they subscribed) and after ``available_since`` (when the newest edition's
    papers arrived), and no later than ``now + lookahead``. However many slots were
    missed, that is one issue (the catch-up after downtime); and a day without an
    issue for them does not make the next one go out early: it waits for their first
    slot after its papers arrived. One slot computation per (timezone, hour,
    frequency, weekday) group.
    """
    in_flight = select(Delivery.subscriber_id).where(Delivery.status.in_(OPEN))
    last_sent = dict(
        session.execute(
            select(Delivery.subscriber_id, func.max(Delivery.sent_at))
            .where(Delivery.status == DeliveryStatus.SENT)
            .group_by(Delivery.subscriber_id)
        ).all()
    )
    cutoffs: dict[GroupKey, datetime] = {}
    due: list[int] = []
    for sid, timezone, hour, frequency, weekday, confirmed, created in session.execute(
        select(
            Subscriber.id,
            Subscriber.timezone,
            Subscriber.send_hour,
            Subscriber.frequency,
            _group_weekday(),
            Subscriber.confirmed_at,
            Subscriber.created_at,
        )
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.paused_at.is_(None),
            Subscriber.id.not_in(in_flight),
        )
        .order_by(Subscriber.id)
    ):
        key = (timezone, hour, str(frequency), weekday)
        cutoff = cutoffs.get(key)
        if cutoff is None:
            cutoff = cutoffs[key] = due_cutoff(_rule(*key), now=now, lookahead=lookahead)
        baseline = last_sent.get(sid) or confirmed or created
        if available_since is not None:
            baseline = max(baseline, available_since)
        if baseline < cutoff:
            due.append(sid)
    return due


def set_send_times(
    session: Session,
    edition_id: int,
    subscribers: tuple[int, int] | None = None,
    *,
    now: datetime,
    lookahead: timedelta,
) -> dict[GroupKey, datetime]:
    """Give the edition's new pending deliveries (``next_attempt_at`` unset; of the
    subscriber ids from-to in ``subscribers``, a planner's batch, when given) their
    subscriber's send time: one UPDATE per (timezone, send hour, frequency, weekday)
    group, in a fixed order.

    A batch touches only its own rows: several planner processes then never wait on
    (or deadlock over) each other's deliveries, and a batch costs what it planned, not
    the whole edition.

    Returns the send time set per group.
    """
    unset = (
        (Delivery.edition_id == edition_id)
        & (Delivery.status == DeliveryStatus.PENDING)
        & Delivery.next_attempt_at.is_(None)
    )
    if subscribers is not None:
        unset = unset & Delivery.subscriber_id.between(*subscribers)
    groups = session.execute(
        select(Subscriber.timezone, Subscriber.send_hour, Subscriber.frequency, _group_weekday())
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(unset)
        .distinct()
        .order_by(Subscriber.timezone, Subscriber.send_hour, Subscriber.frequency)
    ).all()
    times: dict[GroupKey, datetime] = {}
    for timezone, hour, frequency, weekday in groups:
        key = (timezone, hour, str(frequency), weekday)
        at = send_time(_rule(*key), now=now, lookahead=lookahead)
        members = select(Subscriber.id).where(
            Subscriber.timezone == timezone,
            Subscriber.send_hour == hour,
            Subscriber.frequency == frequency,
            _group_weekday() == weekday,
        )
        session.execute(
            update(Delivery)
            .where(unset, Delivery.subscriber_id.in_(members))
            .values(next_attempt_at=at, due_at=at)
            .execution_options(synchronize_session=False)
        )
        times[key] = at
    return times


def anything_due(session: Session, now: datetime) -> bool:
    """Whether any delivery may be claimed now (``delivery.outbox.claimable_now``)."""
    return session.scalar(select(Delivery.id).where(claimable_now(now)).limit(1)) is not None


def plan_due(
    session_factory: SessionFactory,
    *,
    options: PlanOptions,
    now: datetime,
    lookahead: timedelta,
    skip: set[int] | None = None,
    settings: Settings | None = None,
    workers: int = 1,
) -> PlanSummary | None:
    """Plan the newest edition for the subscribers whose issue is due, a committed
    batch at a time; each batch's deliveries get their send times in the batch's own
    transaction, so none is ever visible without one. ``skip``: subscribers known to
    have nothing new in this edition. ``workers`` planner processes share the work
    (PostgreSQL, given the ``settings`` they connect with). None when there is
    nothing to plan."""
    from newsletter.planning.planner import plan_in_batches
    from newsletter.planning.workers import plan_with_workers

    with session_factory() as session:
        day = latest_edition_day(session, now)
        if day is None:
            return None
        due = due_subscribers(
            session,
            now=now,
            lookahead=lookahead,
            available_since=edition_available_at(session, day),
        )
    if skip:
        due = [s for s in due if s not in skip]
    if not due:
        return None
    # A partial of a module-level function: planner processes get it pickled.
    after_batch = partial(set_send_times, now=now, lookahead=lookahead)
    if settings is None or workers <= 1:
        summary = plan_in_batches(
            session_factory, day, options=options, only=due, after_batch=after_batch
        )
    else:
        summary = plan_with_workers(
            settings,
            session_factory,
            day,
            options=options,
            workers=workers,
            only=due,
            after_batch=after_batch,
        )
    if skip is not None:
        # Only who a planner of this run looked at: a range another (or a dead)
        # planner held is planned by it, or by a later run once its lease is out.
        skip.update(summary.passed_over)
    return summary
