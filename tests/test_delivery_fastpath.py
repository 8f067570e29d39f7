"""The delivery workers' fast path (paper cards rendered once, newsletter.mail.cards;
the rest of the issue filled into skeletons, newsletter.mail.skeleton; the HTML part's
7bit body made on the way) against the reference path (the whole issue rendered by
Jinja per message, every card included, and encoded by the message builder).

Both are composed from the same stored deliveries; the messages must read the same
for every reader: the same headers, the same text and HTML once decoded, and, with the
MIME boundary (unique per message) set aside, the same bytes.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from newsletter.db import SessionFactory
from newsletter.delivery.compose import Composer, Job
from newsletter.mail.render import Renderer
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Edition,
    Feedback,
    FollowedAuthor,
    Frequency,
    Interest,
    LibrarySeed,
    Paper,
    Subscriber,
    SubscriberStatus,
)
from newsletter.resources import resource_path
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


@dataclass(frozen=True)
class Reader:
    email: str
    name: str = ""
    locale: str = "en"
    keywords: tuple[str, ...] = ()
    topic: bool = True  # cs.CL, every paper's category: a topic reason on every pick
    weekly: bool = False
    likes: bool = False  # a liked paper, a library seed and a followed author
    picks: int | None = None  # how many of the papers (default: all, or all but one)


READERS = [
    Reader("plain@example.org", "", "en", ("retrieval",)),
    Reader("juergen@example.org", "Jürgen Müller", "de", ("Bayes",)),
    Reader("zoe@example.org", 'Zoë "Z" Saldaña', "en", ("memorisation", "language models")),
    Reader("leser@example.org", "Grüße Schön", "de"),
    # Escaping: a keyword and a name with markup characters, in a weekly issue.
    Reader(
        "weekly@example.org", "Wöchentlich <Leser> & Co", "de", ("graphen & <bayes>",), weekly=True
    ),
    # The why from a liked paper, the reader's library and a followed author.
    Reader("liker@example.org", "Ünïcode Liker", "en", ("scale",), likes=True),
    # No why at all (no topic, no keyword), and picks without terms.
    Reader("nowhy@example.org", "", "en", topic=False),
    # One pick (no preheader), and none.
    Reader("one@example.org", "One", "de", ("retrieval",), picks=1),
    Reader("none@example.org", "None", "en", picks=0),
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
        for r, reader in enumerate(READERS):
            subscriber = Subscriber(
                email=reader.email,
                name=reader.name,
                locale=reader.locale,
                token_version=1,
                status=SubscriberStatus.ACTIVE,
                frequency=Frequency.WEEKLY if reader.weekly else Frequency.DAILY,
            )
            session.add(subscriber)
            session.flush()
            if reader.topic:
                session.add(Interest(subscriber_id=subscriber.id, topic_id="cs.CL"))
            for words in reader.keywords:
                session.add(Interest(subscriber_id=subscriber.id, keywords=words))
            if reader.likes:
                session.add(Feedback(subscriber_id=subscriber.id, paper_id=papers[1].id, value=1))
                session.add(
                    LibrarySeed(
                        subscriber_id=subscriber.id,
                        title_key="deja vu",
                        title="Déjà vu & <memorisation> in language models",
                        abstract="Large language models memorise.",
                    )
                )
                session.add(
                    FollowedAuthor(
                        subscriber_id=subscriber.id, name="Jürgen Müller", key="muller|j"
                    )
                )
            delivery = Delivery(edition_id=edition.id, subscriber_id=subscriber.id)
            session.add(delivery)
            session.flush()
            # The same papers at other ranks for each reader, and not all of them.
            order = papers[r % len(papers) :] + papers[: r % len(papers)]
            count = len(papers) - r % 2 if reader.picks is None else reader.picks
            for rank, paper in enumerate(order[:count], 1):
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


def _settings(database_url: str, **overrides: str) -> Settings:
    return load_settings(
        overrides={
            "secret_key": SECRET,
            "database_url": database_url,
            "sender": "Pâpers Nëwsletter <news@example.org>",
            "unsubscribe_mailto": "unsubscribe@example.org",
            **overrides,
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


def _compare(composer: Composer, renderer: Renderer, jobs: list[Job]) -> None:
    for job in jobs:
        fast, reference = _both(composer, renderer, job)
        assert _without_boundary(fast) == _without_boundary(reference)
        parsed_fast = message_from_bytes(fast, policy=policy.default)
        parsed_reference = message_from_bytes(reference, policy=policy.default)
        assert isinstance(parsed_fast, EmailMessage)
        assert isinstance(parsed_reference, EmailMessage)
        assert _parts(parsed_fast) == _parts(parsed_reference)


@pytest.mark.parametrize("contact_line", ["", "Paper Newsletter · 1 Example Street & Co <Berlin>"])
def test_the_fast_path_composes_what_the_reference_path_composes(
    sessions: SessionFactory, database_url: str, contact_line: str
) -> None:
    ids = _store(sessions)
    settings = _settings(database_url, contact_line=contact_line)
    renderer = Renderer()
    composer = Composer(settings, renderer, Tokens(SECRET))
    with sessions() as session:
        jobs, blocked = composer.load(session, ids)
    assert blocked == []
    assert len(jobs) == len(READERS)
    # The first pass renders through Jinja and fills the card cache; the second fills
    # skeletons, each held to Jinja's output on first use; the third is skeletons only.
    for _ in range(2):
        _compare(composer, renderer, jobs)
    filled = composer.skeletons.filled
    _compare(composer, renderer, jobs)
    assert composer.skeletons.filled - filled == len(jobs)  # every issue, from skeletons

    def plain_and_html(email: str) -> tuple[list[tuple[str, str]], str, str]:
        job = next(job for job in jobs if job.email == email)
        message = message_from_bytes(composer.compose(job, now=NOW).message, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return _parts(message)

    headers, plain, _ = plain_and_html("juergen@example.org")
    assert ("To", "Jürgen Müller <juergen@example.org>") in headers
    assert "Déjà vu: memorisation in “large” language models" in plain
    assert "Zusammenfassung: https://arxiv.org/abs/2605.10002" in plain
    headers, plain, html = plain_and_html("weekly@example.org")
    assert dict(headers)["Subject"].startswith("Ihre Woche: ")
    assert "„graphen & <bayes>“" in plain or "“graphen & <bayes>”" in plain
    assert "graphen &amp; &lt;bayes&gt;" in html
    _, plain, _ = plain_and_html("liker@example.org")
    assert "by Jürgen Müller, whom you follow" in plain
    assert "which you marked more like this" in plain or "from your library" in plain
    _, plain, _ = plain_and_html("nowhy@example.org")  # the matched terms alone, or nothing
    assert "Why: matched terms: language models, retrieval" in plain
    assert "in your topic" not in plain
    if contact_line:
        _, plain, html = plain_and_html("none@example.org")
        assert contact_line in plain
        assert "1 Example Street &amp; Co &lt;Berlin&gt;" in html


@pytest.mark.parametrize("changed", [False, True])
def test_skeletons_only_for_the_packaged_templates(
    sessions: SessionFactory, database_url: str, tmp_path: Path, changed: bool
) -> None:
    """A copy of the packaged templates fills skeletons; a changed one renders each issue
    through Jinja (a skeleton cannot tell what an operator's template does with a value)."""
    directory = tmp_path / "email"
    shutil.copytree(resource_path("templates") / "email", directory)
    if changed:
        path = directory / "issue.txt"
        path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    ids = _store(sessions)
    renderer = Renderer(directory)
    composer = Composer(_settings(database_url), renderer, Tokens(SECRET))
    with sessions() as session:
        jobs, _ = composer.load(session, ids)
    for _ in range(3):
        _compare(composer, renderer, jobs)
    assert (composer.skeletons.filled == 0) == changed
