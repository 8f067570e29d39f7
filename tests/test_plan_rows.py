"""The outbox rows a batch writes hold exactly what was planned, on either database:
PostgreSQL's COPY text (built by hand, escaped by hand) and SQLite's executemany
read back the same scores and terms, however odd the terms."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Delivery, DeliveryItem, DeliveryStatus, Paper
from newsletter.papers.catalogue import load_catalogue
from newsletter.planning.editions import edition_for
from newsletter.planning.issues import RankedIssue
from newsletter.planning.outbox_rows import write_issues
from newsletter.planning.readers import load_readers
from newsletter.subscribers.roster import build_input, upsert_subscriber

DAY = date(2026, 5, 27)
# Terms as the model or a reader could spell them: quotes, backslashes, tabs, line
# breaks, non-ASCII, an empty list; scores with many digits, tiny and zero.
TERMS: list[list[str]] = [
    ['say "hi"', "back\\slash"],
    ["tab\there", "line\nbreak", "cr\rhere"],
    ["Schrödinger", "naïve bayes", "日本語"],
    [],
    ["\\N", "\\."],
]
SCORES = [0.123456789, 1e-07, 0.0, 0.5, 0.999999949]


def test_written_rows_read_back_as_planned(sessions: SessionFactory) -> None:
    catalogue = load_catalogue()
    with sessions.begin() as session:
        for n in range(2):
            upsert_subscriber(
                session,
                build_input(catalogue, email=f"r{n}@example.org", topics=["cs.CL"]),
            )
        for n in range(len(TERMS)):
            session.add(
                Paper(
                    external_id=f"2605.{n:05d}",
                    title=f"Paper {n}",
                    categories=["cs.CL"],
                    url=f"https://arxiv.org/abs/2605.{n:05d}",
                    listed_on=DAY,
                    content_listed_on=DAY,
                )
            )
    with sessions.begin() as session:
        edition_id = edition_for(session, DAY).id
        readers = load_readers(session, edition_id, limit=10)
        papers = session.scalars(select(Paper).order_by(Paper.external_id)).all()
        picks = [
            (paper, score, terms) for paper, score, terms in zip(papers, SCORES, TERMS, strict=True)
        ]
        write_issues(
            session,
            edition_id,
            [RankedIssue(readers[0], picks), RankedIssue(readers[1], picks[::-1][:2])],
        )
    with sessions() as session:
        deliveries = session.scalars(select(Delivery).order_by(Delivery.subscriber_id)).all()
        assert [d.subscriber_id for d in deliveries] == [readers[0].id, readers[1].id]
        assert all(
            (d.edition_id, d.status, d.attempts, d.next_attempt_at)
            == (edition_id, DeliveryStatus.PENDING, 0, None)
            for d in deliveries
        )
        assert all(d.created_at is not None for d in deliveries)
        items = {
            d.subscriber_id: [
                (i.rank, i.paper_id, i.score, i.terms)
                for i in session.scalars(
                    select(DeliveryItem)
                    .where(DeliveryItem.delivery_id == d.id)
                    .order_by(DeliveryItem.rank)
                )
            ]
            for d in deliveries
        }
    assert items[readers[0].id] == [
        (rank, paper.id, round(score, 6), terms) for rank, (paper, score, terms) in enumerate(picks)
    ]
    assert items[readers[1].id] == [
        (rank, paper.id, round(score, 6), terms)
        for rank, (paper, score, terms) in enumerate(picks[::-1][:2])
    ]
