"""Subscribers' profile vectors from stored interests and feedback, for a fitted model.

Interest texts are deduplicated before they are embedded (a topic's description
is shared by everyone who follows it), and rated papers are embedded once each,
however many subscribers rated them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import scipy.sparse
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Feedback, Interest, Paper, Subscriber, Topic
from newsletter.planning.modelstore import TextCache
from recommender import Document, FeedbackWeights, TfidfModel, apply_feedback, build_profiles

_CHUNK = 500


@dataclass(frozen=True)
class Ratings:
    """Feedback of the planned subscribers: (row, paper id, value, when)."""

    events: list[tuple[int, int, int, datetime]]

    def rated_pairs(self, subscriber_ids: Sequence[int]) -> set[tuple[int, int]]:
        """(subscriber id, paper id) pairs that were rated: never offered again."""
        return {(subscriber_ids[row], paper) for row, paper, _, _ in self.events}


def _interest_text(interest: Interest, topics: dict[str, Topic]) -> str:
    if interest.topic_id is not None:
        return topics[interest.topic_id].description
    return interest.keywords or ""


@dataclass(frozen=True)
class InterestIndex:
    """Every subscriber's interests as (row, text, weight) triples, each distinct text
    once: what TF-IDF and embedding profiles are both built from."""

    texts: list[str]
    rows: list[int]
    cols: list[int]  # index into texts
    weights: list[float]


def interest_index(session: Session, subscribers: Sequence[Subscriber]) -> InterestIndex:
    topics = {t.id: t for t in session.scalars(select(Topic))}
    text_index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    for row, subscriber in enumerate(subscribers):
        for interest in subscriber.interests:
            rows.append(row)
            cols.append(text_index.setdefault(_interest_text(interest, topics), len(text_index)))
            weights.append(interest.weight)
    return InterestIndex(list(text_index), rows, cols, weights)


def load_ratings(session: Session, subscribers: Sequence[Subscriber]) -> Ratings:
    """Every feedback event of ``subscribers``, with the row each subscriber has."""
    row_of = {s.id: row for row, s in enumerate(subscribers)}
    ids = list(row_of)
    events: list[tuple[int, int, int, datetime]] = []
    for start in range(0, len(ids), _CHUNK):
        rows = session.execute(
            select(Feedback.subscriber_id, Feedback.paper_id, Feedback.value, Feedback.created_at)
            .where(Feedback.subscriber_id.in_(ids[start : start + _CHUNK]))
            .order_by(Feedback.id)
        )
        events.extend((row_of[s], p, v, when) for s, p, v, when in rows)
    return Ratings(events)


def build_subscriber_profiles(
    session: Session,
    model: TfidfModel,
    subscribers: Sequence[Subscriber],
    *,
    ratings: Ratings,
    today: date,
    weights: FeedbackWeights,
    text_cache: TextCache | None = None,
) -> scipy.sparse.csr_matrix:
    """One L2-normalised profile row per subscriber: interests, then feedback on top."""
    index = interest_index(session, subscribers)
    texts = index.texts
    interests = build_profiles(
        model,
        texts=texts,
        rows=index.rows,
        cols=index.cols,
        weights=index.weights,
        n_profiles=len(subscribers),
        text_vectors=text_cache.embed(model, texts) if text_cache is not None else None,
    )
    if not ratings.events:
        return interests
    paper_ids = sorted({paper for _, paper, _, _ in ratings.events})
    papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(paper_ids)))}
    column = {paper_id: i for i, paper_id in enumerate(paper_ids)}
    vectors = model.transform_documents(
        [Document(papers[i].title, papers[i].abstract) for i in paper_ids]
    )
    return apply_feedback(
        interests,
        vectors,
        rows=[row for row, _, _, _ in ratings.events],
        cols=[column[paper] for _, paper, _, _ in ratings.events],
        values=[value for _, _, value, _ in ratings.events],
        ages_days=[max((today - when.date()).days, 0) for _, _, _, when in ratings.events],
        weights=weights,
    )
