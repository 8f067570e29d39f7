"""Hybrid ranking, dense profiles and per-subscriber linear models: plain numpy, no model."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import numpy.typing as npt
import pytest
import scipy.sparse

from recommender import FeedbackWeights, hybrid
from recommender.hybrid import HybridWeights, neighbour_density, rank_hybrid
from recommender.linear import LinearOptions, blend_profiles, fit_directions
from recommender.semantic import FeedbackEvents, dense_profiles, from_bytes, normalise, to_bytes


def _unit(rng: np.random.Generator, n: int, d: int) -> npt.NDArray[np.float32]:
    return normalise(rng.standard_normal((n, d)).astype(np.float32))


def _brute(
    sparse_scores: npt.NDArray[np.float32],
    dense_scores: npt.NDArray[np.float32],
    weights: HybridWeights,
    k: int,
    exclude: npt.NDArray[np.bool_],
) -> list[list[int]]:
    scores = weights.tfidf * sparse_scores + weights.dense * dense_scores
    scores = np.where(exclude, -np.inf, scores)
    picks = []
    for row in scores:
        order = np.argsort(-row, kind="stable")
        picks.append([int(i) for i in order[:k] if row[i] > 0])
    return picks


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_hybrid_matches_brute_force_with_duplicates_and_exclusions(dtype: type) -> None:
    rng = np.random.default_rng(1)
    n_papers, k = 40, 5
    base = scipy.sparse.random(6, 30, density=0.3, random_state=2, dtype=np.float32, format="csr")
    # 300 profiles drawn from 6 distinct TF-IDF rows: most are duplicates.
    which = rng.integers(0, 6, size=300)
    profiles = scipy.sparse.csr_matrix(base[which])
    papers = scipy.sparse.csr_matrix(
        scipy.sparse.random(n_papers, 30, density=0.3, random_state=3, dtype=np.float32)
    )
    dense_base = _unit(rng, 6, 8)
    dense = dense_base[which].astype(dtype)
    dense[:20] = _unit(rng, 20, 8).astype(dtype)  # same TF-IDF row, another dense row
    dense_papers = _unit(rng, n_papers, 8)
    exclude = np.zeros((300, n_papers), dtype=bool)
    exclude[rng.integers(0, 300, 30), rng.integers(0, n_papers, 30)] = True
    weights = HybridWeights(tfidf=1.0, dense=0.7)
    result = rank_hybrid(
        profiles,
        papers,
        dense,
        dense_papers,
        k=k,
        weights=weights,
        exclude=scipy.sparse.csr_matrix(exclude),
        chunk_size=7,
    )
    expected = _brute(
        (profiles @ papers.T).toarray().astype(np.float32),
        dense.astype(np.float32) @ dense_papers.T,
        weights,
        k,
        exclude,
    )
    assert [[i for i, _ in result.picks(row)] for row in range(300)] == expected


def test_hybrid_without_dense_weight_is_tfidf() -> None:
    rng = np.random.default_rng(4)
    profiles = scipy.sparse.random(50, 20, density=0.3, random_state=5, format="csr")
    papers = scipy.sparse.random(30, 20, density=0.3, random_state=6, format="csr")
    result = rank_hybrid(
        profiles.astype(np.float32),
        papers.astype(np.float32),
        _unit(rng, 50, 4),
        _unit(rng, 30, 4),
        k=3,
        weights=HybridWeights(tfidf=1.0, dense=0.0),
    )
    scores = (profiles @ papers.T).toarray()
    for row in range(50):
        best = [i for i in np.argsort(-scores[row], kind="stable")[:3] if scores[row, i] > 0]
        assert [i for i, _ in result.picks(row)] == best


def test_rank_hybrid_refuses_mismatched_shapes() -> None:
    profiles = scipy.sparse.csr_matrix((3, 5), dtype=np.float32)
    papers = scipy.sparse.csr_matrix((4, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="dense rows must match"):
        rank_hybrid(profiles, papers, np.zeros((2, 8)), np.zeros((4, 8)), k=2)
    with pytest.raises(ValueError, match="non-negative"):
        HybridWeights(dense=-1.0)
    with pytest.raises(ValueError, match="dense_density"):
        HybridWeights(dense_density=-0.1)


def test_float16_bytes_round_trip() -> None:
    vectors = _unit(np.random.default_rng(7), 3, 384)
    blobs = [to_bytes(v) for v in vectors]
    assert {len(b) for b in blobs} == {768}
    back = from_bytes(blobs)
    np.testing.assert_allclose(back, vectors, atol=1e-3)
    assert [to_bytes(v) for v in back] == blobs


def test_dense_profiles_follow_liked_and_flee_disliked() -> None:
    rng = np.random.default_rng(8)
    topic = _unit(rng, 1, 16)
    papers = _unit(rng, 2, 16)
    plain = dense_profiles(topic, rows=[0, 1], cols=[0, 0], weights=[1.0, 1.0], n_profiles=2)
    rated = dense_profiles(
        topic,
        rows=[0, 1],
        cols=[0, 0],
        weights=[1.0, 1.0],
        n_profiles=2,
        paper_vectors=papers,
        feedback=FeedbackEvents(
            rows=np.array([0, 1]),
            cols=np.array([0, 0]),
            values=np.array([1.0, -1.0]),
            ages_days=np.array([0.0, 0.0]),
        ),
        feedback_weights=FeedbackWeights(),
    )
    np.testing.assert_allclose(np.linalg.norm(rated, axis=1), 1.0, atol=1e-5)
    assert rated[0] @ papers[0] > plain[0] @ papers[0] > rated[1] @ papers[0]


def test_linear_models_separate_each_subscribers_liked_papers_from_the_background() -> None:
    rng = np.random.default_rng(9)
    centres = _unit(rng, 3, 32)
    # 30 papers around each of three centres; each subscriber likes 6 of one cluster.
    clusters = np.repeat(np.arange(3), 30)
    papers = normalise(centres[clusters] + 0.6 * rng.standard_normal((90, 32)) / np.sqrt(32))
    rows = np.repeat(np.arange(4), 6)
    liked_cluster = np.array([0, 1, 2, 0])
    cols = np.concatenate([np.flatnonzero(clusters == c)[:6] for c in liked_cluster])
    liked = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(5, 90))
    none = scipy.sparse.csr_matrix((5, 90))
    directions, eligible = fit_directions(liked, none, papers, papers, options=LinearOptions())
    assert eligible.tolist() == [True, True, True, True, False]
    assert not directions[4].any()
    unseen = np.setdiff1d(np.arange(90), cols)
    for row, cluster in enumerate(liked_cluster):
        scores = papers[unseen] @ directions[row]
        top = unseen[np.argsort(-scores)[:10]]
        assert (clusters[top] == cluster).all()
    rocchio = _unit(rng, 5, 32)
    blended = blend_profiles(rocchio, directions, eligible, blend=0.5)
    np.testing.assert_array_equal(blended[4], rocchio[4])
    np.testing.assert_allclose(np.linalg.norm(blended, axis=1), 1.0, atol=1e-5)


def _crowd_and_loners(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """60 near-duplicates of one paper (a crowded region) and 40 papers spread at random."""
    centre = _unit(rng, 1, 32)
    crowd = normalise(centre + 0.1 * rng.standard_normal((60, 32)).astype(np.float32))
    return np.vstack([crowd, _unit(rng, 40, 32)])


def test_neighbour_density_is_the_mean_cosine_of_the_nearest_share_less_the_average() -> None:
    papers = _crowd_and_loners(np.random.default_rng(11))
    density = neighbour_density(papers, share=0.05)
    cosines = papers @ papers.T
    np.fill_diagonal(cosines, -np.inf)
    nearest = np.sort(cosines, axis=1)[:, -5:].mean(axis=1)  # 5% of 100 papers
    np.testing.assert_allclose(density, nearest - nearest.mean(), atol=1e-5)
    assert abs(density.mean()) < 1e-9
    # The near-duplicates sit in the crowd, the random papers alone.
    assert density[:60].min() > density[60:].max()


def test_neighbour_density_is_the_same_a_block_of_rows_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    papers = _crowd_and_loners(np.random.default_rng(12))
    whole = neighbour_density(papers)
    # Seven rows of cosines a block (the papers are float32: 4 bytes a cosine).
    monkeypatch.setattr(hybrid, "_DENSITY_BLOCK_BYTES", 7 * len(papers) * 4)
    monkeypatch.setattr(hybrid, "_density_cache", OrderedDict())  # computed again
    np.testing.assert_allclose(neighbour_density(papers), whole, atol=1e-6)


def test_neighbour_density_is_kept_by_content_and_handed_out_as_a_copy() -> None:
    papers = _crowd_and_loners(np.random.default_rng(14))
    first = neighbour_density(papers)
    first[:] = -1.0  # the caller's copy, not the kept one
    again = neighbour_density(papers.copy())
    assert again.max() > 0.0
    # Other papers (one vector moved) are not served the kept result.
    moved = papers.copy()
    moved[60:] = papers[0]  # the loners join the crowd
    assert not np.allclose(neighbour_density(moved), again)


def test_the_density_term_lowers_crowded_papers_raises_loners_and_leaves_empty_profiles_empty() -> (
    None
):
    rng = np.random.default_rng(13)
    dense_papers = _crowd_and_loners(rng)
    n_papers = len(dense_papers)
    papers = scipy.sparse.csr_matrix((n_papers, 10), dtype=np.float32)
    # Profiles: each the midpoint of a crowded paper and a loner (the same cosine to
    # both), and one profile with no interests at all.
    pairs = [(i, 60 + i) for i in range(10)]
    dense = np.vstack([normalise(dense_papers[[a]] + dense_papers[[b]]) for a, b in pairs])
    dense = np.vstack([dense, np.zeros((1, 32), dtype=np.float32)])
    profiles = scipy.sparse.csr_matrix((len(dense), 10), dtype=np.float32)
    plain = HybridWeights(tfidf_background=0.0, dense_background=0.0, dense_density=0.0)
    with_density = HybridWeights(tfidf_background=0.0, dense_background=0.0)
    before = rank_hybrid(profiles, papers, dense, dense_papers, k=n_papers, weights=plain)
    after = rank_hybrid(profiles, papers, dense, dense_papers, k=n_papers, weights=with_density)
    expected = with_density.dense * (dense @ dense_papers.T) - (
        with_density.dense_density * neighbour_density(dense_papers)
    )
    for row, (crowded, loner) in enumerate(pairs):
        got, plain_scores = dict(after.picks(row)), dict(before.picks(row))
        for paper, score in got.items():
            assert score == pytest.approx(expected[row, paper], abs=1e-5)
        assert got[crowded] < plain_scores[crowded]
        assert got[loner] > plain_scores[loner]
        # Tied on the cosine, the loner now comes first.
        order = [paper for paper, _ in after.picks(row)]
        assert order.index(loner) < order.index(crowded)
    # No interests at all: no picks, although isolated papers now score above 0 for it.
    assert after.picks(len(pairs)) == []
    assert (expected[len(pairs)] > 0).any()
