"""What an issue covers: the papers listed since the subscriber's previous issue, at least
the nominal window (1 or 7 days) and at most the cap (7 or 14 days) after a downtime."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.planning.editions import (
    MAX_WINDOW_DAYS,
    PlanOptions,
    plan_edition,
    previous_issues,
    window_start,
)

FRIDAY = date(2026, 5, 29)
DAILY, WEEKLY = Frequency.DAILY, Frequency.WEEKLY
FILLERS = (
    "Protein folding with diffusion priors",
    "Sparse attention for long documents",
    "Robot grasping from tactile signals",
)


def days_before(n: int) -> date:
    return FRIDAY - timedelta(days=n)


@pytest.mark.parametrize(
    ("frequency", "previous", "start"),
    [
        # First issue: the nominal window.
        (DAILY, None, FRIDAY),
        (WEEKLY, None, days_before(6)),
        # On schedule: the day after the previous issue.
        (DAILY, days_before(1), FRIDAY),
        (WEEKLY, days_before(7), days_before(6)),
        # Last week's issue carried Thursday's listing: this one starts on Friday.
        (WEEKLY, days_before(8), days_before(7)),
        # After a 3-day outage a daily issue covers the 3 days.
        (DAILY, days_before(3), days_before(2)),
        # Long downtime: capped.
        (DAILY, days_before(30), days_before(MAX_WINDOW_DAYS[DAILY] - 1)),
        (WEEKLY, days_before(21), days_before(MAX_WINDOW_DAYS[WEEKLY] - 1)),
        # An issue yesterday (say, before switching to weekly): never less than nominal.
        (WEEKLY, days_before(1), days_before(6)),
        (DAILY, FRIDAY, FRIDAY),
    ],
)
def test_window_start(frequency: Frequency, previous: date | None, start: date) -> None:
    assert window_start(FRIDAY, frequency, previous) == start


def add_papers(session: SessionFactory, first: date, last: date) -> None:
    """One paper about graph neural networks a day, among three on other things."""
    with session.begin() as s:
        day, n = first, 0
        while day <= last:
            titles = [f"Graph neural networks for molecules, study {day:%d}", *FILLERS]
            for title in titles:
                n += 1
                s.add(
                    Paper(
                        external_id=f"2605.{n:05d}",
                        title=title,
                        abstract=f"{title}. We report experiment {n} in detail.",
                        categories=["cs.LG"],
                        url=f"https://arxiv.org/abs/2605.{n:05d}",
                        listed_on=day,
                        content_listed_on=day,
                        first_seen=datetime.combine(day, datetime.min.time(), UTC),
                    )
                )
            day += timedelta(days=1)


def add_reader(
    sessions: SessionFactory,
    email: str,
    frequency: Frequency,
    previous: date | None,
    status: DeliveryStatus = DeliveryStatus.SENT,
    *,
    joined: date = date(2026, 4, 1),
) -> None:
    """A subscriber to graph neural networks since ``joined`` whose previous issue was
    the edition ``previous`` (an issue of one off-topic paper)."""
    joined_at = datetime.combine(joined, datetime.min.time(), UTC) + timedelta(hours=9)
    with sessions.begin() as session:
        subscriber = Subscriber(
            email=email,
            status=SubscriberStatus.ACTIVE,
            created_at=joined_at - timedelta(minutes=5),
            confirmed_at=joined_at,
            frequency=frequency,
            max_papers=50,
            interests=[Interest(keywords="graph neural networks", weight=1.0)],
        )
        session.add(subscriber)
        session.flush()
        if previous is None:
            return
        edition = session.scalars(select(Edition).where(Edition.date == previous)).one_or_none()
        if edition is None:
            edition = Edition(date=previous)
            session.add(edition)
            session.flush()
        filler = session.scalars(
            select(Paper).where(Paper.listed_on == previous, Paper.title == FILLERS[0])
        ).one()
        delivery = Delivery(edition_id=edition.id, subscriber_id=subscriber.id, status=status)
        delivery.items = [DeliveryItem(rank=0, paper_id=filler.id, score=0.5, terms=[])]
        session.add(delivery)


def covered(sessions: SessionFactory, day: date) -> dict[str, set[date]]:
    """The listing dates of each subscriber's papers in the edition of ``day``."""
    with sessions() as session:
        deliveries = session.scalars(
            select(Delivery)
            .join(Delivery.edition)
            .where(Edition.date == day)
            .options(
                selectinload(Delivery.items).selectinload(DeliveryItem.paper),
                selectinload(Delivery.subscriber),
            )
        )
        return {d.subscriber.email: {i.paper.listed_on for i in d.items} for d in deliveries}


def span(first: date, last: date) -> set[date]:
    return {first + timedelta(days=n) for n in range((last - first).days + 1)}


OPTIONS = PlanOptions(max_papers=50, diversity=1.0)


def test_each_issue_covers_the_papers_since_the_previous_one(sessions: SessionFactory) -> None:
    add_papers(sessions, date(2026, 5, 1), FRIDAY)
    readers = {
        # Weekly on Fridays; last week's issue carried Thursday's listing (Friday's
        # had not arrived): this one starts with last Friday's papers, 8 days.
        "weekly@example.org": (WEEKLY, days_before(8), span(days_before(7), FRIDAY)),
        # Back after three weeks of downtime: one catch-up issue, two weeks at most.
        "away@example.org": (WEEKLY, days_before(21), span(days_before(13), FRIDAY)),
        "new-weekly@example.org": (WEEKLY, None, span(days_before(6), FRIDAY)),
        # Daily after a 3-day outage: the 3 days in one issue.
        "daily@example.org": (DAILY, days_before(3), span(days_before(2), FRIDAY)),
        "daily-long@example.org": (DAILY, days_before(20), span(days_before(6), FRIDAY)),
        "new-daily@example.org": (DAILY, None, {FRIDAY}),
    }
    for email, (frequency, previous, _) in readers.items():
        joined = FRIDAY if email.startswith("new-") else date(2026, 4, 1)
        add_reader(sessions, email, frequency, previous, joined=joined)
    # No issue yet: the papers since they subscribed, within the same bounds.
    add_reader(sessions, "ten-days@example.org", WEEKLY, None, joined=days_before(10))
    add_reader(sessions, "month@example.org", WEEKLY, None, joined=days_before(30))
    # An issue still on its way counts as the previous one too.
    add_reader(sessions, "pending@example.org", DAILY, days_before(2), DeliveryStatus.PENDING)
    # A failed one does not (nothing reached the reader): since they subscribed.
    add_reader(
        sessions,
        "failed@example.org",
        DAILY,
        days_before(2),
        DeliveryStatus.FAILED,
        joined=days_before(3),
    )
    with sessions.begin() as session:
        summary = plan_edition(session, FRIDAY, options=OPTIONS)
    assert summary.planned == len(readers) + 4
    issues = covered(sessions, FRIDAY)
    for email, (_, _, expected) in readers.items():
        assert issues[email] == expected, email
    assert issues["ten-days@example.org"] == span(days_before(10), FRIDAY)
    assert issues["month@example.org"] == span(days_before(13), FRIDAY)
    assert issues["pending@example.org"] == span(days_before(1), FRIDAY)
    assert issues["failed@example.org"] == span(days_before(3), FRIDAY)


def test_previous_issues_is_one_grouped_query(sessions: SessionFactory, engine: Engine) -> None:
    add_papers(sessions, date(2026, 5, 1), FRIDAY)
    add_reader(sessions, "a@example.org", WEEKLY, days_before(8))
    add_reader(sessions, "b@example.org", DAILY, days_before(1))
    add_reader(sessions, "c@example.org", DAILY, days_before(1), DeliveryStatus.BOUNCED)
    # Older than any window reaches: it changes nothing, so it is not even read.
    add_reader(sessions, "old@example.org", WEEKLY, days_before(20))
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with sessions() as session:
            ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
            statements.clear()
            found = previous_issues(session, FRIDAY)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(statements) == 1
    assert found == {ids["a@example.org"]: days_before(8), ids["b@example.org"]: days_before(1)}


def test_planning_queries_do_not_grow_with_the_subscribers(
    sessions: SessionFactory, engine: Engine
) -> None:
    add_papers(sessions, date(2026, 5, 10), FRIDAY)
    batches: list[list[str]] = [[], []]
    for batch, size in enumerate((3, 12)):
        for n in range(size):
            email = f"r{batch}-{n}@example.org"
            previous = days_before(1 + n % 9) if n % 3 else None
            add_reader(sessions, email, WEEKLY if n % 2 else DAILY, previous)
            batches[batch].append(email)
    with sessions() as session:
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
    counts = []
    for emails in batches:
        selects: list[str] = []

        def record(*args: object, into: list[str] = selects) -> None:
            if str(args[2]).lstrip().upper().startswith("SELECT"):
                into.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", record)
        try:
            with sessions.begin() as session:
                summary = plan_edition(
                    session, FRIDAY, options=OPTIONS, only=[ids[e] for e in emails]
                )
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert summary.planned == len(emails)
        counts.append(len(selects))
    assert counts[0] == counts[1]
