"""The outbox: which deliveries may be claimed now, and the leases.

The queue rules live here, so the workers, the scheduler and the status figures cannot
drift apart: the claimable-now condition (due waiting deliveries, and claimed ones
whose lease ran out), claiming a batch under a lease, the heartbeat that renews it and
giving claimed deliveries back. The open and waiting states themselves sit beside
``DeliveryStatus`` in ``newsletter.models`` (every layer uses them), and cancelling a
subscriber's open deliveries in ``newsletter.subscribers.accounts``. Functions take a
session; the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.orm import Session

from newsletter.db import among
from newsletter.models import WAITING, Delivery, DeliveryStatus


def due_now_condition(now: datetime) -> ColumnElement[bool]:
    """Waiting deliveries whose time has come (or was never set).

    ``next_attempt_at`` on a pending delivery is "not before" (its subscriber's send
    hour, set by the scheduler); on a retry, when the backoff ends.
    """
    return Delivery.status.in_(WAITING) & or_(
        Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now
    )


def lease_expired_condition(now: datetime) -> ColumnElement[bool]:
    """Claimed deliveries whose worker stopped renewing the lease (it died)."""
    return (Delivery.status == DeliveryStatus.CLAIMED) & (Delivery.lease_until < now)


def claimable_now(now: datetime, edition_id: int | None = None) -> ColumnElement[bool]:
    """Deliveries a worker may claim now (of one edition, when given): due waiting
    ones and claimed ones whose lease ran out."""
    due = or_(due_now_condition(now), lease_expired_condition(now))
    return due if edition_id is None else (Delivery.edition_id == edition_id) & due


def claim_batch(
    session: Session,
    *,
    edition_id: int | None,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
) -> list[int]:
    """Claim up to ``limit`` due deliveries (pending, retry that is due, or claimed with
    an expired lease), oldest first.

    PostgreSQL locks the rows it picks and skips rows other workers hold (``FOR UPDATE
    SKIP LOCKED``), then marks them. SQLite has one writer: a single ``UPDATE ... WHERE
    id IN (due rows) AND still due RETURNING id`` runs whole under its write lock (a
    separate SELECT would let two workers read the same rows before either writes).
    """
    # Never this worker's own claims, even with their lease run out: those are in its
    # queue or on the wire (its heartbeat was late), and claiming them again sent them
    # twice. Another worker may take them over; this one gives them back unsent.
    is_due = claimable_now(now, edition_id) & Delivery.lease_owner.is_distinct_from(owner)
    candidates = select(Delivery.id).where(is_due).order_by(Delivery.id).limit(limit)
    claim = update(Delivery).values(
        status=DeliveryStatus.CLAIMED, lease_owner=owner, lease_until=now + lease
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two statements on purpose: PostgreSQL may re-run a LIMIT ... FOR UPDATE
        # subquery inside an UPDATE and so claim more rows than asked for.
        ids = list(session.scalars(candidates.with_for_update(skip_locked=True)))
        if ids:
            session.execute(claim.where(among(Delivery.id, ids, "postgresql")))
        return ids
    claimed = session.scalars(
        claim.where(Delivery.id.in_(candidates.scalar_subquery()), is_due).returning(Delivery.id)
    )
    return sorted(claimed)


def renew_leases(session: Session, *, owner: str, now: datetime, lease: timedelta) -> set[int]:
    """Extend every lease ``owner`` still holds (the worker's heartbeat); the ids renewed.
    A delivery another worker took over once its lease ran out is not among them, nor
    one whose lease already reaches further (claimed after the renewal began: the
    worker keeps the time of its claim for it)."""
    return set(
        session.scalars(
            update(Delivery)
            .where(
                Delivery.lease_owner == owner,
                Delivery.status == DeliveryStatus.CLAIMED,
                # Never shortened: a claim made after this renewal began holds longer.
                Delivery.lease_until < now + lease,
            )
            .values(lease_until=now + lease)
            .returning(Delivery.id)
        )
    )


def _give_back(session: Session, *conditions: ColumnElement[bool]) -> int:
    """Return claimed deliveries to the queue, nothing having been sent for them: one
    tried before goes back to ``retry`` (due now), one never tried to ``pending``; the
    attempt is not counted."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.CLAIMED, *conditions)
        .values(
            status=case(
                (Delivery.attempts > 0, DeliveryStatus.RETRY), else_=DeliveryStatus.PENDING
            ),
            lease_owner=None,
            lease_until=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release_owned(session: Session, owner: str) -> int:
    """Give back everything ``owner`` still holds."""
    return _give_back(session, Delivery.lease_owner == owner)


def release(session: Session, ids: Sequence[int], owner: str | None = None) -> int:
    """Give back some claimed deliveries (of ``owner``, when given)."""
    if not ids:
        return 0
    if owner is None:
        return _give_back(session, Delivery.id.in_(ids))
    return _give_back(session, Delivery.id.in_(ids), Delivery.lease_owner == owner)
