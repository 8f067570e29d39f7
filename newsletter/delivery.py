"""Send an edition's pending deliveries over a pool of reused SMTP connections.

Each batch is claimed (status ``claimed`` with a lease) in one transaction, sent,
and its outcomes recorded in another. A delivery marked ``sent`` is never picked
again, so rerunning ``send`` never sends an issue twice; a claim whose sender died
is reclaimed once its lease has expired. The Message-ID is derived from the
delivery, so the rare resend after a crash between SMTP and the commit is
recognisable. (The delivery-engine issue deepens this: rate limits, workers,
bounces.)
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session, selectinload

from newsletter.db import SessionFactory
from newsletter.errors import EditionError, SmtpUnavailable
from newsletter.issue import issue_view
from newsletter.message import MessageHeaders, build_message, message_id_for
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Interest,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.render import Renderer
from newsletter.settings import Settings
from newsletter.smtp import SendResult, SmtpConfig, SmtpPool
from newsletter.tokens import Tokens

MAX_ATTEMPTS = 8
_BACKOFF_BASE = timedelta(minutes=5)


@dataclass
class SendSummary:
    edition: date
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    suppressed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"edition {self.edition}: {self.sent} sent, {self.failed} failed, "
            f"{self.deferred} deferred for retry, {self.suppressed} suppressed"
        )


@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    recipient: str
    message_id: str
    message: bytes


def smtp_config(settings: Settings) -> SmtpConfig:
    """The SMTP pool's configuration from the service settings."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password,
        timeout=settings.smtp_timeout,
        connections=settings.smtp_connections,
    )


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: about 5, 10, 20 ... minutes, capped at a day."""
    base: timedelta = min(_BACKOFF_BASE * (2 ** max(attempts - 1, 0)), timedelta(days=1))
    jitter = random.uniform(0.8, 1.2)
    return base * jitter


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def find_edition(session: Session, day: date) -> Edition:
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        raise EditionError(
            f"edition {day} has not been planned; run: newsletter plan --edition {day}"
        )
    return edition


def claim_batch(
    session: Session, *, edition_id: int, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[int]:
    """Claim up to ``limit`` due deliveries (pending, or claimed with an expired lease).

    PostgreSQL locks the rows it picks and skips rows other workers hold (``FOR UPDATE
    SKIP LOCKED``), then marks them. SQLite has one writer: a single ``UPDATE ... WHERE
    id IN (due rows) AND still due RETURNING id`` runs whole under its write lock (a
    separate SELECT would let two workers read the same rows before either writes).
    """
    is_due = (Delivery.edition_id == edition_id) & or_(
        (Delivery.status == DeliveryStatus.PENDING)
        & or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        (Delivery.status == DeliveryStatus.CLAIMED) & (Delivery.lease_until < now),
    )
    candidates = select(Delivery.id).where(is_due).order_by(Delivery.id).limit(limit)
    claim = update(Delivery).values(
        status=DeliveryStatus.CLAIMED, lease_owner=owner, lease_until=now + lease
    )
    if session.get_bind().dialect.name == "postgresql":
        # Two statements on purpose: PostgreSQL may re-run a LIMIT ... FOR UPDATE
        # subquery inside an UPDATE and so claim more rows than asked for.
        ids = list(session.scalars(candidates.with_for_update(skip_locked=True)))
        if ids:
            session.execute(claim.where(Delivery.id.in_(ids)))
        return ids
    claimed = session.scalars(
        claim.where(Delivery.id.in_(candidates.scalar_subquery()), is_due).returning(Delivery.id)
    )
    return sorted(claimed)


def select_renderable() -> Select[Delivery]:
    """Deliveries with everything their issue shows loaded up front (no lazy loads)."""
    return select(Delivery).options(
        selectinload(Delivery.items).selectinload(DeliveryItem.paper),
        selectinload(Delivery.subscriber)
        .selectinload(Subscriber.interests)
        .selectinload(Interest.topic),
        selectinload(Delivery.edition),
    )


def prepare(
    session: Session, ids: Sequence[int], *, settings: Settings, renderer: Renderer, tokens: Tokens
) -> tuple[list[Outgoing], list[int]]:
    """Render and assemble the claimed deliveries; also return those that must not be sent."""
    deliveries = session.scalars(
        select_renderable().where(Delivery.id.in_(ids)).order_by(Delivery.id)
    ).all()
    emails = [d.subscriber.email for d in deliveries]
    suppressed = set(
        session.scalars(select(Suppression.email).where(Suppression.email.in_(emails)))
    )
    outgoing: list[Outgoing] = []
    blocked: list[int] = []
    now = utcnow()
    for delivery in deliveries:
        subscriber = delivery.subscriber
        if subscriber.status != SubscriberStatus.ACTIVE or subscriber.email in suppressed:
            blocked.append(delivery.id)
            continue
        view = issue_view(delivery, settings=settings, tokens=tokens)
        rendered = renderer.render_issue(view)
        message_id = message_id_for(
            delivery_id=delivery.id,
            edition=delivery.edition.date,
            sender_address=settings.sender_address,
        )
        headers = MessageHeaders(
            sender=settings.sender,
            to_address=subscriber.email,
            to_name=subscriber.name,
            message_id=message_id,
            list_id=settings.effective_list_id,
            list_name=view.list_name,
            unsubscribe_url=view.unsubscribe_url,
            date=now,
        )
        outgoing.append(
            Outgoing(delivery.id, subscriber.email, message_id, build_message(rendered, headers))
        )
    return outgoing, blocked


def record(
    session: Session,
    outcomes: Sequence[tuple[Outgoing, SendResult]],
    *,
    blocked: Sequence[int],
    now: datetime,
    summary: SendSummary,
) -> None:
    """Store each outcome: sent, failed (5xx), or pending again with a backoff (4xx, lost link)."""
    # One query for the batch, not one per message.
    ids = [outgoing.delivery_id for outgoing, _ in outcomes]
    rows = {d.id: d for d in session.scalars(select(Delivery).where(Delivery.id.in_(ids)))}
    for outgoing, result in outcomes:
        delivery = rows[outgoing.delivery_id]
        delivery.attempts += 1
        delivery.last_smtp_code = result.code
        delivery.last_smtp_reply = result.reply[:2000]
        delivery.lease_owner = None
        delivery.lease_until = None
        delivery.message_id = outgoing.message_id
        if result.status == "sent":
            delivery.status = DeliveryStatus.SENT
            delivery.sent_at = now
            summary.sent += 1
        elif result.status == "permanent" or delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = DeliveryStatus.FAILED
            summary.failed += 1
            summary.failures.append(
                (outgoing.recipient, f"{result.code or ''} {result.reply}".strip())
            )
        else:
            delivery.status = DeliveryStatus.PENDING
            delivery.next_attempt_at = now + backoff(delivery.attempts)
            summary.deferred += 1
    if blocked:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(blocked))
            .values(status=DeliveryStatus.SUPPRESSED, lease_owner=None, lease_until=None)
        )
        summary.suppressed += len(blocked)


def release(session: Session, ids: Sequence[int]) -> None:
    """Give claimed deliveries back (nothing was sent for them)."""
    if ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.CLAIMED)
            .values(status=DeliveryStatus.PENDING, lease_owner=None, lease_until=None)
        )


async def _send_batch(
    pool: SmtpPool, sender: str, batch: Sequence[Outgoing]
) -> tuple[list[tuple[Outgoing, SendResult]], BaseException | None]:
    """Send a batch; return the outcomes that are known, and the error that stopped the rest.

    The error is raised only after the known outcomes are recorded: a message the
    server accepted must be marked sent even if its neighbour hit a bug.
    """

    async def one(outgoing: Outgoing) -> SendResult:
        return await pool.send(
            sender=sender, recipients=[outgoing.recipient], message=outgoing.message
        )

    results = await asyncio.gather(*(one(o) for o in batch), return_exceptions=True)
    done: list[tuple[Outgoing, SendResult]] = []
    error: BaseException | None = None
    for outgoing, result in zip(batch, results, strict=True):
        if isinstance(result, SendResult):
            done.append((outgoing, result))
        elif error is None or isinstance(error, SmtpUnavailable):
            error = result  # a bug outranks an outage: it must not be hidden
    return done, error


async def _run(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    edition_id: int,
    summary: SendSummary,
    renderer: Renderer,
    tokens: Tokens,
    clock: Callable[[], datetime],
) -> None:
    owner = worker_name()
    lease = timedelta(seconds=settings.lease_seconds)
    async with SmtpPool(smtp_config(settings)) as pool:
        while True:
            with session_factory.begin() as session:
                ids = claim_batch(
                    session,
                    edition_id=edition_id,
                    owner=owner,
                    now=clock(),
                    lease=lease,
                    limit=settings.send_batch_size,
                )
            if not ids:
                return
            try:
                with session_factory() as session:
                    outgoing, blocked = prepare(
                        session, ids, settings=settings, renderer=renderer, tokens=tokens
                    )
            except BaseException:
                with session_factory.begin() as session:
                    release(session, ids)
                raise
            done, error = await _send_batch(pool, settings.sender_address, outgoing)
            with session_factory.begin() as session:
                record(session, done, blocked=blocked, now=clock(), summary=summary)
                # Whatever was neither sent nor refused goes back to the queue untouched.
                release(session, ids)
            if error is not None:
                raise error


def send_edition(
    session_factory: SessionFactory,
    day: date,
    *,
    settings: Settings,
    renderer: Renderer | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> SendSummary:
    """Send every due delivery of an edition; ``SmtpUnavailable`` if the relay is unreachable."""
    renderer = renderer or Renderer()
    renderer.check()  # a broken template fails here, before anything is claimed
    tokens = Tokens(settings.secret_key.get_secret_value())
    with session_factory.begin() as session:
        edition = find_edition(session, day)
        edition.status = EditionStatus.SENDING
        edition_id = edition.id
    summary = SendSummary(edition=day)
    asyncio.run(
        _run(
            session_factory,
            settings=settings,
            edition_id=edition_id,
            summary=summary,
            renderer=renderer,
            tokens=tokens,
            clock=clock,
        )
    )
    with session_factory.begin() as session:
        open_count = session.scalar(
            select(Delivery.id)
            .where(
                Delivery.edition_id == edition_id,
                Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)),
            )
            .limit(1)
        )
        if open_count is None:
            session.get_one(Edition, edition_id).status = EditionStatus.SENT
    return summary
