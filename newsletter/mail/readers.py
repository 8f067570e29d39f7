"""What an issue needs to know of its reader to say why each paper is there.

The reader's keywords as they typed them, their topics by display name, the papers they
marked "more like this", and whether they read weekly, loaded as plain data
(``recommender.explanations.ReaderInterests``) for a batch of subscribers at once, so
the delivery workers add two queries per batch and nothing per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, object_session

from newsletter.db import among
from newsletter.models import (
    Feedback,
    FollowedAuthor,
    Frequency,
    Interest,
    LibrarySeed,
    Paper,
    Subscriber,
    Topic,
)
from recommender.explanations import LikedPaper, ReaderInterests, words_of

# The newest likes are enough to name one as the reason; older ones weigh less anyway.
LIKED_LIMIT = 20


@dataclass(frozen=True)
class Reader:
    """One subscriber's interests in their own words, and how often they read."""

    interests: ReaderInterests = field(default_factory=ReaderInterests)
    weekly: bool = False
    # Authors they follow: (key as planning.follows matches it, the name as they gave it).
    followed: tuple[tuple[str, str], ...] = ()


def _liked(
    text_rows: Iterable[tuple[int, str, str, int | None]],
    liked: dict[int, list[LikedPaper]] | None = None,
    *,
    from_library: bool = False,
) -> dict[int, list[LikedPaper]]:
    liked = {} if liked is None else liked
    for subscriber_id, title, abstract, paper_id in text_rows:
        papers = liked.setdefault(subscriber_id, [])
        if len(papers) < LIKED_LIMIT:
            words = words_of(f"{title} {abstract}")
            papers.append(LikedPaper(title, words, from_library, paper_id))
    return liked


def _connection(session: Session) -> Connection:
    """The session's connection, after the autoflush ``session.execute`` would do.

    The readers' queries select plain columns; run on the connection (Core) their rows
    skip the ORM's per-row entity loading, which costs more than the query when a
    delivery worker loads hundreds of readers at a time.
    """
    if session.autoflush:
        session.flush()
    return session.connection()


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _liked_rows(
    session: Session, subscriber_ids: list[int], rated_before: datetime | None = None
) -> dict[int, list[LikedPaper]]:
    query = (
        select(Feedback.subscriber_id, Paper.title, Paper.abstract, Feedback.paper_id)
        .join(Paper, Paper.id == Feedback.paper_id)
        .where(among(Feedback.subscriber_id, subscriber_ids, _dialect(session)), Feedback.value > 0)
        .order_by(Feedback.subscriber_id, Feedback.created_at.desc(), Feedback.id.desc())
    )
    if rated_before is not None:
        query = query.where(Feedback.created_at <= rated_before)
    liked = _liked((s, t, a, p) for s, t, a, p in _connection(session).execute(query))
    # Then the seeds of their library (issue 16), while there is room.
    seeds = _connection(session).execute(
        select(
            LibrarySeed.subscriber_id, LibrarySeed.title, LibrarySeed.abstract, LibrarySeed.paper_id
        )
        .where(among(LibrarySeed.subscriber_id, subscriber_ids, _dialect(session)))
        .order_by(LibrarySeed.subscriber_id, LibrarySeed.id)
    )
    return _liked(((s, t, a, p) for s, t, a, p in seeds), liked, from_library=True)


def _followed_rows(session: Session, subscriber_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    followed: dict[int, list[tuple[str, str]]] = {}
    for subscriber_id, key, name in _connection(session).execute(
        select(FollowedAuthor.subscriber_id, FollowedAuthor.key, FollowedAuthor.name)
        .where(among(FollowedAuthor.subscriber_id, subscriber_ids, _dialect(session)))
        .order_by(FollowedAuthor.id)
    ):
        followed.setdefault(subscriber_id, []).append((key, name))
    return followed


def load_readers(session: Session, subscriber_ids: Iterable[int]) -> dict[int, Reader]:
    """The ``Reader`` of each subscriber in ``subscriber_ids`` (two queries)."""
    ids = sorted(set(subscriber_ids))
    if not ids:
        return {}
    keywords: dict[int, list[str]] = {s: [] for s in ids}
    topics: dict[int, dict[str, str]] = {s: {} for s in ids}
    weekly = {
        s: f == Frequency.WEEKLY
        for s, f in _connection(session).execute(
            select(Subscriber.id, Subscriber.frequency).where(
                among(Subscriber.id, ids, _dialect(session))
            )
        )
    }
    for subscriber_id, topic_id, topic_name, words in _connection(session).execute(
        select(Interest.subscriber_id, Interest.topic_id, Topic.name, Interest.keywords)
        .outerjoin(Topic, Topic.id == Interest.topic_id)
        .where(among(Interest.subscriber_id, ids, _dialect(session)))
        .order_by(Interest.id)
    ):
        if topic_id is not None:
            topics[subscriber_id][topic_id] = topic_name or topic_id
        if words:
            keywords[subscriber_id].append(words)
    liked = _liked_rows(session, ids)
    followed = _followed_rows(session, ids)
    return {
        s: Reader(
            ReaderInterests(keywords[s], topics[s], liked.get(s, [])),
            weekly=weekly.get(s, False),
            followed=tuple(followed.get(s, ())),
        )
        for s in ids
    }


def reader_of(subscriber: Subscriber, *, rated_before: datetime | None = None) -> Reader:
    """The ``Reader`` of a loaded subscriber (interests loaded; likes read through its
    session, none when it has none). ``rated_before``: only the likes rated until then
    (an old issue read online gives the reasons it was sent with, not later ratings)."""
    session = object_session(subscriber)
    liked: list[LikedPaper] = []
    followed: list[tuple[str, str]] = []
    if session is not None and subscriber.id is not None:
        liked = _liked_rows(session, [subscriber.id], rated_before).get(subscriber.id, [])
        followed = _followed_rows(session, [subscriber.id]).get(subscriber.id, [])
    interests = ReaderInterests(
        keywords=[i.keywords for i in subscriber.interests if i.keywords],
        topics={
            i.topic_id: i.topic.name if i.topic is not None else i.topic_id
            for i in subscriber.interests
            if i.topic_id is not None
        },
        liked=liked,
    )
    return Reader(
        interests, weekly=subscriber.frequency == Frequency.WEEKLY, followed=tuple(followed)
    )
