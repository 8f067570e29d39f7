"""A batch's ratings and follows are read with one query per table over the batch's id
range; the rows of subscribers in that range but not in the batch are not theirs."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Feedback, FollowedAuthor, Paper, Subscriber
from newsletter.planning.follows import followed_matches, name_key
from newsletter.planning.profile_vectors import load_ratings
from newsletter.planning.readers import id_conditions

DAY = date(2026, 5, 27)
WHEN = datetime(2026, 5, 20, tzinfo=UTC)


def test_a_batch_reads_only_its_own_subscribers_ratings(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        people = [Subscriber(email=f"r{n}@example.org") for n in range(3)]
        session.add_all(people)
        paper = Paper(
            external_id="2605.00001",
            title="A paper",
            categories=["cs.CL"],
            url="https://arxiv.org/abs/2605.00001",
            listed_on=DAY,
            content_listed_on=DAY,
        )
        session.add(paper)
        session.flush()
        for value, person in zip((1, -1, 1), people, strict=True):
            session.add(
                Feedback(subscriber_id=person.id, paper_id=paper.id, value=value, created_at=WHEN)
            )
    with sessions() as session:
        first, _middle, last = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        paper_id = session.scalars(select(Paper.id)).one()
        # The middle subscriber is in the id range but not in the batch.
        ratings = load_ratings(session, [first, last])
    assert [(row, paper, value) for row, paper, value, _ in ratings.events] == [
        (0, paper_id, 1),
        (1, paper_id, 1),
    ]
    assert ratings.rated_pairs([first.id, last.id]) == {(first.id, paper_id), (last.id, paper_id)}


def test_spread_ids_are_read_in_lists_nearby_ids_as_one_range() -> None:
    assert len(id_conditions(Feedback.subscriber_id, list(range(100, 5_100)))) == 1
    assert len(id_conditions(Feedback.subscriber_id, [1, 2, 3, 10_000])) == 1
    spread = list(range(0, 3_000_000, 1_000))
    conditions = id_conditions(Feedback.subscriber_id, spread)
    assert len(conditions) == 6  # 3,000 ids in lists of 500
    assert id_conditions(Feedback.subscriber_id, []) == []


def test_a_batch_reads_only_its_own_subscribers_follows(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        people = [Subscriber(email=f"f{n}@example.org") for n in range(3)]
        session.add_all(people)
        paper = Paper(
            external_id="2605.00002",
            title="A paper by Ada",
            authors=["Ada Lovelace"],
            categories=["cs.CL"],
            url="https://arxiv.org/abs/2605.00002",
            listed_on=DAY,
            content_listed_on=DAY,
        )
        session.add(paper)
        session.flush()
        for person in people[1:]:
            key = name_key("Ada Lovelace")
            assert key is not None
            session.add(FollowedAuthor(subscriber_id=person.id, name="Ada Lovelace", key=str(key)))
    with sessions() as session:
        first, middle, last = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
        papers = session.scalars(select(Paper)).all()
        # The middle subscriber follows Ada too, but is not in the batch.
        found = followed_matches(session, [first.id, last.id], papers)
    assert {s: [m.paper_id for m in matches] for s, matches in found.items()} == {
        last.id: [papers[0].id]
    }
    assert middle.id not in found
