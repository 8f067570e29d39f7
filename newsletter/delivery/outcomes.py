"""Recording what the relay said: each message's outcome stored on its delivery.

Cut in two so the rules can be read (and tested) without a database: a pure
classification says what each outcome means (sent; retry after a backoff, or failed
when out of attempts; bounced; blocked deliveries suppressed), then one small writer
per kind of outcome stores it. ``record`` runs both and keeps the run's tally.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Connection,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    text,
    update,
)
from sqlalchemy.orm import Session

from newsletter.delivery.compose import Outgoing
from newsletter.delivery.relay_errors import note_outcomes
from newsletter.delivery.smtp import SendResult
from newsletter.delivery.suppression import apply_bounce
from newsletter.models import BounceKind, Delivery, DeliveryStatus
from newsletter.settings import Settings

_DELIVERIES = cast(Table, Delivery.__table__)
_REPLY_LIMIT = 2000  # characters of the relay's reply kept on the delivery


@dataclass
class DeliverySummary:
    """What one run did; summed over workers."""

    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    suppressed: int = 0
    released: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    edition: date | None = None

    @property
    def deferred(self) -> int:
        """Former name of ``retried``."""
        return self.retried

    def add(self, other: DeliverySummary) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.bounced += other.bounced
        self.failed += other.failed
        self.suppressed += other.suppressed
        self.released += other.released
        self.failures.extend(other.failures)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "bounced": self.bounced,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "released": self.released,
            "failures": list(self.failures),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliverySummary:
        """The summary ``as_dict`` made (a worker process reports it so)."""
        return cls(
            sent=data["sent"],
            retried=data["retried"],
            bounced=data["bounced"],
            failed=data["failed"],
            suppressed=data["suppressed"],
            released=data["released"],
            failures=[tuple(f) for f in data["failures"]],
        )

    def __str__(self) -> str:
        what = f"edition {self.edition}" if self.edition else "deliveries"
        return (
            f"{what}: {self.sent} sent, {self.retried} to retry, {self.bounced} bounced, "
            f"{self.failed} failed, {self.suppressed} suppressed"
            + (f", {self.released} given back" if self.released else "")
        )


def backoff(attempts: int, base: float = 300.0) -> timedelta:
    """Exponential backoff with jitter: base, 2×base, 4×base … (±20 %), capped at a day."""
    seconds = min(base * (2 ** max(attempts - 1, 0)), 86_400.0)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


# --- what each outcome means (no database) ---------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """One outcome as it is stored on its delivery: sent, to retry, or failed."""

    delivery_id: int
    status: DeliveryStatus
    attempts: int
    code: int | None
    reply: str
    message_id: str
    next_attempt_at: datetime | None = None


@dataclass
class Classified:
    """A batch of outcomes sorted by what is written for them."""

    sent: list[Settled] = field(default_factory=list)
    again: list[Settled] = field(default_factory=list)  # retry (with backoff) or failed
    bounced: list[tuple[Outgoing, SendResult]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # failed: recipient, why

    @property
    def retried(self) -> int:
        return sum(1 for s in self.again if s.status == DeliveryStatus.RETRY)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.again if s.status == DeliveryStatus.FAILED)


def classify(
    outcomes: Sequence[tuple[Outgoing, SendResult]],
    *,
    now: datetime,
    max_attempts: int,
    retry_base_seconds: float,
) -> Classified:
    """What each outcome means: accepted is sent; refused for good with an SMTP code
    is a bounce (the bounce rules apply); any other permanent failure (a message that
    could not be built), or a temporary one out of attempts, failed; a temporary
    failure (4xx, lost connection) is retried after a backoff."""
    classified = Classified()
    for outgoing, result in outcomes:
        attempts = outgoing.attempts + 1
        if result.status == "permanent" and result.code is not None:
            classified.bounced.append((outgoing, result))
            continue
        if result.status == "sent":
            status, next_at = DeliveryStatus.SENT, None
        elif result.status == "permanent" or attempts >= max_attempts:
            status, next_at = DeliveryStatus.FAILED, None
            classified.failures.append(
                (outgoing.recipient, f"{result.code or ''} {result.reply}".strip())
            )
        else:
            status = DeliveryStatus.RETRY
            next_at = now + backoff(attempts, retry_base_seconds)
        settled = Settled(
            delivery_id=outgoing.delivery_id,
            status=status,
            attempts=attempts,
            code=result.code,
            reply=result.reply[:_REPLY_LIMIT],
            message_id=outgoing.message_id,
            next_attempt_at=next_at,
        )
        (classified.sent if status == DeliveryStatus.SENT else classified.again).append(settled)
    return classified


# --- one writer per kind of outcome ---------------------------------------------------------


# Built once: constructing the statement (and its cache key) cost more than running it
# when a worker commits a few outcomes at a time.
_MARK_SENT = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("b_id"),
        _DELIVERIES.c.status != DeliveryStatus.SENT,
    )
    .values(
        status=DeliveryStatus.SENT,
        sent_at=bindparam("b_now"),
        attempts=bindparam("b_attempts"),
        last_smtp_code=bindparam("b_code"),
        last_smtp_reply=bindparam("b_reply"),
        message_id=bindparam("b_mid"),
        lease_owner=None,
        lease_until=None,
        next_attempt_at=None,
    )
)


# PostgreSQL: the same in one statement over arrays (one round trip, one plan, and
# atomic by itself, so it may run outside a transaction: ``record_sent``).
_MARK_SENT_ARRAYS = text(
    "UPDATE deliveries AS d SET status = :sent, sent_at = :now,"
    " attempts = u.attempts, last_smtp_code = u.code, last_smtp_reply = u.reply,"
    " message_id = u.mid, lease_owner = NULL, lease_until = NULL, next_attempt_at = NULL"
    " FROM unnest(:ids, :attempts, :codes, :replies, :mids)"
    " AS u(id, attempts, code, reply, mid)"
    " WHERE d.id = u.id AND d.status <> :sent"
).bindparams(
    bindparam("now", type_=_DELIVERIES.c.sent_at.type),  # aware datetimes only, as the ORM
    bindparam("ids", type_=ARRAY(Integer)),
    bindparam("attempts", type_=ARRAY(Integer)),
    bindparam("codes", type_=ARRAY(SmallInteger)),
    bindparam("replies", type_=ARRAY(Text)),
    bindparam("mids", type_=ARRAY(String)),
)


def store_sent(session: Session | Connection, sent: Sequence[Settled], *, now: datetime) -> None:
    """Mark deliveries sent, whoever holds the lease now (the relay accepted them: that
    is the truth); one statement (over arrays on PostgreSQL, else executemany)."""
    if not sent:
        return
    dialect = session.dialect if isinstance(session, Connection) else session.get_bind().dialect
    if dialect.name == "postgresql":
        session.execute(
            _MARK_SENT_ARRAYS,
            {
                "sent": DeliveryStatus.SENT.value,
                "now": now,
                "ids": [s.delivery_id for s in sent],
                "attempts": [s.attempts for s in sent],
                "codes": [s.code for s in sent],
                "replies": [s.reply for s in sent],
                "mids": [s.message_id for s in sent],
            },
        )
        return
    session.execute(
        _MARK_SENT,
        [
            {
                "b_id": s.delivery_id,
                "b_now": now,
                "b_attempts": s.attempts,
                "b_code": s.code,
                "b_reply": s.reply,
                "b_mid": s.message_id,
            }
            for s in sent
        ],
    )


def store_again(session: Session, again: Sequence[Settled], *, owner: str | None) -> int:
    """Mark deliveries to retry or failed; only rows still claimed (by ``owner``, when
    given), so a worker whose lease was taken over cannot undo the new holder's work.
    How many rows it changed (none when they were all stored before)."""
    if not again:
        return 0
    statement = update(_DELIVERIES).where(
        _DELIVERIES.c.id == bindparam("b_id"),
        _DELIVERIES.c.status == DeliveryStatus.CLAIMED,
    )
    if owner is not None:
        statement = statement.where(_DELIVERIES.c.lease_owner == owner)
    result = session.execute(
        statement.values(
            status=bindparam("b_status"),
            attempts=bindparam("b_attempts"),
            last_smtp_code=bindparam("b_code"),
            last_smtp_reply=bindparam("b_reply"),
            message_id=bindparam("b_mid"),
            next_attempt_at=bindparam("b_next"),
            lease_owner=None,
            lease_until=None,
        ),
        [
            {
                "b_id": s.delivery_id,
                "b_status": s.status,
                "b_attempts": s.attempts,
                "b_code": s.code,
                "b_reply": s.reply,
                "b_mid": s.message_id,
                "b_next": s.next_attempt_at,
            }
            for s in again
        ],
    )
    # A driver that cannot count (-1) is taken at its word that something was stored:
    # noting the relay's word twice beats dropping it.
    count = result.rowcount  # type: ignore[attr-defined]
    return len(again) if count < 0 else int(count)


def store_bounce(
    session: Session, outgoing: Outgoing, result: SendResult, *, bounce_limit: int
) -> bool:
    """Record one refusal (rare: one at a time) and apply the bounce rules to it;
    whether it was new (a delivery's bounce is recorded once)."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == outgoing.delivery_id)
        .values(
            attempts=outgoing.attempts + 1,
            message_id=outgoing.message_id,
            lease_owner=None,
            lease_until=None,
        )
    )
    return apply_bounce(
        session,
        email=outgoing.recipient,
        delivery_id=outgoing.delivery_id,
        kind=BounceKind.HARD,
        source="smtp",
        code=result.code,
        reply=result.reply,
        bounce_limit=bounce_limit,
    ).recorded


def store_suppressed(session: Session, blocked: Sequence[int], *, owner: str | None) -> None:
    """Suppress claimed deliveries that must not be sent (their subscriber left, paused
    or is suppressed), only while still claimed (by ``owner``, when given)."""
    statement = update(Delivery).where(
        Delivery.id.in_(blocked), Delivery.status == DeliveryStatus.CLAIMED
    )
    if owner is not None:
        statement = statement.where(Delivery.lease_owner == owner)
    session.execute(
        statement.values(status=DeliveryStatus.SUPPRESSED, lease_owner=None, lease_until=None)
    )


def all_sent(outcomes: Sequence[tuple[Outgoing, SendResult]]) -> bool:
    """Whether every outcome is a message the relay accepted (most batches)."""
    return all(result.status == "sent" for _, result in outcomes)


def record_sent(
    connection: Connection,
    outcomes: Sequence[tuple[Outgoing, SendResult]],
    *,
    now: datetime,
    settings: Settings,
    summary: DeliverySummary,
) -> None:
    """``record`` for outcomes that are all "sent" (``all_sent``), on PostgreSQL, as one
    statement that needs no transaction around it: a delivery worker stores most of
    its outcomes this way, in one round trip instead of three (BEGIN, UPDATE, COMMIT)."""
    if not all_sent(outcomes) or connection.dialect.name != "postgresql":
        raise ValueError("record_sent takes only accepted messages, on PostgreSQL")
    classified = classify(
        outcomes,
        now=now,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
    )
    store_sent(connection, classified.sent, now=now)
    summary.sent += len(classified.sent)


def record(
    session: Session,
    outcomes: Sequence[tuple[Outgoing, SendResult]],
    *,
    owner: str | None,
    now: datetime,
    settings: Settings,
    summary: DeliverySummary,
    blocked: Sequence[int] = (),
) -> None:
    """Store each outcome: sent; retry with backoff (4xx, lost connection) or failed
    when out of attempts; bounced (5xx, with the bounce rules); suppressed (blocked).

    One statement per kind of outcome (executemany; "sent" over arrays on PostgreSQL,
    which ``record_sent`` runs alone for a batch of sent messages). "Sent" is stored
    whoever holds the lease now (it is the truth); the other outcomes only touch rows
    this worker still holds, so a worker whose lease was taken over cannot undo the
    new holder's work.

    Safe to run again after a COMMIT whose connection died (``retry_stale``): every
    write is guarded by the state it leaves, and the relay's bad news is noted only
    when this run stored some of it, so a batch run twice adds one ``relay_errors``
    row, not two. (A batch none of whose deferrals or refusals could be stored, every
    lease taken over, is not noted either: whoever holds them meets the relay next.)
    """
    classified = classify(
        outcomes,
        now=now,
        max_attempts=settings.max_attempts,
        retry_base_seconds=settings.retry_base_seconds,
    )
    summary.sent += len(classified.sent)
    summary.failed += classified.failed
    summary.retried += classified.retried
    summary.failures.extend(classified.failures)
    store_sent(session, classified.sent, now=now)
    stored = store_again(session, classified.again, owner=owner)
    for outgoing, result in classified.bounced:
        stored += store_bounce(session, outgoing, result, bounce_limit=settings.bounce_limit)
        summary.bounced += 1
        summary.failures.append((outgoing.recipient, f"{result.code} {result.reply}".strip()))
    if blocked:
        store_suppressed(session, blocked, owner=owner)
        summary.suppressed += len(blocked)
    if stored:
        note_outcomes(
            session,
            [result for _, result in outcomes],
            recipients=[outgoing.recipient for outgoing, _ in outcomes],
            now=now,
        )
