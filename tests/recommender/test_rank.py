"""Tests of rank: top-k against a brute-force dense computation, and edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse

from recommender import RankResult, rank


def random_sparse(
    rng: np.random.Generator, shape: tuple[int, int], density: float
) -> scipy.sparse.csr_matrix:
    """Sparse values that are small multiples of 1/4, some negative.

    Dyadic values keep every dot product exact in float32, so the brute force
    and the sparse product agree bit for bit and ties are real ties.
    """
    matrix = scipy.sparse.random(
        *shape,
        density=density,
        format="csr",
        dtype=np.float32,
        rng=rng,
        data_rvs=lambda size: rng.choice([-0.5, -0.25, 0.25, 0.5, 0.75, 1.0], size=size),
    )
    return scipy.sparse.csr_matrix(matrix)


def brute_force(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    *,
    k: int,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The specification, spelled out one row at a time with a full sort."""
    scores = profiles.toarray().astype(np.float64) @ papers.toarray().astype(np.float64).T
    excluded = np.zeros(scores.shape, dtype=bool) if exclude is None else exclude.toarray() != 0
    indices = np.full((scores.shape[0], k), -1, dtype=np.int64)
    values = np.zeros((scores.shape[0], k), dtype=np.float32)
    for row in range(scores.shape[0]):
        candidates = [
            j
            for j in range(scores.shape[1])
            if scores[row, j] > min_score and scores[row, j] != 0 and not excluded[row, j]
        ]
        best = sorted(candidates, key=lambda j: (-scores[row, j], j))[:k]
        indices[row, : len(best)] = best
        values[row, : len(best)] = scores[row, best]
    return indices, values


def assert_matches_brute_force(result: RankResult, expected: tuple[np.ndarray, np.ndarray]) -> None:
    assert result.indices.dtype == np.int64
    assert result.scores.dtype == np.float32
    np.testing.assert_array_equal(result.indices, expected[0])
    np.testing.assert_array_equal(result.scores, expected[1])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_k_matches_brute_force(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    # Few features and coarse values: many exact ties, broken by paper index.
    profiles = random_sparse(rng, (37, 12), 0.3)
    papers = random_sparse(rng, (25, 12), 0.3)
    result = rank(profiles, papers, k=k)
    assert result.indices.shape == (37, k)
    assert_matches_brute_force(result, brute_force(profiles, papers, k=k))


def test_random_data_really_has_ties() -> None:
    # Guards the test above: without ties it would not exercise tie-breaking.
    rng = np.random.default_rng(0)
    scores = (random_sparse(rng, (37, 12), 0.3) @ random_sparse(rng, (25, 12), 0.3).T).toarray()
    positive_ties = sum(len(row[row > 0]) - len(np.unique(row[row > 0])) for row in scores)
    assert positive_ties > 50


@pytest.mark.parametrize("seed", range(4))
def test_exclusions_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    profiles = random_sparse(rng, (30, 10), 0.35)
    papers = random_sparse(rng, (20, 10), 0.35)
    exclude = scipy.sparse.random(30, 20, density=0.3, format="csr", rng=rng).astype(bool)
    result = rank(profiles, papers, k=5, exclude=exclude)
    assert_matches_brute_force(result, brute_force(profiles, papers, k=5, exclude=exclude))
    picked = result.indices >= 0
    rows = np.nonzero(picked)[0]
    assert not exclude.toarray()[rows, result.indices[picked]].any()


def test_excluding_the_best_paper_promotes_the_next() -> None:
    profiles = scipy.sparse.csr_matrix(np.array([[1.0, 0.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(np.array([[0.9, 0], [0.5, 0], [0.7, 0]], dtype=np.float32))
    exclude = scipy.sparse.csr_matrix(np.array([[1, 0, 0]], dtype=bool))
    assert rank(profiles, papers, k=2).indices.tolist() == [[0, 2]]
    assert rank(profiles, papers, k=2, exclude=exclude).indices.tolist() == [[2, 1]]


def test_stored_zeros_in_exclude_do_not_exclude() -> None:
    profiles = scipy.sparse.csr_matrix(np.array([[1.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(np.array([[0.5], [0.25]], dtype=np.float32))
    exclude = scipy.sparse.csr_matrix((np.array([0.0]), np.array([0]), np.array([0, 1])), (1, 2))
    assert exclude.nnz == 1
    assert rank(profiles, papers, k=2, exclude=exclude).indices.tolist() == [[0, 1]]


@pytest.mark.parametrize("min_score", [0.0, 0.25, 0.5, 1.0])
def test_min_score_matches_brute_force(min_score: float) -> None:
    rng = np.random.default_rng(11)
    profiles = random_sparse(rng, (30, 10), 0.4)
    papers = random_sparse(rng, (20, 10), 0.4)
    result = rank(profiles, papers, k=8, min_score=min_score)
    assert_matches_brute_force(result, brute_force(profiles, papers, k=8, min_score=min_score))
    assert (result.scores[result.indices >= 0] > min_score).all()
    # The threshold is strict: a paper scoring exactly min_score is dropped.
    if min_score > 0:
        assert (result.indices == -1).sum() > (rank(profiles, papers, k=8).indices == -1).sum()


def test_zero_and_negative_scores_are_never_picked() -> None:
    profiles = scipy.sparse.csr_matrix(np.array([[1.0, 0.0, 0.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(
        np.array([[0.0, 1.0, 0.0], [-0.5, 0.0, 1.0], [0.25, 0.0, 0.0]], dtype=np.float32)
    )
    result = rank(profiles, papers, k=3)
    assert result.indices.tolist() == [[2, -1, -1]]
    assert result.scores.tolist() == [[0.25, 0.0, 0.0]]
    assert result.picks(0) == [(2, 0.25)]


def test_k_larger_than_the_number_of_papers_pads_with_minus_one() -> None:
    rng = np.random.default_rng(5)
    profiles = random_sparse(rng, (8, 6), 0.5)
    papers = random_sparse(rng, (4, 6), 0.5)
    result = rank(profiles, papers, k=9)
    assert result.indices.shape == result.scores.shape == (8, 9)
    assert (result.indices[:, 4:] == -1).all()
    assert (result.scores[result.indices == -1] == 0).all()
    assert_matches_brute_force(result, brute_force(profiles, papers, k=9))


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 64, 10_000])
def test_chunking_does_not_change_the_result(chunk_size: int) -> None:
    rng = np.random.default_rng(21)
    profiles = random_sparse(rng, (64, 15), 0.3)
    papers = random_sparse(rng, (40, 15), 0.3)
    exclude = scipy.sparse.random(64, 40, density=0.1, format="csr", rng=rng)
    whole = rank(profiles, papers, k=6, exclude=exclude, min_score=0.25, chunk_size=64)
    chunked = rank(profiles, papers, k=6, exclude=exclude, min_score=0.25, chunk_size=chunk_size)
    np.testing.assert_array_equal(chunked.indices, whole.indices)
    np.testing.assert_array_equal(chunked.scores, whole.scores)
    assert_matches_brute_force(
        chunked, brute_force(profiles, papers, k=6, exclude=exclude, min_score=0.25)
    )


def test_same_inputs_give_the_same_result() -> None:
    rng = np.random.default_rng(3)
    profiles = random_sparse(rng, (50, 8), 0.4)
    papers = random_sparse(rng, (30, 8), 0.4)
    first = rank(profiles, papers, k=5)
    for _ in range(3):
        again = rank(profiles.copy(), papers.copy(), k=5)
        np.testing.assert_array_equal(again.indices, first.indices)
        np.testing.assert_array_equal(again.scores, first.scores)


def test_ties_go_to_the_lower_paper_index() -> None:
    profiles = scipy.sparse.csr_matrix(np.array([[1.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(np.full((6, 1), 0.5, dtype=np.float32))
    assert rank(profiles, papers, k=3).indices.tolist() == [[0, 1, 2]]
    papers = scipy.sparse.csr_matrix(
        np.array([[0.5], [0.25], [0.5], [0.75], [0.5]], dtype=np.float32)
    )
    assert rank(profiles, papers, k=3).indices.tolist() == [[3, 0, 2]]


def test_no_papers_gives_empty_rows() -> None:
    profiles = scipy.sparse.csr_matrix(np.ones((3, 4), dtype=np.float32))
    papers = scipy.sparse.csr_matrix((0, 4), dtype=np.float32)
    result = rank(profiles, papers, k=5)
    assert result.indices.shape == (3, 5)
    assert (result.indices == -1).all()
    assert (result.scores == 0).all()
    assert result.picks(2) == []


def test_no_profiles_gives_no_rows() -> None:
    profiles = scipy.sparse.csr_matrix((0, 4), dtype=np.float32)
    papers = scipy.sparse.csr_matrix(np.ones((3, 4), dtype=np.float32))
    result = rank(profiles, papers, k=2)
    assert result.indices.shape == result.scores.shape == (0, 2)
    empty = rank(profiles, scipy.sparse.csr_matrix((0, 4), dtype=np.float32), k=2)
    assert empty.indices.shape == (0, 2)


def test_float64_and_other_sparse_formats_are_accepted() -> None:
    rng = np.random.default_rng(8)
    profiles = random_sparse(rng, (10, 6), 0.5)
    papers = random_sparse(rng, (7, 6), 0.5)
    expected = rank(profiles, papers, k=3)
    result = rank(profiles.astype(np.float64).tocoo(), papers.tocsc(), k=3)
    np.testing.assert_array_equal(result.indices, expected.indices)
    assert result.scores.dtype == np.float32
    np.testing.assert_array_equal(result.scores, expected.scores)


def test_picks_lists_the_valid_pairs_best_first() -> None:
    result = RankResult(
        indices=np.array([[4, 1, -1], [-1, -1, -1]], dtype=np.int64),
        scores=np.array([[0.5, 0.25, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32),
    )
    assert result.picks(0) == [(4, 0.5), (1, 0.25)]
    assert all(type(i) is int and type(s) is float for i, s in result.picks(0))
    assert result.picks(1) == []


def test_rank_result_rejects_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="same shape"):
        RankResult(indices=np.zeros((2, 3), dtype=np.int64), scores=np.zeros((2, 2), np.float32))


_GOOD = scipy.sparse.csr_matrix(np.eye(3, dtype=np.float32))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"papers": scipy.sparse.csr_matrix(np.eye(4, dtype=np.float32))}, "features"),
        ({"k": 0}, "k must be at least 1"),
        ({"chunk_size": 0}, "chunk_size must be at least 1"),
        ({"min_score": -0.1}, "min_score"),
        ({"min_score": float("nan")}, "min_score"),
        ({"exclude": scipy.sparse.csr_matrix((3, 4), dtype=bool)}, "exclude must have shape"),
        ({"profiles": np.eye(3, dtype=np.float32)}, "profiles must be a scipy sparse matrix"),
        ({"papers": scipy.sparse.csr_matrix(np.diag([1.0, np.nan, 1.0]))}, "finite"),
    ],
)
def test_invalid_input_is_rejected(arguments: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {"profiles": _GOOD, "papers": _GOOD, "k": 2} | arguments
    with pytest.raises(ValueError, match=message):
        rank(**call)
