"""The subscribers an edition is planned for, as plain rows read in batches.

Planning a million subscribers must not hold a million ORM objects: each batch is
read with two Core selects (the subscribers, then their interests) into small frozen
rows. The planner's code takes anything shaped like them (``Reader``), so a stored
``Subscriber`` (a test send, a preview) goes through the same ranking.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from newsletter.models import (
    Delivery,
    Frequency,
    Interest,
    Subscriber,
    SubscriberStatus,
    Suppression,
)


class InterestLike(Protocol):
    """One interest: a catalogue topic or free keywords, weighted."""

    @property
    def topic_id(self) -> str | None: ...
    @property
    def keywords(self) -> str | None: ...
    @property
    def weight(self) -> float: ...


class Reader(Protocol):
    """What planning reads of a subscriber."""

    @property
    def id(self) -> int: ...
    @property
    def email(self) -> str: ...
    @property
    def frequency(self) -> Frequency: ...
    @property
    def max_papers(self) -> int | None: ...
    @property
    def always_send(self) -> bool: ...
    @property
    def confirmed_at(self) -> datetime | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def interests(self) -> Sequence[InterestLike]: ...


@dataclass(frozen=True, slots=True)
class InterestRow:
    topic_id: str | None
    keywords: str | None
    weight: float


@dataclass(frozen=True, slots=True)
class ReaderRow:
    id: int
    email: str
    frequency: Frequency
    max_papers: int | None
    always_send: bool
    confirmed_at: datetime | None
    created_at: datetime | None
    interests: tuple[InterestRow, ...]


def plannable(edition_id: int) -> ColumnElement[bool]:
    """Subscribers an edition is planned for and who have no delivery in it yet:
    active, not paused (from the preferences page), not suppressed."""
    return (
        (Subscriber.status == SubscriberStatus.ACTIVE)
        & Subscriber.paused_at.is_(None)
        & Subscriber.email.not_in(select(Suppression.email))
        & ~exists().where(
            Delivery.edition_id == edition_id, Delivery.subscriber_id == Subscriber.id
        )
    )


def count_plannable(
    session: Session, edition_id: int, *, only: Collection[int] | None = None
) -> int:
    """How many subscribers are still to plan (for the progress bar)."""
    if only is None:
        return session.scalar(select(func.count(Subscriber.id)).where(plannable(edition_id))) or 0
    ids = sorted(set(only))
    total = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        query = select(func.count(Subscriber.id)).where(
            plannable(edition_id), Subscriber.id.in_(chunk)
        )
        total += session.scalar(query) or 0
    return total


# Ids per IN list (well below every driver's parameter limit).
CHUNK = 5_000
# Ids per IN list when a batch's related rows are read (ratings, follows).
RELATED_CHUNK = 500


def id_conditions(column: Any, ids: Sequence[int]) -> list[ColumnElement[bool]]:
    """Conditions on ``column`` that together select the rows of ``ids`` (and maybe of
    other ids, which callers drop): one id range when the ids are nearly contiguous (a
    planner's batch: one query instead of one per 500 ids, each with 500 parameters to
    convert), else IN lists of ``RELATED_CHUNK``."""
    if not ids:
        return []
    low, high = min(ids), max(ids)
    if high - low < 2 * len(ids) + RELATED_CHUNK:
        return [column.between(low, high)]
    return [
        column.in_(list(ids[start : start + RELATED_CHUNK]))
        for start in range(0, len(ids), RELATED_CHUNK)
    ]


def load_readers(
    session: Session,
    edition_id: int,
    *,
    after: int = 0,
    through: int | None = None,
    only: Sequence[int] | None = None,
    limit: int,
) -> list[ReaderRow]:
    """The next at most ``limit`` subscribers to plan with ids above ``after`` (up to
    ``through``; among ``only``, sorted ids, at most ``CHUNK`` of them), in id order,
    with their interests: two queries."""
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.frequency,
        Subscriber.max_papers,
        Subscriber.always_send,
        Subscriber.confirmed_at,
        Subscriber.created_at,
    ).where(plannable(edition_id), Subscriber.id > after)
    if through is not None:
        query = query.where(Subscriber.id <= through)
    if only is not None:
        query = query.where(Subscriber.id.in_(only))
    rows = session.execute(query.order_by(Subscriber.id).limit(limit)).all()
    if not rows:
        return []
    interests: dict[int, list[InterestRow]] = {row.id: [] for row in rows}
    for subscriber_id, topic_id, keywords, weight in session.execute(
        select(Interest.subscriber_id, Interest.topic_id, Interest.keywords, Interest.weight)
        .where(Interest.subscriber_id.between(rows[0].id, rows[-1].id))
        .order_by(Interest.subscriber_id, Interest.id)
    ):
        found = interests.get(subscriber_id)
        if found is not None:
            found.append(InterestRow(topic_id, keywords, weight))
    return [
        ReaderRow(
            id=row.id,
            email=row.email,
            frequency=row.frequency,
            max_papers=row.max_papers,
            always_send=row.always_send,
            confirmed_at=row.confirmed_at,
            created_at=row.created_at,
            interests=tuple(interests[row.id]),
        )
        for row in rows
    ]
