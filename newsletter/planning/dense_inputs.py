"""The dense half of an edition: subscribers' profiles in embedding space (topics,
keywords and decayed feedback, plus a per-subscriber logistic regression for readers
with enough likes) and the candidate papers' vectors, for the hybrid ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Paper
from newsletter.papers.embeddings import paper_matrix, semantic_enabled, stored_vectors
from newsletter.planning.profile_vectors import Ratings, interest_index
from newsletter.planning.readers import Reader
from recommender import FeedbackWeights, decay, semantic
from recommender.linear import LinearOptions, personalise
from recommender.whitening import Whitening, fit_whitening, whiten


@dataclass(frozen=True)
class DenseInputs:
    """The dense half of an edition: one row per subscriber, one per candidate paper.
    ``raw_profiles`` and ``raw_papers`` are the same without whitening and without the
    per-subscriber model: what a pick's evidence, held against the minimum score, is
    measured on (``recommender.evidence``)."""

    profiles: npt.NDArray[np.float32]
    papers: npt.NDArray[np.float32]
    raw_profiles: npt.NDArray[np.float32]
    raw_papers: npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class DensePapers:
    """The edition's half of the dense inputs, computed once per edition: the
    candidates' vectors (whitened), the whitening fitted on them (every vector a
    profile is built from goes through it too) and the encoder the profiles are
    embedded with; ``raw``: the candidates' vectors as embedded (for the evidence)."""

    vectors: npt.NDArray[np.float32]
    raw: npt.NDArray[np.float32]
    encoder: semantic.Encoder
    whitening: Whitening | None


def dense_papers(
    session: Session, papers: Sequence[Paper], *, setting: bool | None
) -> DensePapers | None:
    """The candidates' dense vectors, or None to rank with TF-IDF alone.

    ``setting`` None (the default): semantic when the extra is installed and the
    candidates were embedded at ingest (any missing ones are then computed here);
    True: always (computing every missing vector); False: never.
    """
    if not semantic_enabled(setting) or not papers:
        return None
    if setting is None and not stored_vectors(session, [p.id for p in papers]):
        # Nothing was embedded at ingest (papers from before the extra was installed):
        # TF-IDF alone, rather than embedding a whole window while planning.
        return None
    vectors = paper_matrix(session, papers)
    whitening = fit_whitening(vectors)
    return DensePapers(whiten(whitening, vectors), vectors, semantic.load_encoder(), whitening)


def edition_inputs(
    session: Session,
    subscribers: Sequence[Reader],
    papers: Sequence[Paper],
    *,
    ratings: Ratings,
    today: date,
    weights: FeedbackWeights,
    setting: bool | None,
    linear: LinearOptions | None = LinearOptions(),  # noqa: B008 - frozen dataclass
) -> DenseInputs | None:
    """Dense profiles and paper vectors for planning, or None to rank with TF-IDF alone
    (``setting``: see ``dense_papers``; ``linear``: see ``dense_profiles``)."""
    edition = dense_papers(session, papers, setting=setting)
    if edition is None:
        return None
    return dense_profiles(
        session, subscribers, edition, ratings=ratings, today=today, weights=weights, linear=linear
    )


def dense_profiles(
    session: Session,
    subscribers: Sequence[Reader],
    edition: DensePapers,
    *,
    ratings: Ratings,
    today: date,
    weights: FeedbackWeights,
    linear: LinearOptions | None = LinearOptions(),  # noqa: B008 - frozen dataclass
) -> DenseInputs:
    """The subscribers' dense profiles against the edition's candidates. ``linear``:
    subscribers with enough "more like this" get a per-subscriber logistic regression
    (the candidates as background negatives) blended into their profile; None: never.
    """
    paper_vectors = edition.vectors
    encoder = edition.encoder
    index = interest_index(session, subscribers)
    feedback = semantic.FeedbackEvents.empty()
    rated_vectors = raw_rated = None
    if ratings.events:
        rated_ids = sorted({paper for _, paper, _, _ in ratings.events})
        rated = list(session.scalars(select(Paper).where(Paper.id.in_(rated_ids))))
        raw_rated = paper_matrix(session, rated)
        rated_vectors = whiten(edition.whitening, raw_rated)
        column = {p.id: i for i, p in enumerate(rated)}
        events = [e for e in ratings.events if e[1] in column]
        feedback = semantic.FeedbackEvents(
            rows=np.array([r for r, _, _, _ in events], dtype=np.int64),
            cols=np.array([column[p] for _, p, _, _ in events], dtype=np.int64),
            values=np.array([v for _, _, v, _ in events], dtype=np.float64),
            ages_days=np.array(
                [max((today - when.date()).days, 0) for _, _, _, when in events], dtype=np.float64
            ),
        )
    interest_vectors = encoder.encode_interests(index.texts)

    def build(
        interests: npt.NDArray[np.float32], rated_papers: npt.NDArray[np.float32] | None
    ) -> npt.NDArray[np.float32]:
        return semantic.dense_profiles(
            interests,
            rows=np.array(index.rows, dtype=np.int64),
            cols=np.array(index.cols, dtype=np.int64),
            weights=np.array(index.weights, dtype=np.float32),
            n_profiles=len(subscribers),
            paper_vectors=rated_papers,
            feedback=feedback,
            feedback_weights=weights,
        )

    profiles = build(whiten(edition.whitening, interest_vectors), rated_vectors)
    raw_profiles = build(interest_vectors, raw_rated)
    if linear is not None and rated_vectors is not None and feedback.rows.size:
        profiles = personalise(
            profiles,
            feedback,
            event_weights=decay(feedback.ages_days, half_life_days=weights.half_life_days),
            rated_vectors=rated_vectors,
            candidates=paper_vectors,
            options=linear,
        )
    return DenseInputs(
        profiles=profiles,
        papers=paper_vectors,
        raw_profiles=raw_profiles,
        raw_papers=edition.raw,
    )
