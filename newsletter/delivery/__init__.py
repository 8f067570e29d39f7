"""The delivery engine: an outbox of deliveries worked through by SMTP workers.

State machine of a delivery (``DeliveryStatus``)::

    pending ──claim──► claimed ──250──► sent
    retry ───(due)──►     │  ├──4xx, lost connection──► retry (backoff) … failed after max_attempts
                          │  ├──5xx──► bounced (+ the bounce rules of delivery.suppression)
                          │  └──suppressed address, or subscriber gone──► suppressed
                          └──lease expired (worker died)──► claimable again

A worker claims due deliveries in batches with a lease (PostgreSQL ``SELECT … FOR
UPDATE SKIP LOCKED``, so any number of workers on any number of machines share one
outbox; SQLite: one ``UPDATE … RETURNING`` under its single write lock), keeps the
leases of what it holds alive with a heartbeat, and gives back what it has not
sent when it stops. Inside a worker, one asyncio loop runs a producer (claim in a
thread, then render and assemble each message, yielding to the loop between
messages), C sender tasks that each keep one SMTP session of the pool busy, and a
recorder that commits outcomes as soon as the previous commit is done (group
commit: the window in which a message the relay accepted is not yet marked sent is
one commit long). A delivery marked sent is never claimed again; the Message-ID is
derived from the delivery, so the rare resend after a crash inside that window is
recognisable downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, case, func, or_, select, update
from sqlalchemy.orm import Session, selectinload

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.delivery.sendrate import RateLimiter
from newsletter.delivery.smtp import SendResult, SmtpConfig, SmtpPool
from newsletter.delivery.suppression import apply_bounce
from newsletter.errors import (
    ConfigError,
    EditionError,
    NewsletterError,
    SmtpUnavailable,
    TemplateError,
)
from newsletter.mail.addresses import smtp_address
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageHeaders, build_message, message_id_for, one_line
from newsletter.mail.render import IssueView, PaperView, RenderedIssue, Renderer
from newsletter.mail.verp import return_path_base, verp_address
from newsletter.mail.view import ItemView, build_issue_view, interests_text, paper_base
from newsletter.models import (
    BounceKind,
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
    utcnow,
)
from newsletter.progress import ProgressHook
from newsletter.settings import Settings
from newsletter.tokens import Tokens

log = logging.getLogger(__name__)

OPEN = (DeliveryStatus.PENDING, DeliveryStatus.RETRY, DeliveryStatus.CLAIMED)
# Replies that mean "you are sending too fast": the whole pool pauses, not one message.
SLOW_DOWN_CODES = frozenset({421, 451, 454})
_MAX_PAUSE = 60.0
_RECORD_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
BUG_PREFIX = "bug: "


class DeliveryError(NewsletterError):
    """A delivery worker failed for a reason other than the relay (a bug, a broken
    template): what it had sent is recorded, the rest is given back."""


_OWN_CLAIMS_RECHECK = 0.05
_DELIVERIES = cast(Table, Delivery.__table__)


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

    def __str__(self) -> str:
        what = f"edition {self.edition}" if self.edition else "deliveries"
        return (
            f"{what}: {self.sent} sent, {self.retried} to retry, {self.bounced} bounced, "
            f"{self.failed} failed, {self.suppressed} suppressed"
            + (f", {self.released} given back" if self.released else "")
        )


SendSummary = DeliverySummary  # the first version's name


@dataclass(frozen=True)
class Outgoing:
    """One assembled message on its way to the relay."""

    delivery_id: int
    recipient: str
    message_id: str
    message: bytes
    attempts: int = 0
    envelope_from: str = ""


def smtp_config(settings: Settings, connections: int | None = None) -> SmtpConfig:
    """The SMTP pool's configuration from the service settings."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        tls=settings.smtp_tls,
        username=settings.smtp_username,
        password=password,
        timeout=settings.smtp_timeout,
        connections=connections or settings.smtp_connections,
        message_timeout=settings.smtp_message_timeout,
    )


def backoff(attempts: int, base: float = 300.0) -> timedelta:
    """Exponential backoff with jitter: base, 2×base, 4×base … (±20 %), capped at a day."""
    seconds = min(base * (2 ** max(attempts - 1, 0)), 86_400.0)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def worker_name() -> str:
    """Unique per worker process, also across machines and reused pids."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def find_edition(session: Session, day: date) -> Edition:
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        raise EditionError(
            f"edition {day} has not been planned; run: newsletter plan --edition {day}"
        )
    return edition


# --- the outbox: claim, heartbeat, record, release ---------------------------------------


def _due(now: datetime, edition_id: int | None) -> Any:
    # next_attempt_at on a pending delivery is "not before" (its subscriber's send hour,
    # set by the scheduler); on a retry, when the backoff ends.
    due = or_(
        Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.RETRY))
        & or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now),
        (Delivery.status == DeliveryStatus.CLAIMED) & (Delivery.lease_until < now),
    )
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
    is_due = _due(now, edition_id)
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


def renew_leases(session: Session, *, owner: str, now: datetime, lease: timedelta) -> int:
    """Extend every lease ``owner`` holds (the worker's heartbeat)."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.lease_owner == owner, Delivery.status == DeliveryStatus.CLAIMED)
        .values(lease_until=now + lease)
    )
    return int(getattr(result, "rowcount", 0) or 0)


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

    Updates are executemany statements, one per kind of outcome. "Sent" is stored
    whoever holds the lease now (it is the truth); the other outcomes only touch rows
    this worker still holds, so a worker whose lease was taken over cannot undo the
    new holder's work.
    """
    sent: list[dict[str, Any]] = []
    again: list[dict[str, Any]] = []
    bounced: list[tuple[Outgoing, SendResult]] = []
    for outgoing, result in outcomes:
        reply = result.reply[:2000]
        attempts = outgoing.attempts + 1
        if result.status == "sent":
            sent.append(
                {
                    "b_id": outgoing.delivery_id,
                    "b_attempts": attempts,
                    "b_code": result.code,
                    "b_reply": reply,
                    "b_mid": outgoing.message_id,
                }
            )
            summary.sent += 1
            continue
        if result.status == "permanent" and result.code is not None:
            bounced.append((outgoing, result))
            continue
        final = result.status == "permanent" or attempts >= settings.max_attempts
        if final:
            summary.failed += 1
            summary.failures.append(
                (outgoing.recipient, f"{result.code or ''} {result.reply}".strip())
            )
        else:
            summary.retried += 1
        again.append(
            {
                "b_id": outgoing.delivery_id,
                "b_status": DeliveryStatus.FAILED if final else DeliveryStatus.RETRY,
                "b_attempts": attempts,
                "b_code": result.code,
                "b_reply": reply,
                "b_mid": outgoing.message_id,
                "b_next": None if final else now + backoff(attempts, settings.retry_base_seconds),
            }
        )
    if sent:
        session.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.id == bindparam("b_id"),
                _DELIVERIES.c.status != DeliveryStatus.SENT,
            )
            .values(
                status=DeliveryStatus.SENT,
                sent_at=now,
                attempts=bindparam("b_attempts"),
                last_smtp_code=bindparam("b_code"),
                last_smtp_reply=bindparam("b_reply"),
                message_id=bindparam("b_mid"),
                lease_owner=None,
                lease_until=None,
                next_attempt_at=None,
            ),
            sent,
        )
    if again:
        statement = update(_DELIVERIES).where(
            _DELIVERIES.c.id == bindparam("b_id"),
            _DELIVERIES.c.status == DeliveryStatus.CLAIMED,
        )
        if owner is not None:
            statement = statement.where(_DELIVERIES.c.lease_owner == owner)
        session.execute(
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
            again,
        )
    for outgoing, result in bounced:  # rare: one at a time, with the bounce rules
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
        apply_bounce(
            session,
            email=outgoing.recipient,
            delivery_id=outgoing.delivery_id,
            kind=BounceKind.HARD,
            source="smtp",
            code=result.code,
            reply=result.reply,
            bounce_limit=settings.bounce_limit,
        )
        summary.bounced += 1
        summary.failures.append((outgoing.recipient, f"{result.code} {result.reply}".strip()))
    if blocked:
        statement = update(Delivery).where(
            Delivery.id.in_(blocked), Delivery.status == DeliveryStatus.CLAIMED
        )
        if owner is not None:
            statement = statement.where(Delivery.lease_owner == owner)
        session.execute(
            statement.values(status=DeliveryStatus.SUPPRESSED, lease_owner=None, lease_until=None)
        )
        summary.suppressed += len(blocked)


# --- loading and composing ----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A claimed delivery with everything its issue shows, as plain data."""

    delivery_id: int
    attempts: int
    subscriber_id: int
    token_version: int
    email: str
    name: str
    edition: date
    interests: str
    items: tuple[ItemView, ...]
    locale: str = "en"


class Composer:
    """Loads claimed deliveries and turns them into messages (one per worker).

    Paper cards are built once per paper and kept (an edition's few hundred papers
    recur in thousands of issues); everything else is per delivery.
    """

    def __init__(self, settings: Settings, renderer: Renderer, tokens: Tokens) -> None:
        self.settings = settings
        self.renderer = renderer
        self.tokens = tokens
        self._papers: dict[int, PaperView] = {}
        self._editions: dict[int, date] = {}
        self._signer = DkimSigner.from_settings(settings)
        # Derived from the settings once, not per message (parsing the sender costs).
        self._sender_address = settings.sender_address
        self._list_id = settings.effective_list_id
        self._return_path = return_path_base(settings)
        self._secret = settings.secret_key.get_secret_value()

    def load(self, session: Session, ids: Sequence[int]) -> tuple[list[Job], list[int]]:
        """The jobs of claimed ``ids``, and the ids that must not be sent."""
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.attempts,
                Delivery.edition_id,
                Subscriber.id,
                Subscriber.token_version,
                Subscriber.email,
                Subscriber.name,
                Subscriber.status,
                Subscriber.paused_at,
                Subscriber.locale,
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        emails = [r[5] for r in rows]
        suppressed = set(
            session.scalars(select(Suppression.email).where(Suppression.email.in_(emails)))
        )
        # Unsubscribed, bounced, paused or suppressed since the edition was planned.
        blocked = [
            r[0]
            for r in rows
            if r[7] != SubscriberStatus.ACTIVE or r[8] is not None or r[5] in suppressed
        ]
        live = [r for r in rows if r[0] not in set(blocked)]
        if not live:
            return [], blocked
        live_ids = [r[0] for r in live]
        items: dict[int, list[tuple[int, float, list[str], int]]] = {i: [] for i in live_ids}
        for delivery_id, rank, paper_id, score, terms in session.execute(
            select(
                DeliveryItem.delivery_id,
                DeliveryItem.rank,
                DeliveryItem.paper_id,
                DeliveryItem.score,
                DeliveryItem.terms,
            )
            .where(DeliveryItem.delivery_id.in_(live_ids))
            .order_by(DeliveryItem.delivery_id, DeliveryItem.rank)
        ):
            items[delivery_id].append((rank, score, terms, paper_id))
        self._load_papers(session, {p for entries in items.values() for *_, p in entries})
        self._load_editions(session, {r[2] for r in live})
        interests = self._interests(session, [r[3] for r in live])
        jobs = [
            Job(
                delivery_id=r[0],
                attempts=r[1],
                subscriber_id=r[3],
                token_version=r[4],
                email=r[5],
                name=r[6],
                edition=self._editions[r[2]],
                interests=interests.get(r[3], ""),
                locale=r[9],
                items=tuple(
                    ItemView(rank, score, terms, self._papers[paper_id])
                    for rank, score, terms, paper_id in items[r[0]]
                ),
            )
            for r in live
        ]
        return jobs, blocked

    def _load_papers(self, session: Session, wanted: set[int]) -> None:
        missing = wanted - self._papers.keys()
        if not missing:
            return
        if len(self._papers) > 50_000:
            self._papers.clear()  # a long-running worker must not grow without bound
        for pid, title, url, authors, categories, abstract in session.execute(
            select(
                Paper.id, Paper.title, Paper.url, Paper.authors, Paper.categories, Paper.abstract
            ).where(Paper.id.in_(missing))
        ):
            self._papers[pid] = paper_base(
                title=title, url=url, authors=authors, categories=categories, abstract=abstract
            )

    def _load_editions(self, session: Session, wanted: set[int]) -> None:
        missing = wanted - self._editions.keys()
        if missing:
            for edition_id, day in session.execute(
                select(Edition.id, Edition.date).where(Edition.id.in_(missing))
            ):
                self._editions[edition_id] = day

    def _interests(self, session: Session, subscriber_ids: list[int]) -> dict[int, str]:
        topics: dict[int, list[str]] = {}
        keywords: dict[int, list[str]] = {}
        for subscriber_id, topic_name, words in session.execute(
            select(Interest.subscriber_id, Topic.name, Interest.keywords)
            .outerjoin(Topic, Topic.id == Interest.topic_id)
            .where(Interest.subscriber_id.in_(subscriber_ids))
            .order_by(Interest.id)
        ):
            if topic_name is not None:
                topics.setdefault(subscriber_id, []).append(topic_name)
            if words:
                keywords.setdefault(subscriber_id, []).append(words)
        return {
            s: interests_text(topics.get(s, []), keywords.get(s, []))
            for s in topics.keys() | keywords.keys()
        }

    def compose(self, job: Job, *, now: datetime) -> Outgoing:
        """Render and assemble one message (templates, headers, DKIM, envelope)."""
        view, rendered = self.render(job)
        return self.assemble(job, view, rendered, now=now)

    def render(self, job: Job) -> tuple[IssueView, RenderedIssue]:
        """The issue's view and its subject, HTML and text."""
        view = build_issue_view(
            settings=self.settings,
            tokens=self.tokens,
            delivery_id=job.delivery_id,
            subscriber_id=job.subscriber_id,
            token_version=job.token_version,
            email=job.email,
            edition=job.edition,
            interests=job.interests,
            items=job.items,
            locale=job.locale,
        )
        return view, self.renderer.render_issue(view)

    def message_id(self, job: Job) -> str:
        return message_id_for(
            delivery_id=job.delivery_id, edition=job.edition, sender_address=self._sender_address
        )

    def unbuildable(self, job: Job, error: Exception) -> tuple[Outgoing, SendResult]:
        """The outcome of a delivery whose message cannot be built: failed, with why."""
        reason = one_line(f"message not built: {type(error).__name__}: {error}", limit=1000)
        outgoing = Outgoing(
            delivery_id=job.delivery_id,
            recipient=job.email,
            message_id=self.message_id(job),
            message=b"",
            attempts=job.attempts,
        )
        return outgoing, SendResult(status="permanent", code=None, reply=reason)

    def assemble(
        self, job: Job, view: IssueView, rendered: RenderedIssue, *, now: datetime
    ) -> Outgoing:
        """The message as bytes (headers, MIME, DKIM) and its envelope."""
        settings = self.settings
        recipient = smtp_address(job.email)  # an internationalised domain in ASCII
        message_id = self.message_id(job)
        mailto = None
        if settings.unsubscribe_mailto:
            token = view.unsubscribe_url.rsplit("/", 1)[1]
            mailto = f"mailto:{settings.unsubscribe_mailto}?subject=unsubscribe%20{token}"
        message = build_message(
            rendered,
            MessageHeaders(
                sender=settings.sender,
                to_address=recipient,
                to_name=job.name,
                message_id=message_id,
                list_id=self._list_id,
                list_name=view.list_name,
                unsubscribe_url=view.unsubscribe_url,
                unsubscribe_mailto=mailto,
                date=now,
            ),
        )
        if self._signer is not None:
            message = self._signer.sign(message)
        envelope_from = self._return_path
        if settings.verp:
            envelope_from = verp_address(
                job.delivery_id, return_path=self._return_path, secret=self._secret
            )
        return Outgoing(
            delivery_id=job.delivery_id,
            recipient=recipient,
            message_id=message_id,
            message=message,
            attempts=job.attempts,
            envelope_from=envelope_from,
        )


def select_renderable() -> Select[Delivery]:
    """Deliveries with everything their issue shows loaded up front (no lazy loads)."""
    return select(Delivery).options(
        selectinload(Delivery.items).selectinload(DeliveryItem.paper),
        selectinload(Delivery.subscriber)
        .selectinload(Subscriber.interests)
        .selectinload(Interest.topic),
        selectinload(Delivery.edition),
    )


# --- one worker: an asyncio pipeline --------------------------------------------------------


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
class _Options:
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
        options: _Options,
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
        self.stop = asyncio.Event()
        self._error: BaseException | None = None
        self._outcomes: list[tuple[Outgoing, SendResult]] = []
        self._waiters: list[asyncio.Future[bool]] = []
        self._released: list[int] = []
        self._have_outcomes = asyncio.Event()
        self._finished = False

    # The database work runs in threads so the loop keeps the SMTP sessions busy.
    def _claim(self) -> tuple[list[Job], list[int], list[int]]:
        with self.sessions.begin() as session:
            ids = claim_batch(
                session,
                edition_id=self.options.edition_id,
                owner=self.owner,
                now=self.clock(),
                lease=self.lease,
                limit=self._batch_size(),
            )
            if not ids:
                return [], [], []
            jobs, blocked = self.composer.load(session, ids)
            if blocked:
                record(
                    session,
                    [],
                    owner=self.owner,
                    now=self.clock(),
                    settings=self.settings,
                    summary=self.summary,
                    blocked=blocked,
                )
        if blocked and self.progress is not None:
            self.progress(len(blocked), None)
        return jobs, blocked, ids

    def _batch_size(self) -> int:
        size = self.settings.send_batch_size
        if self.settings.rate_per_second:
            # Never hold much more than a few seconds' worth under a rate limit.
            size = min(size, max(1, int(self.settings.rate_per_second * 5)))
        return size

    def _record(self, outcomes: list[tuple[Outgoing, SendResult]], released: list[int]) -> None:
        with self.sessions.begin() as session:
            record(
                session,
                outcomes,
                owner=self.owner,
                now=self.clock(),
                settings=self.settings,
                summary=self.summary,
            )
            self.summary.released += release(session, released, self.owner)
        if outcomes and self.progress is not None:
            self.progress(len(outcomes), None)

    def _next_due(self) -> float | None:
        """Seconds until something of this run may be claimed again; None if nothing is open.

        Waiting deliveries count from when they are due; another worker's claims from
        when their lease runs out; this worker's own claims (still in flight, and maybe
        back soon as a retry) are looked at again shortly.
        """
        scope: ColumnElement[bool] = Delivery.status.in_(OPEN)
        if self.options.edition_id is not None:
            scope = scope & (Delivery.edition_id == self.options.edition_id)
        waiting = Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.RETRY))
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
            # Whatever this worker still holds (claimed, never handed to a sender, or
            # cut short) goes back to the queue untouched.
            self.summary.released += await asyncio.to_thread(self._release_all)
        if self._error is not None:
            raise self._error
        return self.summary

    def _release_all(self) -> int:
        with self.sessions.begin() as session:
            return release_owned(session, self.owner)

    async def _producer(self, queue: asyncio.Queue[Outgoing | None]) -> None:
        while not self.stop.is_set():
            jobs, _, ids = await asyncio.to_thread(self._claim)
            if not ids:
                if not self.options.wait:
                    return
                wait = await asyncio.to_thread(self._next_due)
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
        self._released.extend(ids)
        self._have_outcomes.set()

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
                result = await pool.send(
                    sender=outgoing.envelope_from,
                    recipients=[outgoing.recipient],
                    message=outgoing.message,
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
                await asyncio.to_thread(self._record, outcomes, released)
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
                await asyncio.to_thread(self._renew)
            except Exception as exc:
                log.error("cannot renew delivery leases, stopping: %s", exc)
                self._fail(exc)
                return

    def _renew(self) -> None:
        with self.sessions.begin() as session:
            renew_leases(session, owner=self.owner, now=self.clock(), lease=self.lease)


# --- running workers ---------------------------------------------------------------------


def _install_stop_handlers(loop: asyncio.AbstractEventLoop, worker: Worker) -> list[signal.Signals]:
    """SIGTERM/SIGINT stop claiming; in-flight messages finish, the rest goes back."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, worker.stop.set)
            installed.append(sig)
    return installed


def _run_worker(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    options: _Options,
    renderer: Renderer,
    clock: Callable[[], datetime],
    progress: ProgressHook | None = None,
) -> DeliverySummary:
    async def main() -> DeliverySummary:
        worker = Worker(
            session_factory,
            settings=settings,
            options=options,
            renderer=renderer,
            clock=clock,
            progress=progress,
        )
        loop = asyncio.get_running_loop()
        installed = _install_stop_handlers(loop, worker)
        try:
            return await worker.run()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    return asyncio.run(main())


def _child_main(
    settings: Settings,
    options: _Options,
    results: multiprocessing.queues.Queue[dict[str, Any]],
) -> None:
    """Entry point of a worker process (spawned: nothing inherited but the arguments)."""
    engine = make_engine(settings.database_url)
    error = ""
    summary = DeliverySummary()
    try:
        summary = _run_worker(
            make_session_factory(engine),
            settings=settings,
            options=options,
            renderer=Renderer(settings.templates_dir),
            clock=utcnow,
        )
    except SmtpUnavailable as exc:
        error = str(exc)
    except Exception as exc:  # reported to the parent, which fails the run
        log.exception("delivery worker failed")
        error = f"{BUG_PREFIX}{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
        results.put({**summary.as_dict(), "error": error})


def deliver(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    edition: date | None = None,
    workers: int | None = None,
    concurrency: int | None = None,
    wait: bool = False,
    renderer: Renderer | None = None,
    clock: Callable[[], datetime] = utcnow,
    progress: ProgressHook | None = None,
) -> DeliverySummary:
    """Send every due delivery (of ``edition``, or of all editions).

    ``workers`` processes (PostgreSQL; SQLite runs one) with ``concurrency`` SMTP
    sessions each. ``wait``: stay until nothing is open, sleeping until retries are
    due. Raises ``SmtpUnavailable`` when the relay cannot be reached, after recording
    every known outcome and giving back the rest. ``progress`` is told the number
    due at the start, then each batch of outcomes (with several worker processes,
    each worker's total when it ends).
    """
    renderer = renderer or Renderer(settings.templates_dir)
    renderer.check()  # a broken template fails here, before anything is claimed
    workers = workers or settings.deliver_workers
    concurrency = concurrency or settings.smtp_connections
    if concurrency < 1 or workers < 1:
        raise ConfigError("workers and concurrency must be at least 1")
    dialect = session_factory.kw["bind"].dialect.name
    if dialect != "postgresql" and workers > 1:
        log.warning("SQLite has a single writer: running 1 delivery worker, not %d", workers)
        workers = 1
    edition_id = _start_edition(session_factory, edition)
    options = _Options(edition_id=edition_id, concurrency=concurrency, wait=wait, workers=workers)
    summary = DeliverySummary(edition=edition)
    if progress is not None:
        with session_factory() as session:
            due = select(func.count()).select_from(Delivery).where(_due(clock(), edition_id))
            progress(0, session.scalar(due) or 0)
    if workers == 1:
        try:
            summary.add(
                _run_worker(
                    session_factory,
                    settings=settings,
                    options=options,
                    renderer=renderer,
                    clock=clock,
                    progress=progress,
                )
            )
        finally:
            _finish_editions(session_factory, edition_id)
        return summary
    errors = _run_processes(settings, options, workers, summary, progress)
    _finish_editions(session_factory, edition_id)
    bugs = [e for e in errors if e.startswith(BUG_PREFIX)]
    if bugs:
        raise DeliveryError(f"a delivery worker failed: {bugs[0].removeprefix(BUG_PREFIX)}")
    if errors:
        raise SmtpUnavailable(errors[0])
    return summary


def _run_processes(
    settings: Settings,
    options: _Options,
    workers: int,
    summary: DeliverySummary,
    progress: ProgressHook | None = None,
) -> list[str]:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    processes = [
        context.Process(target=_child_main, args=(settings, options, results), daemon=False)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, forward)
    errors: list[str] = []
    try:
        for _ in processes:
            while True:
                try:
                    result = results.get(timeout=0.5)
                    break
                except Exception:  # queue.Empty: check that someone is still alive
                    if not any(p.is_alive() for p in processes) and results.empty():
                        result = None
                        break
            if result is None:
                errors.append(f"{BUG_PREFIX}a delivery worker process died without a report")
                break
            done = _summary_from(result)
            summary.add(done)
            if progress is not None:
                settled = done.sent + done.retried + done.bounced + done.failed
                progress(settled + done.suppressed, None)
            if result["error"]:
                errors.append(str(result["error"]))
        for process in processes:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return errors


def _summary_from(data: dict[str, Any]) -> DeliverySummary:
    return DeliverySummary(
        sent=data["sent"],
        retried=data["retried"],
        bounced=data["bounced"],
        failed=data["failed"],
        suppressed=data["suppressed"],
        released=data["released"],
        failures=[tuple(f) for f in data["failures"]],
    )


def _start_edition(session_factory: SessionFactory, day: date | None) -> int | None:
    if day is None:
        with session_factory.begin() as session:
            session.execute(
                update(Edition)
                .where(
                    Edition.status == EditionStatus.PLANNED,
                    Edition.id.in_(select(Delivery.edition_id).where(Delivery.status.in_(OPEN))),
                )
                .values(status=EditionStatus.SENDING)
            )
        return None
    with session_factory.begin() as session:
        edition = find_edition(session, day)
        if edition.status == EditionStatus.PLANNED:
            edition.status = EditionStatus.SENDING
        return edition.id


def _finish_editions(session_factory: SessionFactory, edition_id: int | None) -> None:
    """An edition whose deliveries are all settled is sent."""
    with session_factory.begin() as session:
        open_editions = select(Delivery.edition_id).where(Delivery.status.in_(OPEN))
        statement = update(Edition).where(
            Edition.status.in_((EditionStatus.PLANNED, EditionStatus.SENDING)),
            Edition.id.not_in(open_editions),
        )
        if edition_id is not None:
            statement = statement.where(Edition.id == edition_id)
        else:
            statement = statement.where(Edition.status == EditionStatus.SENDING)
        session.execute(statement.values(status=EditionStatus.SENT))


def send_edition(
    session_factory: SessionFactory,
    day: date,
    *,
    settings: Settings,
    renderer: Renderer | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DeliverySummary:
    """Send every due delivery of one edition in this process (``newsletter send``)."""
    return deliver(
        session_factory,
        settings=settings,
        edition=day,
        workers=1,
        renderer=renderer,
        clock=clock,
    )
