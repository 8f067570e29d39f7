"""Planners share an edition by claiming ranges of subscriber ids (``plan_batches``).

Each range is at most one batch wide. A planner claims one with a lease (PostgreSQL:
``SELECT ... FOR UPDATE SKIP LOCKED``, so planners on several machines never wait
for each other; SQLite, a single writer: one atomic ``UPDATE ... RETURNING``), plans
it, and marks it done in the transaction that writes its deliveries. A planner killed
mid-batch wrote nothing of it; its lease runs out and another planner takes the
range over. A range done before this planner started is looked at again (it is cheap:
who has a delivery is skipped), so a later run plans the subscribers who became due
since; a range done after it started is a peer's work and left alone. A run for some
subscribers only (the scheduler's due ones) gives its ranges back without marking
them done, since it planned only part of each.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.models import PlanBatch, Subscriber

# How long a claimed range is a planner's own; a batch takes seconds.
LEASE = timedelta(minutes=2)


def range_of(subscriber_id: int, width: int) -> int:
    """The first id of the range ``subscriber_id`` falls in (ranges are aligned, so
    every planner cuts the same ones)."""
    return (subscriber_id - 1) // width * width + 1


def ensure_ranges(
    session: Session, edition_id: int, *, width: int, only: Collection[int] | None = None
) -> None:
    """Create the edition's ranges up to the highest subscriber id (those already
    there are kept: several planners may do this at once)."""
    if only is not None:
        bounds = (min(only, default=None), max(only, default=None))
    else:
        row = session.execute(select(func.min(Subscriber.id), func.max(Subscriber.id))).one()
        bounds = (row[0], row[1])
    low, high = bounds
    if low is None or high is None:
        return
    have = set(
        session.scalars(select(PlanBatch.first_id).where(PlanBatch.edition_id == edition_id))
    )
    rows = [
        {"edition_id": edition_id, "first_id": first, "last_id": first + width - 1}
        for first in range(range_of(low, width), high + 1, width)
        if first not in have
    ]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 1_000):
        session.execute(insert(PlanBatch).on_conflict_do_nothing(), rows[start : start + 1_000])


def _claimable(
    edition_id: int, *, owner: str, since: datetime, now: datetime, firsts: list[int] | None
) -> ColumnElement[bool]:
    condition = (
        (PlanBatch.edition_id == edition_id)
        & (PlanBatch.done_at.is_(None) | (PlanBatch.done_at < since))
        & (
            PlanBatch.lease_until.is_(None)
            | (PlanBatch.lease_until < now)
            | (PlanBatch.lease_owner == owner)
        )
    )
    if firsts is not None:
        condition = condition & PlanBatch.first_id.in_(firsts)
    return condition


def claim(
    session: Session,
    edition_id: int,
    *,
    owner: str,
    since: datetime,
    now: datetime,
    lease: timedelta = LEASE,
    firsts: list[int] | None = None,
) -> tuple[int, int] | None:
    """Claim the edition's next range not done since ``since`` and not leased to
    someone else (among ``firsts`` when given): its (first id, last id), or None when
    there is none left. The caller commits, which makes the lease visible."""
    claimable = _claimable(edition_id, owner=owner, since=since, now=now, firsts=firsts)
    leased = {"lease_owner": owner, "lease_until": now + lease}
    if session.get_bind().dialect.name == "postgresql":
        row = session.execute(
            select(PlanBatch.first_id, PlanBatch.last_id)
            .where(claimable)
            .order_by(PlanBatch.first_id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        session.execute(
            update(PlanBatch)
            .where(PlanBatch.edition_id == edition_id, PlanBatch.first_id == row.first_id)
            .values(**leased)
        )
        return row.first_id, row.last_id
    nxt = (
        select(PlanBatch.first_id)
        .where(claimable)
        .order_by(PlanBatch.first_id)
        .limit(1)
        .scalar_subquery()
    )
    found = session.execute(
        update(PlanBatch)
        .where(claimable, PlanBatch.first_id == nxt)
        .values(**leased)
        .returning(PlanBatch.first_id, PlanBatch.last_id)
    ).first()
    return None if found is None else (found[0], found[1])


def finish(
    session: Session,
    edition_id: int,
    first_id: int,
    *,
    owner: str,
    now: datetime,
    whole: bool = True,
) -> bool:
    """Mark a range done, in the transaction that wrote its deliveries; False when the
    lease was lost meanwhile (another planner took the range over: roll back).
    ``whole=False``: a run for some subscribers only planned part of it, so it is
    given back without "done" (a full planner running meanwhile still plans the rest)."""
    finished = {"done_at": now} if whole else {}
    done = session.execute(
        update(PlanBatch)
        .where(
            PlanBatch.edition_id == edition_id,
            PlanBatch.first_id == first_id,
            PlanBatch.lease_owner == owner,
        )
        .values(**finished, lease_owner=None, lease_until=None)
    )
    return bool(getattr(done, "rowcount", 0))


def release(session: Session, edition_id: int, first_id: int, *, owner: str) -> None:
    """Give a range back undone (the batch failed): anyone may claim it at once."""
    session.execute(
        update(PlanBatch)
        .where(
            PlanBatch.edition_id == edition_id,
            PlanBatch.first_id == first_id,
            PlanBatch.lease_owner == owner,
        )
        .values(lease_owner=None, lease_until=None)
    )


def held_elsewhere(session: Session, edition_id: int, *, since: datetime, owner: str) -> int:
    """How many of the edition's ranges are not done since ``since`` and leased to
    another planner: one at work elsewhere, or one that died (taken over once its
    lease is out)."""
    query = select(func.count()).where(
        PlanBatch.edition_id == edition_id,
        PlanBatch.done_at.is_(None) | (PlanBatch.done_at < since),
        PlanBatch.lease_owner.is_not(None),
        PlanBatch.lease_owner != owner,
    )
    return session.scalar(query) or 0
