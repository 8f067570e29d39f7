"""One delivery worker: an asyncio pipeline that claims, composes, sends and records.

Inside a worker, one asyncio loop runs a producer (claim in a thread, then render and
assemble each message, yielding to the loop between messages), C sender tasks that
each keep one SMTP session of the pool busy, a recorder that commits outcomes as soon
as the previous commit is done (group commit), and a heartbeat that keeps the leases
of what the worker holds alive. ``Throttle`` is the pool-wide pause after a relay says
"slow down". Running workers (processes, signals) is ``newsletter.delivery.run``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.exc import DBAPIError

from newsletter.db import SessionFactory, autocommit_engine, retry_stale
from newsletter.delivery.compose import Composer, Job, Outgoing
from newsletter.delivery.outbox import (
    claim_batch,
    release,
    release_owned,
    renew_leases,
)
from newsletter.delivery.outcomes import DeliverySummary, all_sent, record, record_sent
from newsletter.delivery.sendrate import RateLimiter
from newsletter.delivery.smtp import SendResult, SmtpPool, smtp_config
from newsletter.errors import ConfigError, DatabaseUnavailable, SmtpUnavailable, TemplateError
from newsletter.mail.render import Renderer
from newsletter.models import OPEN, WAITING, Delivery, DeliveryStatus, utcnow
from newsletter.progress import ProgressHook
from newsletter.settings import Settings
from newsletter.tokens import Tokens

log = logging.getLogger(__name__)

# Replies that mean "you are sending too fast": the whole pool pauses, not one message.
SLOW_DOWN_CODES = frozenset({421, 451, 454})
_MAX_PAUSE = 60.0
_RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
_OWN_CLAIMS_RECHECK = 0.05


def worker_name() -> str:
    """Unique per worker process, also across machines and reused pids."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Throttle:
    """The pool-wide pause after a relay says "slow down" (421, 451, 454): every
    sender of the worker waits, starting at ``base`` seconds and doubling while the
    relay keeps saying it (at most a minute); a message accepted resets it."""

    def __init__(
        self,
        base: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._base = base
        self._clock = clock
        self._sleep = sleep
        self.delay = 0.0
        self._until = 0.0

    def slow_down(self) -> None:
        self.delay = min(max(self.delay * 2, self._base), _MAX_PAUSE)
        self._until = max(self._until, self._clock() + self.delay)

    def ok(self) -> None:
        self.delay = 0.0

    async def wait(self) -> None:
        pause = self._until - self._clock()
        if pause > 0:
            await self._sleep(pause)


@dataclass
class WorkerOptions:
    """What one run asks of each worker (the same for every worker process)."""

    edition_id: int | None
    concurrency: int
    wait: bool
    workers: int


class Worker:
    """One delivery worker: claims, composes, sends and records until nothing is due
    (or, with ``wait``, until nothing is open), or until ``stop`` is set."""

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        settings: Settings,
        options: WorkerOptions,
        renderer: Renderer,
        clock: Callable[[], datetime] = utcnow,
        progress: ProgressHook | None = None,
    ) -> None:
        self.sessions = session_factory
        self.settings = settings
        self.options = options
        self.clock = clock
        self.progress = progress  # called with each batch of outcomes recorded
        self.owner = worker_name()
        self.summary = DeliverySummary()
        self.composer = Composer(settings, renderer, Tokens(settings.secret_key.get_secret_value()))
        self.lease = timedelta(seconds=settings.lease_seconds)
        # Where outcomes that are all "sent" are stored in one statement (``_record``):
        # PostgreSQL only, made and disposed of by ``run``.
        self._autocommit: Engine | None = None
        self.stop = asyncio.Event()
        self._error: BaseException | None = None
        self._outcomes: list[tuple[Outgoing, SendResult]] = []
        self._waiters: list[asyncio.Future[bool]] = []
        self._released: list[int] = []
        # Until when each delivery this worker holds is its own, as far as it knows: set
        # when claimed, moved on only by a renewal that names it. A sender never starts
        # a message whose lease may have run out (another worker may have it by then).
        self._held: dict[int, datetime] = {}
        self._lease_margin = self.lease / 4
        self._have_outcomes = asyncio.Event()
        self._finished = False

    # The database work runs in threads so the loop keeps the SMTP sessions busy.
    def _claim(self) -> tuple[list[Job], list[int], DeliverySummary]:
        """Claim a batch and load it: the jobs, the ids claimed, what was recorded (the
        blocked deliveries). Safe to run again (``retry_stale``) when it failed before
        its commit; a commit that failed is not retried (see below)."""
        tally = DeliverySummary()
        with self.sessions() as session:
            ids = claim_batch(
                session,
                edition_id=self.options.edition_id,
                owner=self.owner,
                now=self.clock(),
                lease=self.lease,
                limit=self._batch_size(),
            )
            if not ids:
                return [], [], tally
            jobs, blocked = self.composer.load(session, ids)
            if blocked:
                record(
                    session,
                    [],
                    owner=self.owner,
                    now=self.clock(),
                    settings=self.settings,
                    summary=tally,
                    blocked=blocked,
                )
            try:
                session.commit()
            except DBAPIError as exc:
                # The claim may have been committed all the same: claiming again would
                # take a second batch and leave this one held by this worker, unsent.
                # Stop instead; the run gives back whatever this worker holds.
                raise DatabaseUnavailable(f"a claim's commit failed: {exc.orig}") from exc
        if blocked and self.progress is not None:
            self.progress(len(blocked), None)
        return jobs, ids, tally

    def _batch_size(self) -> int:
        size = self.settings.send_batch_size
        if self.settings.rate_per_second:
            # Never hold much more than a few seconds' worth under a rate limit.
            size = min(size, max(1, int(self.settings.rate_per_second * 5)))
        return size

    def _record(
        self, outcomes: list[tuple[Outgoing, SendResult]], released: list[int]
    ) -> DeliverySummary:
        """Store outcomes and give back ``released``; what was stored, to be counted by
        the caller once this returns (a run that failed is run again)."""
        tally = DeliverySummary()
        if self._autocommit is not None and outcomes and not released and all_sent(outcomes):
            # The usual batch: one statement, no transaction around it (PostgreSQL).
            with self._autocommit.connect() as connection:
                record_sent(
                    connection, outcomes, now=self.clock(), settings=self.settings, summary=tally
                )
        else:
            with self.sessions.begin() as session:
                record(
                    session,
                    outcomes,
                    owner=self.owner,
                    now=self.clock(),
                    settings=self.settings,
                    summary=tally,
                )
                tally.released += release(session, released, self.owner)
        if outcomes and self.progress is not None:
            self.progress(len(outcomes), None)
        return tally

    def _next_due(self) -> float | None:
        """Seconds until something of this run may be claimed again; None if nothing is open.

        Waiting deliveries count from when they are due; another worker's claims from
        when their lease runs out; this worker's own claims (still in flight, and maybe
        back soon as a retry) are looked at again shortly.
        """
        scope: ColumnElement[bool] = Delivery.status.in_(OPEN)
        if self.options.edition_id is not None:
            scope = scope & (Delivery.edition_id == self.options.edition_id)
        waiting = Delivery.status.in_(WAITING)
        claimed = Delivery.status == DeliveryStatus.CLAIMED
        with self.sessions() as session:
            undated = session.scalar(
                select(Delivery.id)
                .where(scope, waiting, Delivery.next_attempt_at.is_(None))
                .limit(1)
            )
            next_at = session.scalar(
                select(func.min(Delivery.next_attempt_at)).where(scope, waiting)
            )
            others = session.scalar(
                select(func.min(Delivery.lease_until)).where(
                    scope, claimed, Delivery.lease_owner != self.owner
                )
            )
            mine = session.scalar(
                select(Delivery.id)
                .where(scope, claimed, Delivery.lease_owner == self.owner)
                .limit(1)
            )
        now = self.clock()
        waits = [(moment - now).total_seconds() for moment in (next_at, others) if moment]
        if undated is not None:
            waits.append(0.0)
        if mine is not None:
            waits.append(_OWN_CLAIMS_RECHECK)
        return max(0.0, min(waits)) if waits else None

    async def run(self) -> DeliverySummary:
        queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(
            maxsize=max(self._batch_size(), self.options.concurrency * 2)
        )
        limiter = RateLimiter(
            self.sessions,
            per_second=self.settings.rate_per_second,
            per_hour=self.settings.rate_per_hour,
            workers=self.options.workers,
        )
        throttle = Throttle(self.settings.smtp_slowdown_seconds)
        engine = self.sessions.kw["bind"]
        if engine.dialect.name == "postgresql":
            self._autocommit = autocommit_engine(engine)
        recorder = asyncio.create_task(self._recorder())
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            async with SmtpPool(smtp_config(self.settings, self.options.concurrency)) as pool:
                senders = [
                    asyncio.create_task(self._sender(queue, pool, limiter, throttle))
                    for _ in range(self.options.concurrency)
                ]
                try:
                    await self._producer(queue)
                finally:
                    await self._close_queue(queue, senders)
        except SmtpUnavailable as exc:
            self._error = self._error or exc
        finally:
            self._finished = True
            self._have_outcomes.set()
            await recorder
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            try:
                # Whatever this worker still holds (claimed, never handed to a sender,
                # or cut short) goes back to the queue untouched.
                self.summary.released += await asyncio.to_thread(retry_stale, self._release_all)
            finally:
                if self._autocommit is not None:
                    self._autocommit.dispose()
                    self._autocommit = None
        if self._error is not None:
            raise self._error
        return self.summary

    def _release_all(self) -> int:
        with self.sessions.begin() as session:
            return release_owned(session, self.owner)

    async def _producer(self, queue: asyncio.Queue[Outgoing | None]) -> None:
        while not self.stop.is_set():
            claimed_at = self.clock()
            jobs, ids, tally = await asyncio.to_thread(retry_stale, self._claim)
            self.summary.add(tally)  # on the loop's thread, as every count of the run
            self._held.update(dict.fromkeys((j.delivery_id for j in jobs), claimed_at + self.lease))
            if not ids:
                if not self.options.wait:
                    return
                wait = await asyncio.to_thread(retry_stale, self._next_due)
                if wait is None:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=min(max(wait, 0.05), 5.0))
                continue
            now = self.clock()
            for index, job in enumerate(jobs):
                if self.stop.is_set():
                    self._give_back([j.delivery_id for j in jobs[index:]])
                    return
                try:
                    outgoing = self.composer.compose(job, now=now)
                except (TemplateError, ConfigError):
                    # Every message would fail the same way: stop, keep them all.
                    self._give_back([j.delivery_id for j in jobs[index:]])
                    raise
                except Exception as exc:
                    # This delivery's own data (an address, a header) cannot make a
                    # message: it fails alone, with the reason, and the rest go on.
                    log.warning("delivery %s cannot be built: %s", job.delivery_id, exc)
                    self._held.pop(job.delivery_id, None)
                    self._outcomes.append(self.composer.unbuildable(job, exc))
                    self._have_outcomes.set()
                    continue
                await queue.put(outgoing)
                if index % 4 == 3:
                    await asyncio.sleep(0)  # let the senders and the recorder run

    async def _close_queue(
        self, queue: asyncio.Queue[Outgoing | None], senders: list[asyncio.Task[None]]
    ) -> None:
        """One end marker per sender; whatever senders that died left queued goes back."""
        for _ in senders:
            while not all(task.done() for task in senders):
                try:
                    queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    await asyncio.sleep(0.01)  # the senders are still taking messages
        await asyncio.gather(*senders, return_exceptions=True)
        while not queue.empty():
            left = queue.get_nowait()
            if left is not None:
                self._give_back([left.delivery_id])

    def _fail(self, error: BaseException) -> None:
        """Stop this worker because of ``error``; a bug outranks an unreachable relay."""
        if self._error is None or (
            isinstance(self._error, SmtpUnavailable) and not isinstance(error, SmtpUnavailable)
        ):
            self._error = error
        self.stop.set()

    def _give_back(self, ids: list[int]) -> None:
        for delivery_id in ids:
            self._held.pop(delivery_id, None)
        self._released.extend(ids)
        self._have_outcomes.set()

    def _still_held(self, delivery_id: int) -> bool:
        """Whether this delivery's lease is surely still this worker's for a while; if
        not (the heartbeat was late), it goes back unsent."""
        until = self._held.pop(delivery_id, None)
        if until is not None and self.clock() < until - self._lease_margin:
            return True
        log.warning("delivery %s: its lease ran out before it was sent; given back", delivery_id)
        self._give_back([delivery_id])
        return False

    async def _sender(
        self,
        queue: asyncio.Queue[Outgoing | None],
        pool: SmtpPool,
        limiter: RateLimiter,
        throttle: Throttle,
    ) -> None:
        while True:
            outgoing = await queue.get()
            if outgoing is None:
                return
            if self.stop.is_set():
                self._give_back([outgoing.delivery_id])
                continue
            try:
                await throttle.wait()
                await limiter.acquire()
                if not self._still_held(outgoing.delivery_id):
                    continue
                result = await pool.send(
                    sender=outgoing.envelope_from,
                    recipients=[outgoing.recipient],
                    message=outgoing.message,
                    crlf=True,  # composed messages have CRLF line ends only (tested)
                )
            except SmtpUnavailable as exc:
                self._fail(exc)
                self._give_back([outgoing.delivery_id])
                continue
            except Exception as exc:  # a bug: stop, keep the message, report it
                log.exception("delivery %s could not be sent", outgoing.delivery_id)
                self._fail(exc)
                self._give_back([outgoing.delivery_id])
                return
            if result.code in SLOW_DOWN_CODES:
                throttle.slow_down()
            elif result.status == "sent":
                throttle.ok()
            # Wait until this outcome is committed before the next message on this
            # session: a worker killed at any moment then leaves at most one message
            # per session accepted by the relay but not marked sent (the resend window
            # the protocol leaves); commits still group the outcomes of all sessions.
            recorded = asyncio.get_running_loop().create_future()
            self._outcomes.append((outgoing, result))
            self._waiters.append(recorded)
            self._have_outcomes.set()
            if not await recorded:
                return  # the outcome could not be stored: stop sending

    async def _recorder(self) -> None:
        """Commit outcomes as they come: each commit takes whatever arrived during the
        previous one (group commit), so under load one commit covers many messages."""
        while True:
            if not (self._outcomes or self._released):
                if self._finished:
                    return
                await self._have_outcomes.wait()
                self._have_outcomes.clear()
                continue
            outcomes, self._outcomes = self._outcomes, []
            waiters, self._waiters = self._waiters, []
            released, self._released = self._released, []
            try:
                await self._record_with_retries(outcomes, released)
            except BaseException:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(False)
                raise
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(True)

    async def _record_with_retries(
        self, outcomes: list[tuple[Outgoing, SendResult]], released: list[int]
    ) -> None:
        """Outcomes of messages already sent must not be lost to a database blip: retry,
        and stop sending meanwhile once the first attempt failed."""
        for delay in (*_RECORD_RETRY_DELAYS, None):
            try:
                tally = await asyncio.to_thread(
                    retry_stale, functools.partial(self._record, outcomes, released)
                )
                self.summary.add(tally)
                return
            except Exception as exc:
                self.stop.set()
                if delay is None:
                    log.error("cannot record %d outcomes: %s", len(outcomes), exc)
                    self._fail(exc)
                    raise
                log.warning("recording outcomes failed, retrying in %s s: %s", delay, exc)
                await asyncio.sleep(delay)

    async def _heartbeat(self) -> None:
        """Keep the leases of everything held alive; if that fails, stop sending (the
        leases will run out and another worker may take the rows: sending on would
        risk sending twice)."""
        interval = max(self.lease.total_seconds() / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            try:
                started, renewed = await asyncio.to_thread(retry_stale, self._renew)
            except Exception as exc:
                log.error("cannot renew delivery leases, stopping: %s", exc)
                self._fail(exc)
                return
            for delivery_id in renewed & self._held.keys():
                self._held[delivery_id] = started + self.lease

    def _renew(self) -> tuple[datetime, set[int]]:
        """Renew every lease this worker holds: when it began, and the ids renewed. The
        clock is read here, so a renewal run again (``retry_stale``) after one that did
        commit renews them all again, not none."""
        now = self.clock()
        with self.sessions.begin() as session:
            return now, renew_leases(session, owner=self.owner, now=now, lease=self.lease)
