"""Cold start from a reader's own papers (issue 16): the per-subscriber model from the
first seed, and the hybrid's defaults ranking the seeds' topic first. Plain numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse

from recommender.hybrid import HybridWeights, background_penalty, rank_hybrid
from recommender.linear import LinearOptions, personalise
from recommender.semantic import FeedbackEvents, dense_profiles, normalise

N_TOPICS, PER_TOPIC, DIM = 4, 40, 48


def _corpus(seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Papers scattered around four topic centres (unit rows), and each one's topic."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((N_TOPICS, DIM)))
    topics = np.repeat(np.arange(N_TOPICS), PER_TOPIC)
    noise = rng.standard_normal((len(topics), DIM)) / np.sqrt(DIM)
    return normalise(centres[topics] + 1.1 * noise), topics


def _seeded_profiles(
    papers: npt.NDArray[np.float32], seeds: list[npt.NDArray[np.int64]]
) -> npt.NDArray[np.float32]:
    """Dense profiles of readers who gave only seeds (no topics), as planning builds them."""
    rows = np.concatenate([np.full(len(s), r) for r, s in enumerate(seeds)]).astype(np.int64)
    events = FeedbackEvents(
        rows=rows,
        cols=np.concatenate(seeds).astype(np.int64),
        values=np.ones(len(rows)),
        ages_days=np.zeros(len(rows)),
    )
    rocchio = dense_profiles(
        np.zeros((0, DIM), dtype=np.float32),
        rows=[],
        cols=[],
        weights=[],
        n_profiles=len(seeds),
        paper_vectors=papers,
        feedback=events,
    )
    return personalise(
        rocchio,
        events,
        event_weights=np.ones(len(rows)),
        rated_vectors=papers,
        candidates=papers,
        options=LinearOptions(),
    )


def test_the_per_subscriber_model_is_fitted_from_the_first_seed() -> None:
    papers, _ = _corpus(3)
    seed = np.array([0])
    rocchio = normalise(papers[seed])
    profiles = _seeded_profiles(papers, [seed])
    # With one seed the fitted direction already moves the profile off the seed itself.
    assert LinearOptions().min_liked == 1
    assert not np.allclose(profiles[0], rocchio[0], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(profiles, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("n_seeds", [1, 3, 10])
def test_cold_start_ranks_the_seeds_topic_first(n_seeds: int) -> None:
    papers, topics = _corpus(5)
    # One reader per topic, seeded with their topic's first n papers.
    seeds = [np.flatnonzero(topics == t)[:n_seeds] for t in range(N_TOPICS)]
    dense = _seeded_profiles(papers, seeds)
    liked = scipy.sparse.csr_matrix(
        (
            np.ones(N_TOPICS * n_seeds),
            (np.repeat(np.arange(N_TOPICS), n_seeds), np.concatenate(seeds)),
        ),
        shape=(N_TOPICS, len(papers)),
    )
    # No TF-IDF evidence at all: the dense part alone must carry the cold start.
    empty = scipy.sparse.csr_matrix((N_TOPICS, 5), dtype=np.float32)
    result = rank_hybrid(
        empty,
        scipy.sparse.csr_matrix((len(papers), 5), dtype=np.float32),
        dense,
        papers,
        k=10,
        weights=HybridWeights(),
        exclude=liked,
    )
    for reader in range(N_TOPICS):
        picked = [i for i, _ in result.picks(reader)]
        assert len(picked) == 10
        assert not set(picked) & set(seeds[reader].tolist())
        # At least 9 of the 10 picks are from the seeds' topic (the noise is wide).
        assert np.count_nonzero(topics[picked] == reader) >= 9


def test_the_background_penalty_pushes_down_generic_papers_only() -> None:
    rng = np.random.default_rng(7)
    # 60 papers: 59 near one common direction, and a generic paper (index 0) right on it.
    common = normalise(rng.standard_normal((1, DIM)))[0]
    papers = normalise(common + 0.9 * rng.standard_normal((60, DIM)) / np.sqrt(DIM))
    papers[0] = common
    penalty = background_penalty(
        scipy.sparse.csr_matrix((60, 3), dtype=np.float32),
        papers,
        # The background alone (the density term can raise a score: test_hybrid.py).
        HybridWeights(tfidf_background=0.0, dense_background=0.5, dense_density=0.0),
    )
    assert penalty is not None
    assert penalty.max() == 0.0  # it never raises a score
    assert penalty[0] == penalty.min() < 0  # the most generic paper is pushed down most
    # Too few papers to have a background: no penalty at all.
    assert (
        background_penalty(
            scipy.sparse.csr_matrix((10, 3), dtype=np.float32), papers[:10], HybridWeights()
        )
        is None
    )


def test_a_profile_with_no_interests_still_picks_nothing_with_the_penalty() -> None:
    papers, _ = _corpus(11)
    n = len(papers)
    result = rank_hybrid(
        scipy.sparse.csr_matrix((2, 5), dtype=np.float32),
        scipy.sparse.csr_matrix((n, 5), dtype=np.float32),
        np.vstack([np.zeros(DIM), papers[0]]).astype(np.float32),
        papers,
        k=5,
        weights=HybridWeights(),
    )
    assert result.picks(0) == []
    assert result.picks(1)[0][0] == 0
