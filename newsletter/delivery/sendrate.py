"""Messages per second and per hour, held across every worker of one database.

A relay's limits apply to the sender, not to one process, so the count lives in
the database (table ``send_rate``): 100 ms buckets for the per-second window and
one-minute buckets for the per-hour window. A worker reserves a few permits at a
time in one short transaction: it adds them to the current buckets first (which
takes the row lock, or SQLite's write lock, so reservations never interleave),
then sums the window, and gives back whatever went over a limit.

The windows slide and err on the safe side: the per-second sum covers the
current bucket and the ten before it (1.0 to 1.1 s), the per-hour sum the current
minute and the sixty before it, so no window of exactly one second or one hour
ever holds more than the limit. Permits a worker reserved but did not use are
simply lost when their bucket ends (the rate then falls a little short, never over).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory, retry_stale
from newsletter.models import SendRate

_SECOND_BUCKET = 0.1  # seconds per bucket of the per-second window
_SECOND_SPAN = 10  # buckets before the current one in the per-second window
_HOUR_BUCKET = 60.0  # seconds per bucket of the per-hour window
_HOUR_SPAN = 60
_PRUNE_EVERY = 200  # reservations between deletions of old buckets


@dataclass(frozen=True)
class Grant:
    permits: int
    valid_until: float  # wall-clock time (epoch seconds) when unused permits lapse
    retry_after: float  # seconds to wait before asking again when nothing was granted


def _upsert(session: Session, scope: str, bucket: int, count: int) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(SendRate).values(scope=scope, bucket=bucket, count=count)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[SendRate.scope, SendRate.bucket],
            set_={"count": SendRate.count + count},
        )
    )


def _window(session: Session, scope: str, first: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(SendRate.count), 0)).where(
            SendRate.scope == scope, SendRate.bucket >= first
        )
    )
    return int(total or 0)


def reserve(
    session: Session,
    wanted: int,
    *,
    per_second: float | None,
    per_hour: int | None,
    now: float,
) -> Grant:
    """Reserve up to ``wanted`` permits at wall-clock time ``now``; the caller commits."""
    second = int(now / _SECOND_BUCKET)
    minute = int(now / _HOUR_BUCKET)
    scopes: list[tuple[str, int, int, float]] = []  # scope, bucket, window start, limit
    if per_second is not None:
        # A limit below 1/s still lets one message through per window.
        scopes.append(("s", second, second - _SECOND_SPAN, max(per_second, 1.0)))
    if per_hour is not None:
        scopes.append(("h", minute, minute - _HOUR_SPAN, float(per_hour)))
    for scope, bucket, _, _ in scopes:
        _upsert(session, scope, bucket, wanted)
    over = 0
    for scope, _, first, limit in scopes:
        over = max(over, _window(session, scope, first) - math.floor(limit))
    granted = max(0, wanted - over)
    if granted < wanted:
        for scope, bucket, _, _ in scopes:
            session.execute(
                update(SendRate)
                .where(SendRate.scope == scope, SendRate.bucket == bucket)
                .values(count=SendRate.count - (wanted - granted))
            )
    valid_until = (second + 1) * _SECOND_BUCKET if per_second is not None else now + 1.0
    if per_hour is not None:
        valid_until = min(valid_until, (minute + 1) * _HOUR_BUCKET)
    retry_after = 0.0
    if granted == 0:
        # The per-second window frees up within a bucket; the per-hour one may take
        # up to a minute, and is asked again at the next minute at the latest.
        hour_full = per_hour is not None and _window(session, "h", minute - _HOUR_SPAN) >= per_hour
        retry_after = ((minute + 1) * _HOUR_BUCKET - now) if hour_full else _SECOND_BUCKET
    return Grant(permits=granted, valid_until=valid_until, retry_after=max(retry_after, 0.01))


def prune(session: Session, *, now: float) -> None:
    """Delete buckets no window can reach any more."""
    session.execute(
        delete(SendRate).where(
            SendRate.scope == "s", SendRate.bucket < int(now / _SECOND_BUCKET) - 100
        )
    )
    session.execute(
        delete(SendRate).where(
            SendRate.scope == "h", SendRate.bucket < int(now / _HOUR_BUCKET) - 2 * _HOUR_SPAN
        )
    )


class RateLimiter:
    """Hands out send permits to the coroutines of one worker, reserving them in the
    database a few at a time. ``acquire`` waits until a message may go out."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        per_second: float | None,
        per_hour: int | None,
        workers: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sessions = session_factory
        self.per_second = per_second
        self.per_hour = per_hour
        self._clock = clock
        # Ask for about a tenth of a second's share at a time: few round trips, and
        # little is lost when a bucket ends with permits unused.
        share = (per_second or 1000.0) * _SECOND_BUCKET / max(workers, 1)
        self._chunk = max(1, min(int(share), 200))
        self._permits = 0
        self._valid_until = 0.0
        self._lock = asyncio.Lock()
        self._reservations = 0

    @property
    def enabled(self) -> bool:
        return self.per_second is not None or self.per_hour is not None

    def _reserve(self, wanted: int) -> Grant:
        with self._sessions.begin() as session:
            now = self._clock()
            grant = reserve(
                session, wanted, per_second=self.per_second, per_hour=self.per_hour, now=now
            )
            self._reservations += 1
            if self._reservations % _PRUNE_EVERY == 1:
                prune(session, now=now)
            return grant

    async def acquire(self) -> None:
        if not self.enabled:
            return
        async with self._lock:
            while self._permits <= 0 or self._clock() >= self._valid_until:
                # Run again on a new connection if its pooled one died: that only
                # reserves a few permits more than it uses.
                grant = await asyncio.to_thread(
                    retry_stale, functools.partial(self._reserve, self._chunk)
                )
                if grant.permits:
                    self._permits = grant.permits
                    self._valid_until = grant.valid_until
                else:
                    self._permits = 0
                    await asyncio.sleep(grant.retry_after)
            self._permits -= 1
