"""Subscribers' profile vectors from stored interests and feedback, for a fitted model.

Interest texts are deduplicated before they are embedded (a topic's description
is shared by everyone who follows it), and rated papers are embedded once each,
however many subscribers rated them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import scipy.sparse
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Feedback, LibrarySeed, Paper, Topic
from newsletter.planning.modelstore import TextCache
from newsletter.planning.readers import InterestLike, Reader, id_conditions
from recommender import Document, FeedbackWeights, TfidfModel, apply_feedback, build_profiles

# The date a seed from the reader's library counts as rated while it is not outweighed:
# ages are clipped at 0, so a seed dated here never decays (see load_ratings).
SEED_FRESH = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Ratings:
    """Feedback of the planned subscribers: (row, paper id, value, when), seeds from
    their libraries included (value +1); ``seed_texts``: (row, title, abstract) of the
    seeds that are no stored paper (built from a library entry's own text)."""

    events: list[tuple[int, int, int, datetime]]
    seed_texts: list[tuple[int, str, str]] = field(default_factory=list)

    def rated_pairs(self, subscriber_ids: Sequence[int]) -> set[tuple[int, int]]:
        """(subscriber id, paper id) pairs that were rated: never offered again."""
        return {(subscriber_ids[row], paper) for row, paper, _, _ in self.events}


def _interest_text(interest: InterestLike, topics: dict[str, Topic]) -> str:
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


def interest_index(session: Session, subscribers: Sequence[Reader]) -> InterestIndex:
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


def load_ratings(session: Session, subscribers: Sequence[Reader]) -> Ratings:
    """Every feedback event of ``subscribers``, with the row each subscriber has, and
    the seeds of their libraries as "more like this".

    A seed does not decay while the reader has given fewer ratings of their own than
    they have seeds (it is dated ``SEED_FRESH``); once their own feedback outnumbers
    the seeds, each seed ages from the day it was imported, like any rating.
    """
    row_of = {s.id: row for row, s in enumerate(subscribers)}
    events: list[tuple[int, int, int, datetime]] = []
    seeds: list[tuple[int, int | None, str, str, datetime]] = []
    ids = list(row_of)
    for feedback_of, seeds_of in zip(
        id_conditions(Feedback.subscriber_id, ids),
        id_conditions(LibrarySeed.subscriber_id, ids),
        strict=True,
    ):
        rows = session.execute(
            select(Feedback.subscriber_id, Feedback.paper_id, Feedback.value, Feedback.created_at)
            .where(feedback_of)
            .order_by(Feedback.id)
        )
        events.extend((row_of[s], p, v, when) for s, p, v, when in rows if s in row_of)
        seeds.extend(
            (row_of[s], p, title, abstract, when)
            for s, p, title, abstract, when in session.execute(
                select(
                    LibrarySeed.subscriber_id,
                    LibrarySeed.paper_id,
                    LibrarySeed.title,
                    LibrarySeed.abstract,
                    LibrarySeed.created_at,
                )
                .where(seeds_of)
                .order_by(LibrarySeed.id)
            )
            if s in row_of
        )
    if not seeds:
        return Ratings(events)
    own = Counter(row for row, _, _, _ in events)
    held = Counter(row for row, _, _, _, _ in seeds)
    rated = {(row, paper) for row, paper, _, _ in events}
    seed_texts: list[tuple[int, str, str]] = []
    for row, paper, title, abstract, when in seeds:
        if paper is None:
            seed_texts.append((row, title, abstract))
        elif (row, paper) not in rated:  # the reader's own rating of it says more
            events.append((row, paper, 1, when if own[row] >= held[row] else SEED_FRESH))
    return Ratings(events, seed_texts)


def build_subscriber_profiles(
    session: Session,
    model: TfidfModel,
    subscribers: Sequence[Reader],
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
    if not ratings.events and not ratings.seed_texts:
        return interests
    paper_ids = sorted({paper for _, paper, _, _ in ratings.events})
    papers = {p.id: p for p in session.scalars(select(Paper).where(Paper.id.in_(paper_ids)))}
    column = {paper_id: i for i, paper_id in enumerate(paper_ids)}
    # Seeds of a library entry's own text are rows after the stored papers, liked today.
    documents = [Document(papers[i].title, papers[i].abstract) for i in paper_ids]
    documents += [Document(title, abstract) for _, title, abstract in ratings.seed_texts]
    first_text = len(paper_ids)
    return apply_feedback(
        interests,
        model.transform_documents(documents),
        rows=[row for row, _, _, _ in ratings.events] + [r for r, _, _ in ratings.seed_texts],
        cols=[column[paper] for _, paper, _, _ in ratings.events]
        + list(range(first_text, len(documents))),
        values=[value for _, _, value, _ in ratings.events] + [1] * len(ratings.seed_texts),
        ages_days=[max((today - when.date()).days, 0) for _, _, _, when in ratings.events]
        + [0] * len(ratings.seed_texts),
        weights=weights,
    )
