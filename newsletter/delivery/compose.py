"""Composing: claimed deliveries loaded as plain data and turned into messages.

A worker loads a claimed batch in one go (subscribers, items, paper cards, interests)
into ``Job`` values, then renders and assembles each into an ``Outgoing`` message
(templates, headers, DKIM, envelope sender) without touching the database again. The
test send and the preview build their issue through the same ``Composer``, so what
they show is what subscribers get.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Select, Text, cast, select
from sqlalchemy.orm import Session, selectinload

from newsletter.db import among
from newsletter.delivery.smtp import SendResult
from newsletter.mail.addresses import smtp_address
from newsletter.mail.cards import CardCache
from newsletter.mail.dkim import DkimSigner
from newsletter.mail.message import MessageHeaders, build_message, message_id_for, one_line
from newsletter.mail.readers import Reader, load_readers
from newsletter.mail.render import IssueView, PaperView, RenderedIssue, Renderer
from newsletter.mail.skeleton import IssueSkeletons
from newsletter.mail.verp import envelope_sender
from newsletter.mail.view import (
    CARD_COLUMNS,
    ItemView,
    build_issue_view,
    interests_text,
    paper_card_from_row,
)
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from newsletter.settings import Settings
from newsletter.tokens import Tokens


@dataclass(frozen=True)
class Outgoing:
    """One assembled message on its way to the relay."""

    delivery_id: int
    recipient: str
    message_id: str
    message: bytes
    attempts: int = 0
    envelope_from: str = ""


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
    reader: Reader | None = None  # the why in the reader's words (mail.readers)


class Composer:
    """Loads claimed deliveries and turns them into messages (one per worker).

    Paper cards are built once per paper and kept (an edition's few hundred papers
    recur in thousands of issues), and so is their rendered paper-only part
    (``newsletter.mail.cards``); the rest of the issue is filled into skeletons
    rendered once per shape (``newsletter.mail.skeleton``).
    """

    def __init__(self, settings: Settings, renderer: Renderer, tokens: Tokens) -> None:
        self.settings = settings
        self.renderer = renderer
        self.tokens = tokens
        self._papers: dict[int, PaperView] = {}
        self._cards = CardCache()
        self.skeletons = IssueSkeletons(renderer, self._cards)  # .filled counts its issues
        self._editions: dict[int, date] = {}
        self._signer = DkimSigner.from_settings(settings)
        # Derived from the settings once, not per message (parsing the sender costs).
        self._sender_address = settings.sender_address
        self._list_id = settings.effective_list_id

    def load(self, session: Session, ids: Sequence[int]) -> tuple[list[Job], list[int]]:
        """The jobs of claimed ``ids``, and the ids that must not be sent.

        Plain column queries on the session's connection (Core): through the ORM each
        result row is passed through its entity loading machinery, which costs more
        than the query on the hot path, for the same rows.
        """
        connection = _connection(session)
        dialect = connection.dialect.name
        rows = connection.execute(
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
            .where(among(Delivery.id, ids, dialect))
            .order_by(Delivery.id)
        ).all()
        emails = [r[5] for r in rows]
        suppressed = set(
            connection.scalars(
                select(Suppression.email).where(among(Suppression.email, emails, dialect))
            )
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
        item_rows = connection.execute(
            select(
                DeliveryItem.delivery_id,
                DeliveryItem.rank,
                DeliveryItem.paper_id,
                DeliveryItem.score,
                cast(DeliveryItem.terms, Text),
            )
            .where(among(DeliveryItem.delivery_id, live_ids, dialect))
            .order_by(DeliveryItem.delivery_id, DeliveryItem.rank)
        ).all()
        texts: list[str | None] = [row[4] for row in item_rows]
        # PostgreSQL's json type holds only valid JSON: the batch parses as one array.
        # SQLite's column is text: each value is parsed alone.
        terms_of = (
            _json_lists(texts)
            if dialect == "postgresql"
            else [_terms(_json_list(text)) for text in texts]
        )
        for (delivery_id, rank, paper_id, score, _), terms in zip(item_rows, terms_of, strict=True):
            items[delivery_id].append((rank, score, terms, paper_id))
        self._load_papers(session, {p for entries in items.values() for *_, p in entries})
        self._load_editions(session, {r[2] for r in live})
        interests = self._interests(session, [r[3] for r in live])
        readers = load_readers(session, [r[3] for r in live])
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
                reader=readers.get(r[3]),
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
        for row in _connection(session).execute(
            select(Paper.id, *CARD_COLUMNS).where(
                among(Paper.id, missing, session.get_bind().dialect.name)
            )
        ):
            self._papers[row[0]] = paper_card_from_row(row[1:])

    def _load_editions(self, session: Session, wanted: set[int]) -> None:
        missing = wanted - self._editions.keys()
        if missing:
            for edition_id, day in _connection(session).execute(
                select(Edition.id, Edition.date).where(Edition.id.in_(missing))
            ):
                self._editions[edition_id] = day

    def _interests(self, session: Session, subscriber_ids: list[int]) -> dict[int, str]:
        topics: dict[int, list[str]] = {}
        keywords: dict[int, list[str]] = {}
        for subscriber_id, topic_name, words in _connection(session).execute(
            select(Interest.subscriber_id, Topic.name, Interest.keywords)
            .outerjoin(Topic, Topic.id == Interest.topic_id)
            .where(among(Interest.subscriber_id, subscriber_ids, session.get_bind().dialect.name))
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
            reader=job.reader,
        )
        shared = [item.paper for item in job.items]
        return view, self.skeletons.render(view, shared)

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
        return Outgoing(
            delivery_id=job.delivery_id,
            recipient=recipient,
            message_id=message_id,
            message=message,
            attempts=job.attempts,
            envelope_from=envelope_sender(settings, job.delivery_id),
        )


def _json_lists(texts: list[str | None]) -> list[list[str]]:
    """Each item's terms from its stored JSON text, parsed in one call for the whole
    batch (a thousand deliveries hold ten thousand items; the driver's JSON loading,
    a ``json.loads`` per row, cost more than the rest of loading them). For values
    that are each valid JSON (PostgreSQL's json type), so that joined by commas they
    are an array of as many; if not, each value is parsed alone."""
    try:
        parsed = json.loads("[" + ",".join(t if t is not None else "null" for t in texts) + "]")
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or len(parsed) != len(texts):
        parsed = [_json_list(t) for t in texts]
    return [_terms(value) for value in parsed]


def _terms(value: object) -> list[str]:
    return value if isinstance(value, list) else []


def _json_list(text: str | None) -> object:
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def _connection(session: Session) -> Connection:
    """The session's connection, after the autoflush ``session.execute`` would do."""
    if session.autoflush:
        session.flush()
    return session.connection()


def select_renderable() -> Select[Delivery]:
    """Deliveries with everything their issue shows loaded up front (no lazy loads)."""
    return select(Delivery).options(
        selectinload(Delivery.items).selectinload(DeliveryItem.paper),
        selectinload(Delivery.subscriber)
        .selectinload(Subscriber.interests)
        .selectinload(Interest.topic),
        selectinload(Delivery.edition),
    )
