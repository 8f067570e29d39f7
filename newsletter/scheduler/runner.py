"""``newsletter run``: wait for the lock, then run the jobs on APScheduler.

APScheduler 3.x, in-memory job store, UTC; each job ``coalesce=True``,
``max_instances=1`` and a ``misfire_grace_time``, so a late or missed run becomes one
run, never a burst. A job that fails is counted and logged; the scheduler runs on.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from newsletter.db import safe_url
from newsletter.errors import NewsletterError
from newsletter.models import utcnow
from newsletter.scheduler.config import SchedulerConfig
from newsletter.scheduler.jobs import Jobs
from newsletter.scheduler.locks import AdvisoryLock, LeaderLock, leader_lock
from newsletter.settings import Settings
from newsletter.subscribers.library import PENDING_INTERVAL, seed_pending

log = logging.getLogger(__name__)


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
        self.jobs = Jobs(settings, self.config, clock)
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

    def _add_jobs(self, scheduler: BackgroundScheduler, service: Any) -> None:
        config, jobs = self.config, self.jobs
        now = datetime.now(UTC)
        if config.ingest is not None and self.settings.sources:
            scheduler.add_job(
                self._job("ingest", lambda: jobs.ingest(service)),
                config.ingest,
                id="ingest",
            )
        elif config.ingest is not None:
            log.info("ingest job skipped: no [sources.NAME] configured")
        scheduler.add_job(
            self._job("plan", lambda: jobs.plan(service)),
            config.plan,
            id="plan",
            next_run_time=now,  # catch up at once after downtime
        )
        scheduler.add_job(
            self._job("deliver", lambda: jobs.deliver(service)),
            config.deliver,
            id="deliver",
            next_run_time=now,
        )
        if config.refit is not None:
            scheduler.add_job(self._job("refit", service.refit), config.refit, id="refit")
        scheduler.add_job(self._job("purge", lambda: jobs.purge(service)), config.purge, id="purge")
        scheduler.add_job(  # library imports waiting for the arXiv API (issue 16)
            self._job("seeds", lambda: seed_pending(self.settings, service.sessions)),
            IntervalTrigger(seconds=PENDING_INTERVAL.total_seconds()),
            id="seeds",
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
