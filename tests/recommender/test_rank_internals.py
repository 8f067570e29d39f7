"""Tests of rank's fast paths: each must give exactly what the plain sparse product gives.

rank ranks identical profile rows once, takes the product over the shared terms
(against a dense copy of the papers when that is cheaper), works in blocks on a
thread pool and selects the top k by partitioning. None of that may change a
pick or a score bit: the reference here is the plain sparse product
profiles @ papers.T, thresholded and fully sorted, row by row.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse

from recommender import blocks, duplicates, ranking, scorer, topk
from recommender.ranking import RankResult, rank


def reference(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    *,
    k: int,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The specification on the plain sparse product's own scores, one row at a time."""
    scores = np.asarray((profiles @ papers.T.tocsr()).toarray())
    if scores.dtype.kind != "f":
        scores = scores.astype(np.float64)
    excluded = np.zeros(scores.shape, dtype=bool) if exclude is None else exclude.toarray() != 0
    indices = np.full((scores.shape[0], k), -1, dtype=np.int64)
    values = np.zeros((scores.shape[0], k), dtype=np.float32)
    for row in range(scores.shape[0]):
        eligible = np.flatnonzero((scores[row] > min_score) & ~excluded[row])
        # Best score first, then the lower paper index.
        best = eligible[np.lexsort((eligible, -scores[row, eligible]))][:k]
        indices[row, : len(best)] = best
        values[row, : len(best)] = scores[row, best]
    return indices, values


def assert_exactly(result: RankResult, expected: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(result.indices, expected[0])
    # Bit for bit, not approximately.
    assert result.scores.tobytes() == expected[1].astype(np.float32).tobytes()


def astuple(result: RankResult) -> tuple[np.ndarray, np.ndarray]:
    return result.indices, result.scores


def tfidf_like(
    rng: np.random.Generator, shape: tuple[int, int], density: float
) -> scipy.sparse.csr_matrix:
    """Non-negative float32 rows of unit length: real rounding, rare exact ties."""
    matrix = scipy.sparse.random(*shape, density=density, format="csr", dtype=np.float32, rng=rng)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    matrix = scipy.sparse.csr_matrix(scipy.sparse.diags(scale.astype(np.float32)) @ matrix)
    return scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def with_duplicates(
    rng: np.random.Generator, distinct: scipy.sparse.csr_matrix, n_rows: int
) -> scipy.sparse.csr_matrix:
    """n_rows rows, each a copy of a random row of `distinct`."""
    return scipy.sparse.csr_matrix(distinct[rng.integers(0, distinct.shape[0], size=n_rows)])


@pytest.fixture
def data() -> tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix]:
    rng = np.random.default_rng(7)
    # Profiles share terms with some papers only (the first 150 of 400 features
    # are the papers' vocabulary), and many subscribers share one profile.
    distinct = tfidf_like(rng, (40, 400), 0.08)
    profiles = scipy.sparse.vstack([with_duplicates(rng, distinct, 300), distinct]).tocsr()
    papers = scipy.sparse.hstack(
        [tfidf_like(rng, (120, 150), 0.1), scipy.sparse.csr_matrix((120, 250), dtype=np.float32)]
    ).tocsr()
    return profiles, papers


@pytest.mark.parametrize("k", [1, 10, 150])
@pytest.mark.parametrize("min_score", [0.0, 0.05, 0.1])
def test_rank_equals_the_plain_sparse_product(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix], k: int, min_score: float
) -> None:
    profiles, papers = data
    result = rank(profiles, papers, k=k, min_score=min_score)
    assert_exactly(result, reference(profiles, papers, k=k, min_score=min_score))


def test_dense_and_sparse_products_agree_bit_for_bit(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles, papers = data
    expected = reference(profiles, papers, k=12)
    monkeypatch.setattr(scorer, "_SPARSE_COST_FACTOR", 10**9)
    assert scorer.Scorer(profiles, papers).dense_papers is not None
    assert_exactly(rank(profiles, papers, k=12), expected)
    monkeypatch.setattr(scorer, "_DENSE_PAPERS_MAX_BYTES", 0)
    assert scorer.Scorer(profiles, papers).dense_papers is None
    assert_exactly(rank(profiles, papers, k=12), expected)


def test_duplicate_rows_are_ranked_once_with_the_same_picks(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles, papers = data
    with ThreadPoolExecutor(2) as pool:
        ranked, owner = duplicates.distinct_rows(profiles, None, pool)
    assert ranked is not None
    assert owner is not None
    dense = profiles.toarray()
    assert len(ranked) == len(np.unique(dense, axis=0))
    # Every row is owned by a ranked row equal to it.
    np.testing.assert_array_equal(dense, dense[ranked[owner]])
    merged = rank(profiles, papers, k=7, min_score=0.02)
    # Never worth it: every row is ranked on its own.
    monkeypatch.setattr(duplicates, "_DEDUP_MIN_SAVING", 2.0)
    with ThreadPoolExecutor(2) as pool:
        assert duplicates.distinct_rows(profiles, None, pool) == (None, None)
    assert_exactly(merged, astuple(rank(profiles, papers, k=7, min_score=0.02)))


def test_rows_that_exclude_papers_are_not_merged(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
) -> None:
    profiles, papers = data
    # Rows 0 and 1 hold the same profile; only row 1 has already seen its best paper.
    profiles = scipy.sparse.vstack([profiles[0], profiles[0], profiles]).tocsr()
    best = rank(profiles[:1], papers, k=1).indices[0, 0]
    assert best >= 0
    exclude = scipy.sparse.csr_matrix(
        (np.ones(1), (np.array([1]), np.array([best]))), shape=(profiles.shape[0], papers.shape[0])
    )
    result = rank(profiles, papers, k=5, exclude=exclude)
    assert_exactly(result, reference(profiles, papers, k=5, exclude=exclude))
    assert result.indices[0, 0] == best
    assert best not in result.indices[1]


def test_hash_collisions_cost_merges_not_correctness(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles, papers = data

    def every_row_collides(matrix: scipy.sparse.csr_matrix, pool: object) -> np.ndarray:
        return np.zeros(matrix.shape[0], dtype=np.uint64)

    monkeypatch.setattr(duplicates, "_row_keys", every_row_collides)
    assert_exactly(rank(profiles, papers, k=6), reference(profiles, papers, k=6))


def test_rows_with_the_same_entries_in_another_order(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
) -> None:
    profiles, papers = data
    row = profiles[0]
    reversed_row = scipy.sparse.csr_matrix(
        (row.data[::-1], row.indices[::-1], np.array([0, row.nnz])), shape=row.shape
    )
    both = scipy.sparse.vstack([row, reversed_row, row, reversed_row], format="csr")
    both = scipy.sparse.csr_matrix((both.data, both.indices, both.indptr), shape=both.shape)
    assert not both.has_sorted_indices
    assert_exactly(rank(both, papers, k=10), reference(both, papers, k=10))


def test_block_sizes_and_threads_do_not_change_the_result(
    data: tuple[scipy.sparse.csr_matrix, scipy.sparse.csr_matrix],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profiles, papers = data
    expected = reference(profiles, papers, k=9, min_score=0.03)
    # Threads even for this small input.
    monkeypatch.setattr(ranking, "_PARALLEL_CELLS", 0)
    for block_bytes, block_nnz, workers in [(1, 1, 1), (4096, 7, 3), (10**9, 10**9, 2)]:
        monkeypatch.setattr(ranking, "_BLOCK_BYTES", block_bytes)
        monkeypatch.setattr(blocks, "BLOCK_NNZ", block_nnz)
        monkeypatch.setattr(ranking, "_MAX_WORKERS", workers)
        assert_exactly(rank(profiles, papers, k=9, min_score=0.03), expected)


@pytest.mark.parametrize(
    ("profile_dtype", "paper_dtype"), [(np.float64, np.float32), (np.int64, np.int64)]
)
def test_other_dtypes_rank_as_their_plain_product(profile_dtype: type, paper_dtype: type) -> None:
    rng = np.random.default_rng(5)
    profiles = scipy.sparse.random(50, 30, density=0.2, format="csr", rng=rng)
    profiles.data = np.ceil(profiles.data * 3)
    papers = scipy.sparse.random(40, 30, density=0.2, format="csr", rng=rng)
    papers.data = np.ceil(papers.data * 3)
    profiles = profiles.astype(profile_dtype)
    papers = papers.astype(paper_dtype)
    assert_exactly(rank(profiles, papers, k=4), reference(profiles, papers, k=4))


def test_boolean_input_ranks_as_before() -> None:
    # A boolean product says "shares a term", 1.0, whatever the number of terms.
    profiles = scipy.sparse.csr_matrix(np.array([[1, 1, 0], [0, 0, 1]], dtype=bool))
    papers = scipy.sparse.csr_matrix(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool))
    result = rank(profiles, papers, k=3)
    assert result.indices.tolist() == [[0, 1, -1], [2, -1, -1]]
    assert result.scores.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("min_score", [0.0, 0.1, 0.3, np.float64(0.1), np.float32(0.1), 1e-45])
def test_smallest_above_agrees_with_the_comparison(dtype: type, min_score: float) -> None:
    floor = topk._smallest_above(min_score, np.dtype(dtype))
    assert floor.dtype == dtype
    below = np.nextafter(floor, dtype(-np.inf))
    assert np.array([floor], dtype=dtype) > min_score
    assert not np.array([below], dtype=dtype) > min_score


def test_a_score_equal_to_min_score_is_not_picked() -> None:
    profiles = scipy.sparse.csr_matrix(np.array([[1.0]], dtype=np.float32))
    papers = scipy.sparse.csr_matrix(np.array([[0.1], [0.2], [0.3]], dtype=np.float32))
    # float32(0.1) is not above 0.1 as numpy compares them, so it is dropped.
    assert rank(profiles, papers, k=3, min_score=0.1).indices.tolist() == [[2, 1, -1]]


def test_ties_at_the_kth_score_go_to_the_lower_paper_in_every_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    # Dyadic values: exact sums, so many real ties at and around the k-th score.
    profiles = scipy.sparse.random(
        200,
        16,
        density=0.3,
        format="csr",
        dtype=np.float32,
        rng=rng,
        data_rvs=lambda size: rng.choice([0.25, 0.5, 1.0], size=size),
    )
    papers = scipy.sparse.random(
        300,
        16,
        density=0.3,
        format="csr",
        dtype=np.float32,
        rng=rng,
        data_rvs=lambda size: rng.choice([0.25, 0.5, 1.0], size=size),
    )
    monkeypatch.setattr(ranking, "_BLOCK_BYTES", 300 * 4 * 17)
    for k in (1, 5, 40):
        assert_exactly(rank(profiles, papers, k=k), reference(profiles, papers, k=k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kth_largest_is_exact_when_positive_and_not_positive_otherwise(dtype: type) -> None:
    rng = np.random.default_rng(11)
    not_positive = np.array([0.0, -0.0, -np.inf, -1.5, -1e-30])
    positive = np.array([1e-30, 0.25, 0.5, 2.0, np.inf])
    # Rows from all but non-positive to all but positive.
    share = np.linspace(0.0, 1.0, 500)[:, None]
    scores = np.where(
        rng.random((500, 30)) < share,
        rng.choice(positive, size=(500, 30)),
        rng.choice(not_positive, size=(500, 30)),
    ).astype(dtype)
    for k in (1, 3, 10, 29):
        expected = np.partition(scores, 30 - k, axis=1)[:, 30 - k]
        found = topk._kth_largest(scores, k)
        assert found.dtype == dtype
        exact = expected > 0
        assert 0 < exact.sum() < len(exact)
        np.testing.assert_array_equal(found[exact], expected[exact])
        assert (found[~exact] <= 0).all()
