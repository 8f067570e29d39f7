"""The scheduler: per-subscriber send times, a real APScheduler with short intervals, and
one active scheduler per database (SQLite file lock, PostgreSQL advisory lock)."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import select, text, update

from newsletter.db import SessionFactory, make_engine
from newsletter.mail.faulty import FaultyServer
from newsletter.migrations import upgrade
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Frequency,
    Paper,
    PlanBatch,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.ingest import ingest_file
from newsletter.planning.claims import claim
from newsletter.planning.latest import plan_options
from newsletter.planning.planner import PlannerRun, prepare
from newsletter.scheduler.config import SchedulerConfig
from newsletter.scheduler.locks import AdvisoryLock
from newsletter.scheduler.runner import Scheduler
from newsletter.scheduler.sendtimes import due_subscribers, plan_due, rule_for, set_send_times
from newsletter.settings import Settings
from newsletter.subscribers.roster import build_input, upsert_subscriber
from tests.conftest import TEST_SECRET, child_environment, make_settings

EDITION = date(2026, 5, 27)
LONG_AGO = datetime(2026, 5, 1, tzinfo=UTC)
LOOKAHEAD = timedelta(minutes=30)
# Wednesday 27 May 2026, 04:45 UTC: Berlin's 07:00 (05:00 UTC) is 15 minutes away,
# New York's 07:00 (11:00 UTC) and Kolkata's 07:00 (01:30 UTC, passed) are not near.
NOW = datetime(2026, 5, 27, 4, 45, tzinfo=UTC)
# When the edition's papers arrived.
ARRIVED = datetime(2026, 5, 27, 0, 30, tzinfo=UTC)

# email -> (topics, timezone, send hour, frequency)
PEOPLE: dict[str, tuple[list[str], str, int, str]] = {
    "berlin@example.org": (["cs.CL"], "Europe/Berlin", 7, "daily"),
    "newyork@example.org": (["cs.LG"], "America/New_York", 7, "daily"),
    "kolkata@example.org": (["cs.CV"], "Asia/Kolkata", 7, "daily"),
    "sydney@example.org": (["cs.RO"], "Australia/Sydney", 15, "weekly"),
}


def add_people(
    sessions: SessionFactory, people: dict[str, tuple[list[str], str, int, str]]
) -> None:
    catalogue = load_catalogue()
    with sessions.begin() as session:
        for email, (topics, timezone, hour, frequency) in people.items():
            upsert_subscriber(
                session,
                build_input(
                    catalogue, email=email, topics=topics, timezone=timezone, frequency=frequency
                ),
            )
            session.execute(
                update(Subscriber)
                .where(Subscriber.email == email)
                .values(send_hour=hour, confirmed_at=LONG_AGO, created_at=LONG_AGO)
            )


def ids_by_email(sessions: SessionFactory) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(select(Subscriber.email, Subscriber.id)).all())


def delivery_times(sessions: SessionFactory) -> dict[str, tuple[DeliveryStatus, datetime | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Subscriber.email, Delivery.status, Delivery.next_attempt_at).join(
                Delivery, Delivery.subscriber_id == Subscriber.id
            )
        )
        return {email: (status, at) for email, status, at in rows}


@pytest.fixture
def populated(sessions: SessionFactory, daily_file: Path) -> SessionFactory:
    with sessions.begin() as session:
        ingest_file(session, daily_file, today=EDITION)
        session.execute(update(Paper).values(first_seen=ARRIVED))
    add_people(sessions, PEOPLE)
    return sessions


# --------------------------------------------------------------------------- planning


def test_due_subscribers_by_their_own_send_time(sessions: SessionFactory) -> None:
    add_people(sessions, PEOPLE)
    ids = ids_by_email(sessions)
    with sessions.begin() as session:
        # Kolkata got today's issue at 01:30 UTC; Sydney's weekly one was last Sunday.
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        session.add(
            Delivery(
                edition_id=edition.id,
                subscriber_id=ids["kolkata@example.org"],
                status=DeliveryStatus.SENT,
                sent_at=datetime(2026, 5, 27, 1, 30, 5, tzinfo=UTC),
            )
        )
        session.execute(
            update(Subscriber)
            .where(Subscriber.email == "sydney@example.org")
            .values(confirmed_at=datetime(2026, 5, 25, 6, tzinfo=UTC))
        )
    with sessions() as session:

        def due(now: datetime, arrived: datetime | None = ARRIVED) -> list[int]:
            return due_subscribers(session, now=now, lookahead=LOOKAHEAD, available_since=arrived)

        assert due(NOW) == [ids["berlin@example.org"]]
        # Later that day New York's hour comes near; Kolkata has had today's issue.
        later = NOW.replace(hour=10, minute=40)
        assert due(later) == [ids["berlin@example.org"], ids["newyork@example.org"]]
        # Monday 1 June 05:00 UTC is 15:00 in Sydney: the weekly issue comes due.
        monday = datetime(2026, 6, 1, 4, 45, tzinfo=UTC)
        assert ids["sydney@example.org"] in due(monday)
        assert ids["sydney@example.org"] not in due(monday - timedelta(days=1))
        # Without a newest edition to wait for, New York's missed slot of yesterday
        # (never an issue since subscribing) is one catch-up issue, due now.
        assert ids["newyork@example.org"] in due(NOW, None)
        # Papers that arrived after Berlin's slot wait for the next one.
        assert due(NOW.replace(hour=5, minute=1), NOW.replace(hour=5, minute=0, second=1)) == []


def test_a_subscriber_with_an_issue_in_flight_is_not_due_again(sessions: SessionFactory) -> None:
    add_people(sessions, {"berlin@example.org": PEOPLE["berlin@example.org"]})
    ids = ids_by_email(sessions)
    with sessions.begin() as session:
        edition = Edition(date=EDITION - timedelta(days=1))
        session.add(edition)
        session.flush()
        session.add(Delivery(edition_id=edition.id, subscriber_id=ids["berlin@example.org"]))
    with sessions() as session:
        assert due_subscribers(session, now=NOW, lookahead=LOOKAHEAD) == []


def test_set_send_times_gives_each_group_its_own_slot(sessions: SessionFactory) -> None:
    people = {
        **PEOPLE,
        "berlin2@example.org": (["cs.AI"], "Europe/Berlin", 7, "daily"),
        "late@example.org": (["cs.AI"], "Europe/Berlin", 9, "daily"),
    }
    add_people(sessions, people)
    ids = ids_by_email(sessions)
    with sessions.begin() as session:
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        for sid in ids.values():
            session.add(Delivery(edition_id=edition.id, subscriber_id=sid))
        session.flush()
        # One already has its time: it is left alone.
        session.execute(
            update(Delivery)
            .where(Delivery.subscriber_id == ids["late@example.org"])
            .values(next_attempt_at=datetime(2026, 5, 27, 7, tzinfo=UTC))
        )
        times = set_send_times(session, edition.id, now=NOW, lookahead=LOOKAHEAD)
    # One UPDATE per group: Berlin 7 (two subscribers), New York, Kolkata, Sydney.
    assert len(times) == 4
    rows = delivery_times(sessions)
    assert rows["berlin@example.org"][1] == datetime(2026, 5, 27, 5, tzinfo=UTC)
    assert rows["berlin2@example.org"][1] == datetime(2026, 5, 27, 5, tzinfo=UTC)
    assert rows["late@example.org"][1] == datetime(2026, 5, 27, 7, tzinfo=UTC)
    # Not near: a catch-up is due at once (its latest slot, in the past).
    assert rows["kolkata@example.org"][1] == datetime(2026, 5, 27, 1, 30, tzinfo=UTC)
    assert rows["newyork@example.org"][1] == datetime(2026, 5, 26, 11, tzinfo=UTC)
    # Sydney is weekly on Mondays at 15:00: Monday 25 May, 05:00 UTC.
    assert rows["sydney@example.org"][1] == datetime(2026, 5, 25, 5, tzinfo=UTC)


def test_set_send_times_of_a_batch_touches_only_its_subscribers(
    sessions: SessionFactory,
) -> None:
    """A planner's batch sets the times of its own deliveries only: several planner
    processes then never wait on each other's rows (it updated the whole edition's
    unset rows before, in every batch of every process)."""
    add_people(sessions, PEOPLE)
    ids = sorted(ids_by_email(sessions).values())
    with sessions.begin() as session:
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        for sid in ids:
            session.add(Delivery(edition_id=edition.id, subscriber_id=sid))
        session.flush()
        set_send_times(session, edition.id, (ids[0], ids[1]), now=NOW, lookahead=LOOKAHEAD)
    by_id = {email_id: at for email_id, (_, at) in _times_by_id(sessions).items()}
    assert all(by_id[sid] is not None for sid in ids[:2])
    assert all(by_id[sid] is None for sid in ids[2:])


def _times_by_id(sessions: SessionFactory) -> dict[int, tuple[DeliveryStatus, datetime | None]]:
    with sessions() as session:
        rows = session.execute(
            select(Delivery.subscriber_id, Delivery.status, Delivery.next_attempt_at)
        )
        return {sid: (status, at) for sid, status, at in rows}


def test_weekly_subscribers_are_due_on_their_own_weekday(sessions: SessionFactory) -> None:
    add_people(
        sessions,
        {
            "monday@example.org": (["cs.CL"], "Europe/Berlin", 7, "weekly"),
            "friday@example.org": (["cs.CL"], "Europe/Berlin", 7, "weekly"),
            # A stored weekday means nothing to a daily subscriber.
            "daily@example.org": (["cs.CL"], "Europe/Berlin", 7, "daily"),
        },
    )
    ids = ids_by_email(sessions)
    with sessions.begin() as session:
        for email in ("friday@example.org", "daily@example.org"):
            session.execute(
                update(Subscriber).where(Subscriber.email == email).values(send_weekday=4)
            )
    friday = datetime(2026, 5, 29, 4, 45, tzinfo=UTC)  # Berlin's 07:00 is 05:00 UTC
    monday = datetime(2026, 6, 1, 4, 45, tzinfo=UTC)
    with sessions() as session:

        def due(now: datetime) -> set[int]:
            arrived = now.replace(hour=0, minute=30)
            return set(
                due_subscribers(session, now=now, lookahead=LOOKAHEAD, available_since=arrived)
            )

        assert due(friday) == {ids["friday@example.org"], ids["daily@example.org"]}
        assert due(monday) == {ids["monday@example.org"], ids["daily@example.org"]}
        assert due(friday - timedelta(days=1)) == {ids["daily@example.org"]}
    with sessions.begin() as session:
        edition = Edition(date=friday.date())
        session.add(edition)
        session.flush()
        for sid in ids.values():
            session.add(Delivery(edition_id=edition.id, subscriber_id=sid))
        session.flush()
        times = set_send_times(session, edition.id, now=friday, lookahead=LOOKAHEAD)
    assert times == {
        ("Europe/Berlin", 7, "weekly", 4): datetime(2026, 5, 29, 5, tzinfo=UTC),
        # Monday's slot is days away: planned now, it is the catch-up for last Monday.
        ("Europe/Berlin", 7, "weekly", 0): datetime(2026, 5, 25, 5, tzinfo=UTC),
        ("Europe/Berlin", 7, "daily", 0): datetime(2026, 5, 29, 5, tzinfo=UTC),
    }
    rows = delivery_times(sessions)
    assert rows["friday@example.org"][1] == datetime(2026, 5, 29, 5, tzinfo=UTC)
    assert rows["monday@example.org"][1] == datetime(2026, 5, 25, 5, tzinfo=UTC)
    assert rows["daily@example.org"][1] == datetime(2026, 5, 29, 5, tzinfo=UTC)
    with sessions() as session:
        due_at = dict(
            session.execute(
                select(Subscriber.email, Delivery.due_at).join(
                    Delivery, Delivery.subscriber_id == Subscriber.id
                )
            ).all()
        )
    assert due_at["friday@example.org"] == datetime(2026, 5, 29, 5, tzinfo=UTC)


def test_plan_due_plans_only_who_is_due_with_their_send_time(populated: SessionFactory) -> None:
    settings = make_settings()
    skip: set[int] = set()
    summary = plan_due(
        populated, options=plan_options(settings), now=NOW, lookahead=LOOKAHEAD, skip=skip
    )
    assert summary is not None
    assert summary.edition == EDITION
    assert summary.planned == 2
    rows = delivery_times(populated)
    assert rows == {
        # Berlin's 07:00 is 15 minutes away.
        "berlin@example.org": (DeliveryStatus.PENDING, datetime(2026, 5, 27, 5, tzinfo=UTC)),
        # Kolkata's 07:00 (01:30 UTC) passed after the papers arrived (00:30) with
        # nothing planned: a catch-up, due at once. New York's and Sydney's are not near.
        "kolkata@example.org": (DeliveryStatus.PENDING, datetime(2026, 5, 27, 1, 30, tzinfo=UTC)),
    }
    # Again: Berlin's issue is in flight, nobody else is due.
    assert plan_due(populated, options=plan_options(settings), now=NOW, lookahead=LOOKAHEAD) is None
    assert delivery_times(populated) == rows


def test_plan_due_leaves_who_a_dead_planner_held_to_a_later_run(
    populated: SessionFactory,
) -> None:
    """A scheduler restarted within the lease of its crashed planner: who sat in the
    held range was not looked at, so is not 'nothing new' for the day and is looked
    at once the lease is out; who was looked at and got nothing is skipped from then on."""
    ids = ids_by_email(populated)
    options = plan_options(make_settings())
    edition_id, _, _ = prepare(populated, PlannerRun(EDITION, options, owner="dead"))
    with populated.begin() as session:
        assert claim(session, edition_id, owner="dead", since=utcnow(), now=utcnow())
    skip: set[int] = set()
    held = plan_due(populated, options=options, now=NOW, lookahead=LOOKAHEAD, skip=skip)
    assert held is not None
    assert (held.planned, held.held_elsewhere, skip) == (0, 1, set())
    with populated.begin() as session:  # the dead planner's lease runs out
        session.execute(update(PlanBatch).values(lease_until=LONG_AGO))
    # Nothing scores high enough now: both due subscribers are looked at, get nothing.
    strict = replace(options, min_score=2.0, min_score_semantic=2.0)
    resumed = plan_due(populated, options=strict, now=NOW, lookahead=LOOKAHEAD, skip=skip)
    assert resumed is not None
    assert (resumed.planned, resumed.held_elsewhere) == (0, 0)
    assert skip == {ids["berlin@example.org"], ids["kolkata@example.org"]}
    assert plan_due(populated, options=options, now=NOW, lookahead=LOOKAHEAD, skip=skip) is None


# --------------------------------------------------------------------------- the scheduler


def fast_config(**changes: Any) -> SchedulerConfig:
    values: dict[str, Any] = {
        "ingest": None,
        "plan": IntervalTrigger(seconds=0.2),
        "deliver": IntervalTrigger(seconds=0.2),
        "refit": None,
        "purge": IntervalTrigger(seconds=0.2),
        "misfire_grace_seconds": 5,
        "plan_lookahead": LOOKAHEAD,
        "standby_retry_seconds": 0.1,
        "health_check_seconds": 0.1,
        "deliver_workers": 1,
        "deliver_concurrency": 1,
    }
    values.update(changes)
    return SchedulerConfig(**values)


@dataclass
class Running:
    scheduler: Scheduler
    stop: threading.Event
    thread: threading.Thread

    def halt(self) -> None:
        self.stop.set()
        self.thread.join()
        assert not self.thread.is_alive()


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    running: list[Running] = []

    def launch(settings: Settings, **kwargs: Any) -> Running:
        scheduler = Scheduler(settings, **kwargs)
        stop = threading.Event()
        thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
        thread.start()
        item = Running(scheduler, stop, thread)
        running.append(item)
        return item

    yield launch
    for item in running:
        item.halt()


def wait_for(condition: Callable[[], bool], what: str, *, limit: float = 60.0) -> None:
    """Poll ``condition`` (no upper bound is asserted on speed; ``limit`` only stops a hang)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with FaultyServer() as smtp:
        yield smtp


def settings_for(database_url: str, server: FaultyServer, **changes: Any) -> Settings:
    return make_settings(
        database_url, smtp_host=server.host, smtp_port=server.port, smtp_timeout=5.0, **changes
    )


def test_scheduler_plans_and_delivers_at_each_subscribers_hour(
    populated: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
) -> None:
    # 05:10 UTC: Berlin's 07:00 has come, Kolkata's (01:30 UTC) was missed: one
    # catch-up issue; New York's and Sydney's hours are not near.
    clock = lambda: datetime(2026, 5, 27, 5, 10, tzinfo=UTC)  # noqa: E731
    with populated.begin() as session:  # an unconfirmed sign-up from long ago
        session.add(
            Subscriber(
                email="stale@example.org", status=SubscriberStatus.PENDING, signup_at=LONG_AGO
            )
        )
    running = start(settings_for(database_url, server), config=fast_config(), clock=clock)
    wait_for(lambda: server.received >= 2, "the Berlin and Kolkata issues")
    wait_for(lambda: running.scheduler.runs["purge"] >= 1, "a purge")
    running.halt()
    assert sorted(m.rcpt_tos[0] for m in server.messages) == [
        "berlin@example.org",
        "kolkata@example.org",
    ]
    for captured in server.messages:
        message = BytesParser(policy=policy.default).parsebytes(captured.data)
        assert message["To"].addresses[0].addr_spec == captured.rcpt_tos[0]
        assert not message["Subject"].startswith("[TEST]")
    rows = delivery_times(populated)
    assert {email: status for email, (status, _) in rows.items()} == {
        "berlin@example.org": DeliveryStatus.SENT,
        "kolkata@example.org": DeliveryStatus.SENT,
    }
    with populated() as session:
        assert (
            session.scalar(select(Subscriber.id).where(Subscriber.email == "stale@example.org"))
            is None
        )
    assert running.scheduler.errors == {}
    assert running.scheduler.runs["plan"] >= 1
    assert running.scheduler.runs["deliver"] >= 1


def test_a_delivery_waits_for_its_send_time(
    populated: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
) -> None:
    # 04:45 UTC: Berlin's issue is planned for 05:00 and must not leave before.
    running = start(settings_for(database_url, server), config=fast_config(), clock=lambda: NOW)
    wait_for(lambda: bool(delivery_times(populated)), "the plan")
    wait_for(lambda: server.received >= 1, "Kolkata's catch-up issue")
    done = running.scheduler.runs["deliver"]
    wait_for(lambda: running.scheduler.runs["deliver"] >= done + 3, "three more deliver runs")
    running.halt()
    assert [m.rcpt_tos for m in server.messages] == [["kolkata@example.org"]]
    assert delivery_times(populated)["berlin@example.org"] == (
        DeliveryStatus.PENDING,
        datetime(2026, 5, 27, 5, tzinfo=UTC),
    )


def test_only_one_scheduler_runs_and_the_standby_takes_over(
    engine: Any, database_url: str, server: FaultyServer, start: Callable[..., Running]
) -> None:
    settings = settings_for(database_url, server)
    first = start(settings, config=fast_config())
    wait_for(first.scheduler.active.is_set, "the first scheduler to become active")
    second = start(settings, config=fast_config())
    wait_for(lambda: first.scheduler.runs["plan"] >= 5, "the first to run jobs a while")
    assert not second.scheduler.active.is_set()
    assert sum(second.scheduler.runs.values()) == 0
    first.halt()
    wait_for(second.scheduler.active.is_set, "the standby to take over")
    wait_for(lambda: second.scheduler.runs["plan"] >= 2, "the standby to run jobs")
    frozen = sum(first.scheduler.runs.values())
    time.sleep(0.3)
    assert sum(first.scheduler.runs.values()) == frozen  # the stopped one runs nothing
    assert first.scheduler.errors == {}
    assert second.scheduler.errors == {}


def test_a_failing_job_is_logged_and_the_scheduler_keeps_running(
    populated: SessionFactory,
    database_url: str,
    start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=2.0)
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    clock = lambda: datetime(2026, 5, 27, 5, 10, tzinfo=UTC)  # noqa: E731
    running = start(settings, config=fast_config(), clock=clock)
    wait_for(lambda: running.scheduler.errors["deliver"] >= 2, "two failed deliver runs")
    wait_for(lambda: running.scheduler.runs["purge"] >= 2, "other jobs to go on")
    running.halt()
    assert "deliver job failed" in caplog.text
    assert {status for status, _ in delivery_times(populated).values()} == {DeliveryStatus.PENDING}


def test_a_scheduler_that_loses_its_postgresql_lock_steps_down_and_retries(
    postgres_schema: str,
    server: FaultyServer,
    start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    admin = make_engine(postgres_schema)
    try:
        upgrade(admin)
        caplog.set_level(logging.INFO, logger="newsletter.scheduler")
        running = start(settings_for(postgres_schema, server), config=fast_config())
        wait_for(running.scheduler.active.is_set, "the scheduler to become active")
        lock = running.scheduler.lock
        assert isinstance(lock, AdvisoryLock)
        pid = lock.backend_pid
        assert pid is not None
        with admin.connect() as connection:
            killed = connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            assert killed.scalar() is True
        wait_for(lambda: lock.backend_pid not in (None, pid), "the lock to be taken again")
        wait_for(running.scheduler.active.is_set, "the scheduler to be active again")
        running.halt()
        assert "scheduler lock lost" in caplog.text
    finally:
        admin.dispose()


CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from newsletter.scheduler.runner import run_scheduler
from newsletter.settings import load_settings
run_scheduler(load_settings())
print("stopped", flush=True)
"""


def child_env(settings: Settings) -> dict[str, str]:
    env = child_environment()
    env.update(
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_SECRET_KEY=TEST_SECRET,
        NEWSLETTER_SMTP_HOST=settings.smtp_host,
        NEWSLETTER_SMTP_PORT=str(settings.smtp_port),
    )
    return env


def start_child(settings: Settings) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=child_env(settings),
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    for line in child.stderr:
        if "scheduler active" in line:
            return child
    child.wait()
    raise AssertionError(f"the child scheduler never became active (exit {child.returncode})")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_standby_takes_over_from_a_process_that_dies_or_stops(
    how: str, engine: Any, database_url: str, server: FaultyServer, start: Callable[..., Running]
) -> None:
    settings = settings_for(database_url, server)
    child = start_child(settings)
    try:
        standby = start(settings, config=fast_config())
        wait_for(lambda: standby.thread.is_alive(), "the standby thread")
        time.sleep(0.5)  # several lock attempts
        assert not standby.scheduler.active.is_set()
        child.send_signal(getattr(signal, how))
        stdout, _ = child.communicate()
        if how == "SIGTERM":
            assert child.returncode == 0
            assert "stopped" in stdout
        else:
            assert child.returncode == -signal.SIGKILL
        wait_for(standby.scheduler.active.is_set, "the standby to take over")
        wait_for(lambda: standby.scheduler.runs["plan"] >= 1, "the standby to plan")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_ingest_fetches_every_configured_source(
    sessions: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
    tmp_path: Path,
) -> None:
    listing = tmp_path / "papers.csv"
    listing.write_text(
        "id,title,abstract,authors,categories,date\n"
        "2605.00001,Sparse attention,We study attention.,Ada Lovelace,cs.CL,2026-05-27\n"
        "2605.00002,Dense retrieval,We study retrieval.,Alan Turing,cs.IR,2026-05-27\n",
        encoding="utf-8",
    )
    settings = settings_for(
        database_url,
        server,
        sources={"local": {"kind": "csv", "path": str(listing)}},
    )
    running = start(settings, config=fast_config(ingest=IntervalTrigger(seconds=0.1)))
    wait_for(lambda: running.scheduler.runs["ingest"] >= 2, "two ingest runs")
    running.halt()
    with sessions() as session:
        ids = set(session.scalars(select(Paper.external_id)))
    assert ids == {"2605.00001", "2605.00002"}


def test_ingest_runs_on_the_schedulers_clock(
    sessions: SessionFactory,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
    tmp_path: Path,
) -> None:
    # The scheduler's clock, not the machine's, says when papers are first seen and
    # which day an undated row is listed on, as it does for planning and delivery.
    listing = tmp_path / "papers.csv"
    listing.write_text(
        "id,title,abstract,authors,categories,date\n"
        "2605.00003,Undated paper,We study time.,Grace Hopper,cs.CL,\n",
        encoding="utf-8",
    )
    settings = settings_for(
        database_url,
        server,
        sources={"local": {"kind": "csv", "path": str(listing)}},
    )
    clock = lambda: ARRIVED  # noqa: E731
    running = start(settings, config=fast_config(ingest=IntervalTrigger(seconds=0.1)), clock=clock)
    wait_for(lambda: running.scheduler.runs["ingest"] >= 1, "an ingest run")
    running.halt()
    with sessions() as session:
        paper = session.scalars(select(Paper)).one()
    assert paper.first_seen == ARRIVED
    assert paper.listed_on == ARRIVED.date()


def test_without_sources_the_ingest_job_is_skipped(
    engine: Any,
    database_url: str,
    server: FaultyServer,
    start: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="newsletter.scheduler")
    running = start(
        settings_for(database_url, server), config=fast_config(ingest=IntervalTrigger(seconds=0.1))
    )
    wait_for(lambda: running.scheduler.runs["plan"] >= 3, "three plan runs")
    running.halt()
    assert running.scheduler.runs["ingest"] == 0
    assert "ingest job skipped" in caplog.text


def test_settings_give_a_scheduler_config() -> None:
    config = SchedulerConfig.from_settings(make_settings())
    assert config.refit is None  # no model_dir: nothing to refit
    assert config.ingest is not None
    assert config.plan is not None
    assert config.purge is not None
    now = datetime(2026, 5, 27, 4, 46, tzinfo=UTC)
    assert config.plan.get_next_fire_time(None, now) == datetime(2026, 5, 27, 5, 0, tzinfo=UTC)
    assert config.plan_lookahead == timedelta(minutes=30)
    with_model = SchedulerConfig.from_settings(make_settings(model_dir="/tmp/models"))
    assert with_model.refit is not None


def test_frequency_values_match_the_schedule_rules() -> None:
    from newsletter.scheduler.slots import Cadence

    assert {f.value for f in Frequency} == {c.value for c in Cadence}


def test_rule_for_a_subscriber_has_their_weekday_when_weekly() -> None:
    from newsletter.scheduler.slots import Rule

    weekly = Subscriber(
        timezone="Asia/Kolkata", send_hour=6, frequency=Frequency.WEEKLY, send_weekday=5
    )
    assert rule_for(weekly) == Rule("Asia/Kolkata", 6, "weekly", 5)
    daily = Subscriber(timezone="Nowhere/Land", send_hour=6, frequency=Frequency.DAILY)
    daily.send_weekday = 3
    assert rule_for(daily) == Rule("UTC", 6, "daily", 0)  # unknown zone: UTC, with a warning
