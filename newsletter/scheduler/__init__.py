"""``newsletter run``: the one scheduler of a database, with its jobs.

Jobs (APScheduler 3.x, in-memory job store, UTC; each ``coalesce=True``,
``max_instances=1`` and a ``misfire_grace_time``, so a late or missed run becomes one
run, never a burst):

- ingest: ``newsletter.papers.fetch.fetch_source`` for every ``[sources.NAME]`` configured
  (no job without sources);
- plan: plan the newest edition for the subscribers whose send time comes within
  ``plan_lookahead_minutes`` (or has passed since both their last issue and the
  arrival of the edition's papers: one catch-up issue after downtime), and set each
  new delivery's ``next_attempt_at`` to that subscriber's send time, so the deliver
  job sends it then and not before;
- deliver: ``newsletter.delivery.deliver`` over every due delivery;
- refit: refit the stored recommender model (only with ``model_dir``);
- purge: forget sign-ups never confirmed in time.

Exactly one scheduler runs jobs per database: on PostgreSQL it holds
``pg_try_advisory_lock`` on a dedicated connection for as long as it runs; on SQLite an
exclusive ``flock`` on ``<database>.scheduler.lock``. Another ``newsletter run``
waits as a standby, retrying the lock, and takes over when the first one stops or
dies (the operating system or PostgreSQL releases the lock of a dead process).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfoNotFoundError

from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    create_engine,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from newsletter.db import SessionFactory, safe_url
from newsletter.errors import NewsletterError
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Frequency,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.scheduler.slots import Rule, due_cutoff, send_time
from newsletter.settings import Settings

if TYPE_CHECKING:
    from newsletter.planning.editions import PlanOptions, PlanSummary

log = logging.getLogger(__name__)

_OPEN = (DeliveryStatus.PENDING, DeliveryStatus.RETRY, DeliveryStatus.CLAIMED)
_LOCK_NAME = "newsletter-scheduler"


# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerConfig:
    """When each job runs and how the scheduler behaves. ``None``: job not scheduled."""

    ingest: BaseTrigger | None
    plan: BaseTrigger
    deliver: BaseTrigger
    refit: BaseTrigger | None
    purge: BaseTrigger
    misfire_grace_seconds: int = 900
    plan_lookahead: timedelta = timedelta(minutes=30)
    standby_retry_seconds: float = 5.0
    health_check_seconds: float = 10.0
    deliver_workers: int | None = None
    deliver_concurrency: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SchedulerConfig:
        def cron(expression: str) -> CronTrigger:
            return CronTrigger.from_crontab(expression, timezone=UTC)

        return cls(
            ingest=cron(settings.ingest_cron),
            plan=cron(settings.plan_cron),
            deliver=IntervalTrigger(seconds=settings.deliver_interval_seconds),
            refit=cron(settings.refit_cron) if settings.model_dir else None,
            purge=cron(settings.purge_cron),
            misfire_grace_seconds=settings.scheduler_misfire_grace_seconds,
            plan_lookahead=timedelta(minutes=settings.plan_lookahead_minutes),
            standby_retry_seconds=settings.scheduler_standby_seconds,
            deliver_workers=settings.deliver_workers,
            deliver_concurrency=settings.smtp_connections,
        )


def plan_options(settings: Settings) -> PlanOptions:
    """The planner's options from the settings (as ``newsletter plan`` uses them)."""
    from newsletter.planning.editions import PlanOptions

    return PlanOptions.from_settings(settings)


# --- planning at each subscriber's own send time ----------------------------------------


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


def latest_edition_day(session: Session, now: datetime) -> date | None:
    """The newest listing date there are papers for, up to today (UTC)."""
    return session.scalar(
        select(func.max(Paper.listed_on)).where(Paper.listed_on <= now.astimezone(UTC).date())
    )


def edition_available_at(session: Session, day: date) -> datetime | None:
    """When the edition's papers arrived (the first of them was ingested)."""
    return session.scalar(select(func.min(Paper.first_seen)).where(Paper.listed_on == day))


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
    in_flight = select(Delivery.subscriber_id).where(Delivery.status.in_(_OPEN))
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
    session: Session, edition_id: int, *, now: datetime, lookahead: timedelta
) -> dict[GroupKey, datetime]:
    """Give the edition's new pending deliveries (``next_attempt_at`` unset) their
    subscriber's send time: one UPDATE per (timezone, send hour, frequency, weekday)
    group.

    Returns the send time set per group.
    """
    unset = (
        (Delivery.edition_id == edition_id)
        & (Delivery.status == DeliveryStatus.PENDING)
        & Delivery.next_attempt_at.is_(None)
    )
    groups = session.execute(
        select(Subscriber.timezone, Subscriber.send_hour, Subscriber.frequency, _group_weekday())
        .join(Delivery, Delivery.subscriber_id == Subscriber.id)
        .where(unset)
        .distinct()
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
    """Whether any delivery may be claimed now (as ``newsletter.delivery`` decides)."""
    due = or_(
        Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.RETRY))
        & or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        (Delivery.status == DeliveryStatus.CLAIMED) & (Delivery.lease_until < now),
    )
    return session.scalar(select(Delivery.id).where(due).limit(1)) is not None


def plan_due(
    session_factory: SessionFactory,
    *,
    options: PlanOptions,
    now: datetime,
    lookahead: timedelta,
    skip: set[int] | None = None,
) -> PlanSummary | None:
    """Plan the newest edition for the subscribers whose issue is due (one transaction:
    the deliveries are never visible without their send time). ``skip``: subscribers
    known to have nothing new in this edition. None when there is nothing to plan."""
    from newsletter.planning.editions import plan_edition

    with session_factory.begin() as session:
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
        summary = plan_edition(session, day, options=options, only=due)
        edition_id = session.scalar(select(Edition.id).where(Edition.date == day))
        assert edition_id is not None  # plan_edition created it
        set_send_times(session, edition_id, now=now, lookahead=lookahead)
        planned = set(
            session.scalars(select(Delivery.subscriber_id).where(Delivery.edition_id == edition_id))
        )
    if skip is not None:
        skip.update(s for s in due if s not in planned)
    return summary


# --- one active scheduler per database ------------------------------------------------------


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...
    def healthy(self) -> bool: ...
    def release(self) -> None: ...


class FileLock:
    """An exclusive ``flock`` on a file: released by the kernel when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def try_acquire(self) -> bool:
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return True

    def healthy(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()


class NoLock:
    """An in-memory SQLite database belongs to one process: nothing to share."""

    def try_acquire(self) -> bool:
        return True

    def healthy(self) -> bool:
        return True

    def release(self) -> None:
        return None


class AdvisoryLock:
    """``pg_try_advisory_lock`` held on a dedicated connection of its own.

    The key is derived from the database and schema, so installations sharing a
    PostgreSQL server (or one database in separate schemas) do not block each other.
    The lock lives as long as the connection: if PostgreSQL or the network drops
    it, ``healthy`` turns false and the scheduler steps down.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_engine(url, poolclass=NullPool)
        self._connection: Connection | None = None
        self.backend_pid: int | None = None  # the server process holding the lock

    def try_acquire(self) -> bool:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            database, schema, pid = connection.execute(
                text("SELECT current_database(), current_schema(), pg_backend_pid()")
            ).one()
            key = _lock_key(f"{_LOCK_NAME}:{database}:{schema}")
            got = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            )
        except BaseException:
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        self.backend_pid = int(pid)
        return True

    def healthy(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except Exception:  # the connection (and with it the lock) is gone
            return False
        return True

    def release(self) -> None:
        connection, self._connection = self._connection, None
        self.backend_pid = None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.execute(text("SELECT pg_advisory_unlock_all()"))
            with contextlib.suppress(Exception):
                connection.close()

    def close(self) -> None:
        self.release()
        self._engine.dispose()


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
    )


def leader_lock(database_url: str) -> LeaderLock:
    """The lock that makes one scheduler per database the active one."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return AdvisoryLock(database_url)
    path = url.database
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        return NoLock()
    return FileLock(Path(f"{path}.scheduler.lock"))


# --- the scheduler --------------------------------------------------------------------------


class Scheduler:
    """Waits for the lock (standby), then runs the jobs until ``stop`` is set or the lock
    is lost. ``active`` is set while it is the active scheduler; ``runs`` counts
    finished job runs by name and ``errors`` failed ones."""

    def __init__(
        self,
        settings: Settings,
        *,
        config: SchedulerConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.config = config or SchedulerConfig.from_settings(settings)
        self.clock = clock
        self.active = threading.Event()
        self.runs: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._counts = threading.Lock()
        self._nothing_new: tuple[date | None, set[int]] = (None, set())
        self.lock: LeaderLock | None = None

    def run(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set: standby while another scheduler holds the lock."""
        lock = self.lock = leader_lock(self.settings.database_url)
        waiting_said = False
        try:
            while not stop.is_set():
                try:
                    acquired = lock.try_acquire()
                except Exception as exc:  # the database is unreachable: keep trying
                    log.warning("scheduler lock: %s", str(exc).splitlines()[0])
                    acquired = False
                if not acquired:
                    if not waiting_said:
                        log.info(
                            "another scheduler is active on %s: standing by",
                            safe_url(self.settings.database_url),
                        )
                        waiting_said = True
                    stop.wait(self.config.standby_retry_seconds)
                    continue
                waiting_said = False
                try:
                    self._lead(lock, stop)
                finally:
                    lock.release()
        finally:
            if isinstance(lock, AdvisoryLock):
                lock.close()

    def _lead(self, lock: LeaderLock, stop: threading.Event) -> None:
        from newsletter.service import Service

        service = Service.open(self.settings)
        scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.config.misfire_grace_seconds,
            },
        )
        try:
            self._add_jobs(scheduler, service)
            scheduler.start()
            self.active.set()
            log.info("scheduler active on %s", safe_url(self.settings.database_url))
            while not stop.wait(self.config.health_check_seconds):
                if not lock.healthy():
                    log.error("scheduler lock lost: stepping down")
                    return
        finally:
            self.active.clear()
            if scheduler.running:
                scheduler.shutdown(wait=True)
            service.close()

    def _ingest(self, service: Any) -> None:
        """Fetch every configured source; one failing source does not stop the others
        (each fetch is its own transaction: a failure commits nothing). The scheduler's
        clock says when the papers are first seen and which day's listing is newest,
        as it says when planning and delivery happen."""
        from newsletter.papers.fetch import fetch_source

        failures = []
        for name in sorted(self.settings.sources):
            try:
                now = self.clock()
                log.info("%s", fetch_source(service.sessions, self.settings, name, now=now))
            except Exception as exc:
                log.error("ingest from source %s failed: %s", name, exc)
                failures.append(name)
        if failures:
            raise RuntimeError(f"ingest failed for: {', '.join(failures)}")

    def _add_jobs(self, scheduler: BackgroundScheduler, service: Any) -> None:
        config = self.config
        now = datetime.now(UTC)
        if config.ingest is not None and self.settings.sources:
            scheduler.add_job(
                self._job("ingest", lambda: self._ingest(service)),
                config.ingest,
                id="ingest",
            )
        elif config.ingest is not None:
            log.info("ingest job skipped: no [sources.NAME] configured")
        scheduler.add_job(
            self._job("plan", lambda: self._plan(service)),
            config.plan,
            id="plan",
            next_run_time=now,  # catch up at once after downtime
        )
        scheduler.add_job(
            self._job("deliver", lambda: self._deliver(service)),
            config.deliver,
            id="deliver",
            next_run_time=now,
        )
        if config.refit is not None:
            scheduler.add_job(self._job("refit", service.refit), config.refit, id="refit")
        scheduler.add_job(
            self._job("purge", lambda: self._purge(service)), config.purge, id="purge"
        )

    def _job(self, name: str, work: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                result = work()
            except NewsletterError as exc:  # the relay or database is down, a bad setting
                with self._counts:
                    self.errors[name] += 1
                log.error("%s job failed: %s", name, exc)
                return
            except Exception:  # a bug: keep the traceback, keep the scheduler running
                with self._counts:
                    self.errors[name] += 1
                log.exception("%s job failed", name)
                return
            with self._counts:
                self.runs[name] += 1
            if result is not None:
                log.info("%s: %s", name, result)

        return run

    def _plan(self, service: Any) -> object:
        service.sync_topics()
        now = self.clock()
        with service.sessions() as session:
            day = latest_edition_day(session, now)
        if self._nothing_new[0] != day:
            self._nothing_new = (day, set())
        return plan_due(
            service.sessions,
            options=plan_options(self.settings),
            now=now,
            lookahead=self.config.plan_lookahead,
            skip=self._nothing_new[1],
        )

    def _deliver(self, service: Any) -> object:
        from newsletter.delivery import deliver

        with service.sessions() as session:
            if not anything_due(session, self.clock()):
                return None  # no SMTP session opened for nothing
        summary = deliver(
            service.sessions,
            settings=self.settings,
            edition=None,
            workers=self.config.deliver_workers,
            concurrency=self.config.deliver_concurrency,
            renderer=service.renderer,
            clock=self.clock,
        )
        return summary if summary.sent or summary.retried or summary.failed else None

    def _purge(self, service: Any) -> object:
        from newsletter.subscribers.accounts import purge_expired_signups

        with service.sessions.begin() as session:
            gone = purge_expired_signups(session, now=self.clock())
        return f"{gone} expired sign-ups forgotten" if gone else None


def run_scheduler(settings: Settings) -> None:
    """``newsletter run``: block until SIGTERM or SIGINT, active or standing by."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping the scheduler", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        Scheduler(settings).run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
