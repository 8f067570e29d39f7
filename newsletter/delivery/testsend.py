"""``newsletter test-send``: a real issue, through the production path, to any address.

The issue is one subscriber's (``as_email``: the delivery already planned for them in
the edition, or, when there is none, their picks ranked in memory exactly as the
planner ranks them) or an ad-hoc profile's (topics and keywords). It is rendered,
assembled, DKIM-signed and sent by the same code as every production issue
(``newsletter.delivery.compose.Composer`` and ``SmtpPool`` with the production SMTP settings);
only the subject starts with "[TEST] " and the recipient is ``to``.

Nothing is written: no delivery row, no paper recorded as sent, no subscriber
touched (the session is only read, then rolled back), and no model or cache file
written (a stale stored model is not refitted; the test issue is ranked with a model
fitted in memory instead). The links in a test issue are signed with a token
version no subscriber has, so a click on "unsubscribe" in a test mail changes
nothing either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.delivery.compose import Composer, Job, Outgoing
from newsletter.delivery.smtp import SmtpPool, smtp_config
from newsletter.errors import EditionError, NewsletterError
from newsletter.i18n import DEFAULT_LOCALE
from newsletter.mail.addresses import address_key, normalise_email
from newsletter.mail.render import IssueView, RenderedIssue, Renderer
from newsletter.mail.view import ItemView, interests_line, interests_text, paper_base_of
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    Topic,
    utcnow,
)
from newsletter.planning import modelstore
from newsletter.planning.corpus import EditionModel, model_for_edition
from newsletter.planning.editions import candidate_papers, rank_issues, window
from newsletter.planning.latest import latest_edition_day, plan_options
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.tokens import Tokens

TEST_PREFIX = "[TEST] "
# Subscribers' token versions are at least 1 (models.new_link_key): links signed with 0
# never verify.
DEAD_TOKEN_VERSION = 0


class TestSendError(NewsletterError):
    """A test issue cannot be built or was refused by the relay."""

    __test__ = False  # not a pytest test class


class TestRenderer(Renderer):
    """The production renderer, with the subject marked as a test."""

    __test__ = False

    def render_issue(self, view: IssueView, **cards: Any) -> RenderedIssue:
        rendered = super().render_issue(view, **cards)
        return dataclasses.replace(rendered, subject=TEST_PREFIX + rendered.subject)


@dataclasses.dataclass(frozen=True)
class IssueRequest:
    """Whose issue: a subscriber (``as_email``) or an ad-hoc profile (topics, keywords)."""

    as_email: str | None = None
    topics: Sequence[str] = ()
    keywords: Sequence[str] = ()
    edition: date | None = None

    def __post_init__(self) -> None:
        if self.as_email and (self.topics or self.keywords):
            raise TestSendError("give either a subscriber (--as) or topics/keywords, not both")
        if not self.as_email and not (self.topics or self.keywords):
            raise TestSendError("give a subscriber (--as EMAIL) or --topic/--keywords")


def _edition_day(session: Session, wanted: date | None, now: datetime) -> date:
    if wanted is not None:
        return wanted
    day = latest_edition_day(session, now)
    if day is None:
        raise EditionError("no papers have been ingested yet: nothing to put in an issue")
    return day


def _model(session: Session, papers: list[Paper], day: date, service: Service) -> EditionModel:
    """The edition's model, without writing anything: the stored one while it is
    current, else one fitted in memory (the planner would refit and store it)."""
    settings = service.settings
    earliest = min(window(day, f)[0] for f in Frequency)
    model_dir = settings.model_dir
    if model_dir is not None:
        stored = modelstore.load(model_dir)
        total = session.scalar(select(func.count(Paper.id))) or 0
        if stored is None or modelstore.needs_refit(
            stored, corpus_size=total, growth=settings.refit_growth
        ):
            model_dir = None
    fitted = model_for_edition(
        session,
        papers,
        earliest=earliest,
        corpus_limit=settings.corpus_limit,
        model_dir=model_dir,
        refit_growth=settings.refit_growth,
    )
    # The text cache would be written to; the same vectors are computed without it.
    return dataclasses.replace(fitted, texts=None)


def _ranked_items(
    session: Session, service: Service, subscriber: Subscriber, day: date, edition_id: int | None
) -> list[ItemView]:
    papers = candidate_papers(session, day)
    if not papers:
        return []
    fitted = _model(session, papers, day, service)
    issues, _ = rank_issues(
        session,
        day,
        [subscriber],
        papers,
        edition_id=edition_id,
        options=plan_options(service.settings),
        fitted=fitted,
    )
    if not issues:
        return []
    return [
        ItemView(rank, round(score, 6), terms, paper_base_of(paper))
        for rank, (paper, score, terms) in enumerate(issues[0].picks)
    ]


def _stored_items(session: Session, delivery_id: int) -> list[ItemView]:
    items = session.scalars(
        select(DeliveryItem)
        .where(DeliveryItem.delivery_id == delivery_id)
        .options(selectinload(DeliveryItem.paper))
        .order_by(DeliveryItem.rank)
    )
    return [ItemView(i.rank, i.score, i.terms, paper_base_of(i.paper)) for i in items]


def _ad_hoc(session: Session, service: Service, request: IssueRequest) -> tuple[Subscriber, str]:
    """A subscriber that exists only in memory (never added to the session)."""
    from newsletter.subscribers.roster import build_input

    data = build_input(
        service.catalogue,
        email="test@example.org",
        topics=list(request.topics),
        keywords=list(request.keywords),
    )
    stored = {t.id: t for t in session.scalars(select(Topic).where(Topic.id.in_(data.topics)))}
    missing = [t for t in data.topics if t not in stored]
    if missing:
        raise TestSendError(
            f"topic {missing[0]} is not in the database yet (it is synced from the "
            "catalogue when an edition is planned)"
        )
    subscriber = Subscriber(
        id=0,
        email="",
        name="",
        frequency=Frequency.DAILY,
        max_papers=None,
        always_send=True,  # a test shows the best there is, even below min_score
        token_version=DEAD_TOKEN_VERSION,
        interests=[Interest(topic_id=t, weight=1.0) for t in data.topics]
        + [Interest(keywords=k, weight=1.0) for k in data.keywords],
    )
    label = interests_text([stored[t].name for t in data.topics], list(data.keywords))
    return subscriber, label


def build_job(
    service: Service, request: IssueRequest, *, recipient: str | None, now: datetime
) -> Job:
    """The issue as the delivery workers see a claimed delivery, built without writing.

    ``recipient``: the address it goes to (None: the subscriber's own, for previews).
    """
    with service.sessions() as session:
        try:
            return _build_job(session, service, request, recipient=recipient, now=now)
        finally:
            session.rollback()  # read only, and nothing may ever be flushed


def _build_job(
    session: Session,
    service: Service,
    request: IssueRequest,
    *,
    recipient: str | None,
    now: datetime,
) -> Job:
    day = _edition_day(session, request.edition, now)
    edition_id = session.scalar(select(Edition.id).where(Edition.date == day))
    if request.as_email:
        subscriber = session.scalars(
            select(Subscriber)
            .where(func.lower(Subscriber.email) == address_key(request.as_email))
            .options(selectinload(Subscriber.interests).selectinload(Interest.topic))
        ).one_or_none()
        if subscriber is None:
            raise TestSendError(f"no subscriber {request.as_email}")
        delivery_id = (
            None
            if edition_id is None
            else session.scalar(
                select(Delivery.id).where(
                    Delivery.edition_id == edition_id, Delivery.subscriber_id == subscriber.id
                )
            )
        )
        if delivery_id is not None:
            items = _stored_items(session, delivery_id)
        else:
            items = _ranked_items(session, service, subscriber, day, edition_id)
        interests = interests_line(subscriber)
        who, name, subscriber_id = subscriber.email, subscriber.name, subscriber.id
        locale = subscriber.locale  # their issue, in their language
    else:
        subscriber, interests = _ad_hoc(session, service, request)
        items = _ranked_items(session, service, subscriber, day, edition_id)
        who, name, subscriber_id, locale = "", "", 0, DEFAULT_LOCALE
    if not items:
        raise TestSendError(
            f"nothing new for {who or 'that profile'} in the edition of {day}: "
            "no issue would be sent"
        )
    return Job(
        # Never a real delivery's id: feedback links and VERP addresses match nothing.
        delivery_id=10**12 + secrets.randbelow(10**12),
        attempts=0,
        subscriber_id=subscriber_id,
        token_version=DEAD_TOKEN_VERSION,
        email=recipient or who,
        name=name,
        edition=day,
        interests=interests,
        items=tuple(items),
        locale=locale,
    )


async def _send(settings: Settings, outgoing: Outgoing) -> str:
    async with SmtpPool(smtp_config(settings, 1)) as pool:
        result = await pool.send(
            sender=outgoing.envelope_from,
            recipients=[outgoing.recipient],
            message=outgoing.message,
        )
    if result.status != "sent":
        raise TestSendError(f"the relay refused the test issue: {result.code} {result.reply}")
    return f"{result.code} {result.reply}".strip()


def compose_test(service: Service, request: IssueRequest, *, to: str, now: datetime) -> Outgoing:
    """The test message exactly as it would go on the wire."""
    address = normalise_email(to)
    renderer = TestRenderer(service.settings.templates_dir)
    renderer.check()
    job = build_job(service, request, recipient=address, now=now)
    composer = Composer(
        service.settings, renderer, Tokens(service.settings.secret_key.get_secret_value())
    )
    return composer.compose(job, now=now)


def send_test_issue(
    settings: Settings,
    *,
    to: str,
    as_email: str | None = None,
    topics: Sequence[str] = (),
    keywords: Sequence[str] = (),
    edition: date | None = None,
) -> str:
    """Send one test issue to ``to``; return a line saying what went where."""
    request = IssueRequest(
        as_email=as_email, topics=tuple(topics), keywords=tuple(keywords), edition=edition
    )
    service = Service.open(settings)
    try:
        now = utcnow()
        outgoing = compose_test(service, request, to=to, now=now)
    finally:
        service.close()
    reply = asyncio.run(_send(settings, outgoing))
    whose = as_email or "topics " + ", ".join([*topics, *(f"“{k}”" for k in keywords)])
    return f"test issue ({whose}) sent to {outgoing.recipient}: {reply}"
