"""When each scheduler job runs and how the scheduler behaves, from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta

from apscheduler.triggers.base import BaseTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from newsletter.settings import Settings


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
    plan_workers: int = 1

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
            plan_workers=settings.plan_workers,
        )
