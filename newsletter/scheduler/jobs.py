"""What the scheduler's jobs do: ingest, plan, deliver and purge (refit is the
service's own ``refit``).

Each job works on the open ``newsletter.service.Service`` it is given and reads the
time from the scheduler's clock, so ingest, planning and delivery agree on "now".
``Jobs`` outlives a spell as the active scheduler: what it learned (the subscribers
with nothing new in the newest edition) survives losing and regaining the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from newsletter.planning.latest import latest_edition_day, plan_options
from newsletter.scheduler.sendtimes import anything_due, plan_due
from newsletter.settings import Settings

if TYPE_CHECKING:
    from newsletter.scheduler.config import SchedulerConfig

log = logging.getLogger(__name__)


class Jobs:
    """The job bodies of one scheduler (its settings, config and clock)."""

    def __init__(
        self, settings: Settings, config: SchedulerConfig, clock: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.config = config
        self.clock = clock
        self._nothing_new: tuple[date | None, set[int]] = (None, set())

    def ingest(self, service: Any) -> None:
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

    def plan(self, service: Any) -> object:
        """Plan the newest edition for the subscribers due now (see ``plan_due``);
        those with nothing new in it are not asked again until a newer edition."""
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
            settings=self.settings,
            workers=self.config.plan_workers,
        )

    def deliver(self, service: Any) -> object:
        """Send every due delivery; None (nothing to log) when nothing was due or done."""
        from newsletter.delivery.run import deliver

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

    def purge(self, service: Any) -> object:
        """Forget the sign-ups never confirmed in time, and old account-mail failures."""
        from newsletter.mail.failures import purge_mail_failures
        from newsletter.subscribers.accounts import purge_expired_signups

        with service.sessions.begin() as session:
            gone = purge_expired_signups(session, now=self.clock())
            old = purge_mail_failures(session, now=self.clock())
        done = [
            f"{gone} expired sign-ups" if gone else "",
            f"{old} old mail failures" if old else "",
        ]
        said = " and ".join(part for part in done if part)
        return f"{said} forgotten" if said else None
