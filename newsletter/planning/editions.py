"""Plan an edition: rank each subscriber's new papers and write the outbox rows.

Subscribers are read and planned a batch at a time (``readers``, ``issues``,
``outbox_rows``), so memory stays flat however many there are. ``plan_edition``
plans in the caller's transaction (tests, a scheduler's single transaction); the
committing planner that shares an edition among processes and machines, one batch
per transaction, is ``newsletter.planning.planner``. Either way planning is
idempotent: a subscriber who already has a delivery for the edition is left alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.models import Delivery, Edition, Frequency, Paper
from newsletter.planning.issues import (
    EditionContext,
    RankedIssue,
    candidate_papers,
    edition_context,
    rank_batch,
    rank_issues,
)
from newsletter.planning.options import TOP_PICKS_KEPT, PlanOptions, PlanSummary
from newsletter.planning.outbox_rows import write_issues
from newsletter.planning.readers import ReaderRow, count_plannable, load_readers
from newsletter.planning.windows import (
    MAX_WINDOW_DAYS,
    WINDOW_DAYS,
    previous_issues,
    window,
    window_start,
)
from newsletter.progress import ProgressHook

__all__ = [
    "BATCH_SIZE",
    "MAX_WINDOW_DAYS",
    "WINDOW_DAYS",
    "PlanOptions",
    "PlanSummary",
    "RankedIssue",
    "candidate_papers",
    "edition_for",
    "plan_batch",
    "plan_edition",
    "previous_issues",
    "rank_issues",
    "window",
    "window_start",
]

# Subscribers read, ranked and written together (at ~10 picks each, tens of MB).
BATCH_SIZE = 5_000


def edition_for(session: Session, day: date) -> Edition:
    """The edition of ``day``, created when missing (by whichever planner is first:
    another one creating it at the same moment is not an error)."""
    query = select(Edition).where(Edition.date == day)
    edition = session.scalars(query).one_or_none()
    if edition is not None:
        return edition
    try:
        with session.begin_nested():
            edition = Edition(date=day)
            session.add(edition)
            session.flush()
    except IntegrityError:
        edition = session.scalars(query).one()
    return edition


def plan_batch(
    session: Session,
    context: EditionContext,
    edition_id: int,
    readers: list[ReaderRow],
    *,
    considered: Collection[int] | None = None,
) -> PlanSummary:
    """Rank one batch of subscribers (ids ascending) and write their deliveries, in
    the caller's transaction; what it did, as a summary to add up. ``considered``:
    ids to report in ``passed_over`` when they get no issue (a run for some
    subscribers only; not kept for a whole edition, which may be millions)."""
    summary = PlanSummary(edition=context.day)
    if not readers:
        summary.passed_over = sorted(considered or ())
        return summary
    previous = previous_issues(session, context.day, between=(readers[0].id, readers[-1].id))
    ranked = rank_batch(session, context, readers, edition_id=edition_id, previous=previous)
    write_issues(session, edition_id, ranked.issues)
    summary.planned = len(ranked.issues)
    summary.nothing_new = ranked.nothing_new
    if considered:
        issued = {issue.subscriber.id for issue in ranked.issues}
        summary.passed_over = [i for i in considered if i not in issued]
    if ranked.earliest is not None:
        # As many as the widest window any of them reached, at least the weekly one.
        earliest = min(ranked.earliest, window(context.day, Frequency.WEEKLY)[0])
        summary.candidates = sum(1 for p in context.papers if p.listed_on >= earliest)
    summary.top_picks = [
        (issue.subscriber.email, issue.picks[0][0].title, issue.picks[0][1])
        for issue in ranked.issues[:TOP_PICKS_KEPT]
    ]
    return summary


def nominal_candidates(session: Session, day: date) -> int:
    """How many papers the widest nominal window of the edition holds (what a summary
    reports, or more when catch-up issues reach further back)."""
    first = window(day, Frequency.WEEKLY)[0]
    query = select(func.count(Paper.id)).where(Paper.listed_on >= first, Paper.listed_on <= day)
    return session.scalar(query) or 0


def reader_batches(
    session: Session,
    edition_id: int,
    *,
    only: Collection[int] | None = None,
    size: int = BATCH_SIZE,
) -> Iterator[list[ReaderRow]]:
    """The subscribers still to plan, a keyset batch at a time (ids ascending)."""
    if only is not None:
        ids = sorted(set(only))
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            batch = load_readers(session, edition_id, only=chunk, limit=size)
            if batch:
                yield batch
        return
    after = 0
    while True:
        batch = load_readers(session, edition_id, after=after, limit=size)
        if batch:
            yield batch
        if len(batch) < size:
            return
        after = batch[-1].id


def plan_edition(
    session: Session,
    day: date,
    *,
    options: PlanOptions,
    only: Collection[int] | None = None,
    progress: ProgressHook | None = None,
    batch_size: int = BATCH_SIZE,
) -> PlanSummary:
    """Write one ranked delivery per active, unsuppressed subscriber with new papers,
    in the caller's transaction.

    ``only``: plan just these subscriber ids (the scheduler plans those whose send
    time is near); everyone else is left for a later run. ``progress`` counts the
    subscribers settled (planned, or with nothing new) out of those to plan.
    """
    summary = PlanSummary(edition=day)
    edition = edition_for(session, day)
    summary.already_planned = (
        session.scalar(select(func.count(Delivery.id)).where(Delivery.edition_id == edition.id))
        or 0
    )
    summary.candidates = nominal_candidates(session, day)
    total = count_plannable(session, edition.id, only=only)
    if progress is not None:
        progress(0, total)
    context = edition_context(session, day, options) if total else None
    if context is None:
        summary.nothing_new = total
        if progress is not None and total:
            progress(total, total)
        return summary
    for readers in reader_batches(session, edition.id, only=only, size=batch_size):
        summary.add(plan_batch(session, context, edition.id, readers))
        if progress is not None:
            progress(len(readers), total)
    if context.fitted.texts is not None:
        context.fitted.texts.flush()
    return summary
