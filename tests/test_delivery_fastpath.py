"""The delivery workers' fast path (paper cards rendered once, newsletter.mail.cards)
against the reference path (every card rendered per message).

Both are composed from the same stored deliveries; the messages must read the same
for every reader: the same headers, the same text and HTML once decoded, and, with the
MIME boundary (unique per message) set aside, the same bytes.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage

from newsletter.db import SessionFactory
from newsletter.delivery.compose import Composer, Job
from newsletter.mail.render import Renderer
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.settings import Settings, load_settings
from newsletter.tokens import Tokens

SECRET = "f" * 40
NOW = datetime(2026, 5, 29, 6, 0, tzinfo=UTC)
DAY = date(2026, 5, 28)

PAPERS = [
    (r"Über $\alpha$-Stabilität: naïve Bayes für Graphen", ["Jürgen Müller", "Zoë Saldaña"]),
    ("Retrieval-Augmented Generation at Scale", ["A. Author", "B. Author", "C. D", "E. F"]),
    ("Déjà vu: memorisation in “large” language models — a survey", ["李雷", "Olaf Øster"]),
    ("Trailing spaces and = signs: x = y ", ["Solo Writer"]),
    ("A" * 120 + " long unbroken title line", ["Long Name " * 8]),
]
READERS = [
    ("plain@example.org", "", "en", ["retrieval"]),
    ("juergen@example.org", "Jürgen Müller", "de", ["Bayes"]),
    ("zoe@example.org", 'Zoë "Z" Saldaña', "en", ["memorisation", "language models"]),
    ("leser@example.org", "Grüße Schön", "de", []),
]


def _store(sessions: SessionFactory) -> list[int]:
    with sessions.begin() as session:
        edition = Edition(date=DAY)
        session.add(edition)
        papers = []
        for n, (title, authors) in enumerate(PAPERS):
            paper = Paper(
                external_id=f"2605.1000{n}",
                title=title,
                abstract=f"Abstract {n}: we study ümlauts, =equals= and long lines. " * 4,
                authors=authors,
                categories=["cs.CL", "stat.ML"],
                url=f"https://arxiv.org/abs/2605.1000{n}",
                comment="10 pages, ACL 2026" if n % 2 else None,
                listed_on=DAY,
                content_listed_on=DAY,
            )
            session.add(paper)
            papers.append(paper)
        session.flush()
        ids = []
        for r, (email, name, locale, keywords) in enumerate(READERS):
            subscriber = Subscriber(
                email=email,
                name=name,
                locale=locale,
                token_version=1,
                status=SubscriberStatus.ACTIVE,
            )
            session.add(subscriber)
            session.flush()
            session.add(Interest(subscriber_id=subscriber.id, topic_id="cs.CL"))
            for words in keywords:
                session.add(Interest(subscriber_id=subscriber.id, keywords=words))
            delivery = Delivery(edition_id=edition.id, subscriber_id=subscriber.id)
            session.add(delivery)
            session.flush()
            # The same papers at other ranks for each reader, and not all of them.
            order = papers[r:] + papers[:r]
            for rank, paper in enumerate(order[: len(papers) - r % 2], 1):
                session.add(
                    DeliveryItem(
                        delivery_id=delivery.id,
                        rank=rank,
                        paper_id=paper.id,
                        score=1.0 / rank,
                        terms=["language models", "retrieval"] if rank % 2 else [],
                    )
                )
            ids.append(delivery.id)
    return ids


def _settings(database_url: str) -> Settings:
    return load_settings(
        overrides={
            "secret_key": SECRET,
            "database_url": database_url,
            "sender": "Pâpers Nëwsletter <news@example.org>",
            "unsubscribe_mailto": "unsubscribe@example.org",
        }
    )


def _both(composer: Composer, renderer: Renderer, job: Job) -> tuple[bytes, bytes]:
    """The message as the worker composes it (``Composer.compose`` is render, then
    assemble), and from the same view without the card cache: every card rendered.
    One view for both: its links carry a timestamp."""
    view, fast = composer.render(job)
    reference = renderer.render_issue(view)  # no cards: the blocks render per reader
    assert (reference.subject, reference.text, reference.html) == (
        fast.subject,
        fast.text,
        fast.html,
    )
    return (
        composer.assemble(job, view, fast, now=NOW).message,
        composer.assemble(job, view, reference, now=NOW).message,
    )


def _without_boundary(data: bytes) -> bytes:
    return re.sub(rb"=_issue_[0-9a-f]+_\d+", b"BOUNDARY", data)


def _parts(message: EmailMessage) -> tuple[list[tuple[str, str]], str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    headers = [(k, str(v)) for k, v in message.items() if k != "Content-Type"]
    return headers, text.get_content(), html.get_content()


def test_the_fast_path_composes_what_the_reference_path_composes(
    sessions: SessionFactory, database_url: str
) -> None:
    ids = _store(sessions)
    settings = _settings(database_url)
    renderer = Renderer()
    composer = Composer(settings, renderer, Tokens(SECRET))
    with sessions() as session:
        jobs, blocked = composer.load(session, ids)
    assert blocked == []
    assert len(jobs) == len(READERS)
    # Twice: the first pass fills the card cache, the second is served from it.
    for _ in range(2):
        for job in jobs:
            fast, reference = _both(composer, renderer, job)
            assert _without_boundary(fast) == _without_boundary(reference)
            parsed_fast = message_from_bytes(fast, policy=policy.default)
            parsed_reference = message_from_bytes(reference, policy=policy.default)
            assert isinstance(parsed_fast, EmailMessage)
            assert isinstance(parsed_reference, EmailMessage)
            assert _parts(parsed_fast) == _parts(parsed_reference)
    german = next(job for job in jobs if job.locale == "de")
    text = message_from_bytes(composer.compose(german, now=NOW).message, policy=policy.default)
    assert isinstance(text, EmailMessage)
    headers, plain, _ = _parts(text)
    assert ("To", "Jürgen Müller <juergen@example.org>") in headers
    assert "Déjà vu: memorisation in “large” language models" in plain
    assert "Zusammenfassung: https://arxiv.org/abs/2605.10002" in plain
