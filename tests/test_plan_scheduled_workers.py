"""The scheduler plans with several processes too (setting ``plan_workers``): each
planner process gives the deliveries of its batches their send times in the batch's
own transaction, and the result is what one process writes."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.db import SessionFactory
from newsletter.models import Delivery, DeliveryStatus, Paper
from newsletter.papers.ingest import ingest_file
from newsletter.planning.latest import plan_options
from newsletter.planning.workers import plan_with_workers
from newsletter.scheduler.config import SchedulerConfig
from newsletter.scheduler.sendtimes import due_subscribers, plan_due, set_send_times
from newsletter.settings import Settings
from tests.conftest import make_settings
from tests.test_scheduler import (
    ARRIVED,
    EDITION,
    LOOKAHEAD,
    NOW,
    PEOPLE,
    add_people,
    delivery_times,
)

# What one process plans at NOW (tests/test_scheduler.py says why these two, then).
EXPECTED = {
    "berlin@example.org": (DeliveryStatus.PENDING, datetime(2026, 5, 27, 5, tzinfo=UTC)),
    "kolkata@example.org": (DeliveryStatus.PENDING, datetime(2026, 5, 27, 1, 30, tzinfo=UTC)),
}


@pytest.fixture
def populated(sessions: SessionFactory, daily_file: Path) -> SessionFactory:
    with sessions.begin() as session:
        ingest_file(session, daily_file, today=EDITION)
        session.execute(update(Paper).values(first_seen=ARRIVED))
    add_people(sessions, PEOPLE)
    return sessions


def test_plan_workers_setting_reaches_the_scheduler() -> None:
    assert SchedulerConfig.from_settings(make_settings(plan_workers=3)).plan_workers == 3
    assert SchedulerConfig.from_settings(make_settings()).plan_workers == 1


def test_the_scheduler_plans_due_subscribers_with_worker_processes(
    populated: SessionFactory, settings: Settings
) -> None:
    """PostgreSQL: two planner processes; SQLite: planned here, whatever it says."""
    summary = plan_due(
        populated,
        options=plan_options(settings),
        now=NOW,
        lookahead=LOOKAHEAD,
        settings=settings,
        workers=2,
    )
    assert summary is not None
    assert summary.planned == 2
    assert delivery_times(populated) == EXPECTED


def test_every_worker_process_sets_the_send_times_of_its_batches(
    populated: SessionFactory, settings: Settings
) -> None:
    """One subscriber per batch, so both processes plan (and time) some of them."""
    with populated() as session:
        due = due_subscribers(session, now=NOW, lookahead=LOOKAHEAD, available_since=ARRIVED)
    summary = plan_with_workers(
        settings,
        populated,
        EDITION,
        options=plan_options(settings),
        workers=2,
        only=due,
        batch_size=1,
        after_batch=partial(set_send_times, now=NOW, lookahead=LOOKAHEAD),
    )
    assert summary.planned == 2
    assert delivery_times(populated) == EXPECTED
    with populated() as session:
        due_at = set(session.scalars(select(Delivery.due_at)))
    assert due_at == {at for _, at in EXPECTED.values()}
