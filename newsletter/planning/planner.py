"""The committing planner: an edition planned one batch per transaction, shared by any
number of planners (processes here, or on other machines against one PostgreSQL).

Each planner claims a range of subscriber ids (``claims``), plans it (``editions.
plan_batch``) and writes its deliveries, its items and the range's "done" in one
transaction. A crash loses at most the batch in flight, which is rolled back whole;
the next run (or a peer, once the lease runs out) plans it. A batch that fails is
retried whole a few times, then the range is given back and the error raised.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.models import Delivery, utcnow
from newsletter.planning.claims import (
    LEASE,
    claim,
    ensure_ranges,
    finish,
    held_elsewhere,
    range_of,
    release,
)
from newsletter.planning.editions import BATCH_SIZE, edition_for, nominal_candidates, plan_batch
from newsletter.planning.issues import EditionContext, edition_context
from newsletter.planning.options import PlanOptions, PlanSummary
from newsletter.planning.readers import count_plannable, load_readers
from newsletter.progress import ProgressHook

log = logging.getLogger(__name__)

# A failing batch is tried this many times (a serialisation failure, a unique
# violation when a peer planned the same subscriber) before the planner gives up.
ATTEMPTS = 3
# Run in each batch's transaction after its deliveries are written (the scheduler
# gives them their send times there, so none is ever visible without one).
# Runs in each batch's transaction: (session, edition id, the batch's subscriber ids
# from-to).
AfterBatch = Callable[[Session, int, tuple[int, int]], object]


class LeaseLost(Exception):
    """Another planner took this range over (our lease ran out): the batch is undone."""


@dataclass(frozen=True)
class PlannerRun:
    """Who a planner is and what it plans: the owner name is unique per run."""

    day: date
    options: PlanOptions
    only: Collection[int] | None = None
    batch_size: int = BATCH_SIZE
    lease: timedelta = LEASE
    owner: str = ""

    def named(self) -> PlannerRun:
        if self.owner:
            return self
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        return PlannerRun(
            self.day, self.options, self.only, self.batch_size, self.lease, owner[:100]
        )


def prepare(session_factory: SessionFactory, run: PlannerRun) -> tuple[int, PlanSummary, int]:
    """Create the edition and its ranges: (edition id, the summary so far, how many
    subscribers are still to plan)."""
    with session_factory.begin() as session:
        edition_id = edition_for(session, run.day).id
        summary = PlanSummary(edition=run.day)
        summary.already_planned = (
            session.scalar(select(func.count(Delivery.id)).where(Delivery.edition_id == edition_id))
            or 0
        )
        summary.candidates = nominal_candidates(session, run.day)
        total = count_plannable(session, edition_id, only=run.only)
        ensure_ranges(session, edition_id, width=run.batch_size, only=run.only)
    return edition_id, summary, total


def plan_claimed(
    session_factory: SessionFactory,
    run: PlannerRun,
    *,
    edition_id: int,
    since: datetime,
    clock: Callable[[], datetime] = utcnow,
    progress: ProgressHook | None = None,
    total: int | None = None,
    after_batch: AfterBatch | None = None,
) -> PlanSummary:
    """Claim and plan ranges of the edition until none is left; this planner's part
    of the work, as a summary (``already_planned`` and totals are the caller's)."""
    run = run.named()
    summary = PlanSummary(edition=run.day)
    only = None if run.only is None else sorted(set(run.only))
    # A run for some subscribers claims only their ranges, each once (it does not
    # mark them done: see ``claims.finish``).
    firsts = None if only is None else sorted({range_of(i, run.batch_size) for i in only})
    with session_factory() as session:
        context = edition_context(session, run.day, run.options)
    # The edition's papers and model live as long as the run: moved out of the
    # collector's sight, each batch's short-lived rows no longer make it walk them
    # (a third of the time went to collections at 20k subscribers).
    gc.collect()
    gc.freeze()
    try:
        while firsts is None or firsts:
            with session_factory.begin() as session:
                claimed = claim(
                    session,
                    edition_id,
                    owner=run.owner,
                    since=since,
                    now=clock(),
                    lease=run.lease,
                    firsts=firsts,
                )
            if claimed is None:
                return summary
            first, last = claimed
            members = None
            if only is not None and firsts is not None:
                members = only[bisect_left(only, first) : bisect_right(only, last)]
                firsts.remove(first)
            done = _plan_with_retries(
                session_factory,
                run,
                edition_id,
                (first, last),
                members,
                context,
                clock,
                after_batch,
            )
            if done is not None:
                summary.add(done)
                if progress is not None:
                    progress(done.planned + done.nothing_new, total)
        return summary
    finally:
        gc.unfreeze()
        if context is not None and context.fitted.texts is not None:
            context.fitted.texts.flush()


def _plan_with_retries(
    session_factory: SessionFactory,
    run: PlannerRun,
    edition_id: int,
    bounds: tuple[int, int],
    members: list[int] | None,
    context: EditionContext | None,
    clock: Callable[[], datetime],
    after_batch: AfterBatch | None,
) -> PlanSummary | None:
    """Plan a claimed range, retried whole on a database error; None when another
    planner took it over meanwhile."""
    first, last = bounds
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _plan_range(
                session_factory,
                run,
                edition_id,
                first,
                last,
                members,
                context,
                clock,
                after_batch,
            )
        except LeaseLost:
            log.warning("planner %s lost range %d-%d to another planner", run.owner, first, last)
            return None
        except (IntegrityError, DBAPIError) as exc:
            if attempt == ATTEMPTS:
                _release(session_factory, run, edition_id, first)
                raise
            log.warning("batch %d-%d failed (%s), retrying it whole", first, last, exc)
        except BaseException:
            # Not the database's (a bug, an interrupt): give the range back at once
            # rather than leave it to wait for the lease.
            _release(session_factory, run, edition_id, first)
            raise
    return None


def _release(session_factory: SessionFactory, run: PlannerRun, edition_id: int, first: int) -> None:
    """Give a failed range back; a failure here only logs (the error in flight is the
    one to report, and the lease runs out anyway)."""
    try:
        with session_factory.begin() as session:
            release(session, edition_id, first, owner=run.owner)
    except Exception as exc:
        log.warning("could not give range %d back (%s); its lease runs out", first, exc)


def _plan_range(
    session_factory: SessionFactory,
    run: PlannerRun,
    edition_id: int,
    first: int,
    last: int,
    members: list[int] | None,
    context: EditionContext | None,
    clock: Callable[[], datetime],
    after_batch: AfterBatch | None,
) -> PlanSummary:
    """Plan one claimed range in one transaction: deliveries, items and "done"."""
    with session_factory.begin() as session:
        readers = []
        if members != []:
            readers = load_readers(
                session,
                edition_id,
                after=first - 1,
                through=last,
                only=members,
                limit=last - first + 1,
            )
        if readers and context is not None:
            done = plan_batch(session, context, edition_id, readers, considered=members)
        else:
            done = PlanSummary(edition=run.day, nothing_new=len(readers))
            done.passed_over = list(members or ())
        if after_batch is not None and done.planned:
            after_batch(session, edition_id, (first, last))
        whole = members is None
        if not finish(session, edition_id, first, owner=run.owner, now=clock(), whole=whole):
            raise LeaseLost(f"range {first}-{last}")
    return done


def plan_in_batches(
    session_factory: SessionFactory,
    day: date,
    *,
    options: PlanOptions,
    only: Collection[int] | None = None,
    progress: ProgressHook | None = None,
    batch_size: int = BATCH_SIZE,
    clock: Callable[[], datetime] = utcnow,
    after_batch: AfterBatch | None = None,
) -> PlanSummary:
    """Plan the edition of ``day`` in this process, one committed batch at a time,
    sharing it with any other planner of the same edition."""
    since = clock()
    run = PlannerRun(day, options, only, batch_size).named()
    edition_id, summary, total = prepare(session_factory, run)
    if progress is not None:
        progress(0, total)
    summary.add(
        plan_claimed(
            session_factory,
            run,
            edition_id=edition_id,
            since=since,
            clock=clock,
            progress=progress,
            total=total,
            after_batch=after_batch,
        )
    )
    return finished(session_factory, run, summary, edition_id=edition_id, since=since)


def finished(
    session_factory: SessionFactory,
    run: PlannerRun,
    summary: PlanSummary,
    *,
    edition_id: int,
    since: datetime,
) -> PlanSummary:
    """The run's summary, with the batches other planners still hold counted in."""
    with session_factory() as session:
        summary.held_elsewhere = held_elsewhere(
            session, edition_id, since=since, owner=run.named().owner
        )
    if summary.held_elsewhere:
        log.warning(
            "edition %s: %d batches held by other planners", run.day, summary.held_elsewhere
        )
    return summary
