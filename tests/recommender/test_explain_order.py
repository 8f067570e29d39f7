"""explain()'s order does not depend on how the vectors are stored: equal contributions
fall back on the feature index whatever the order of a row's stored entries, and
float32 (sorted on one packed key) and float64 vectors (sorted on three keys) name the
same terms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from recommender import RankResult, explain

NAMES = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])


def shuffled_storage(dense: list[list[float]], dtype: type) -> scipy.sparse.csr_matrix:
    """A CSR matrix whose rows store their entries in no column order (as a fitted
    TF-IDF vectoriser's rows come)."""
    matrix = scipy.sparse.csr_matrix(np.array(dense, dtype=dtype))
    rng = np.random.default_rng(3)
    for row in range(matrix.shape[0]):
        start, stop = matrix.indptr[row], matrix.indptr[row + 1]
        order = start + rng.permutation(stop - start)
        matrix.indices[start:stop] = matrix.indices[order]
        matrix.data[start:stop] = matrix.data[order]
    matrix.has_sorted_indices = False
    return matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_follow_the_feature_index_whatever_the_storage_order(dtype: type) -> None:
    # Paper 0: beta, gamma, delta, epsilon tie; paper 1: zeta beats alpha, then a tie.
    profiles = shuffled_storage([[0.5, 0.5, 0.5, 0.5, 0.5, 0.9]] * 2, dtype)
    papers = shuffled_storage(
        [[0.0, 0.5, 0.5, 0.5, 0.5, 0.0], [0.5, 0.0, 0.0, 0.5, 0.0, 0.5]], dtype
    )
    result = RankResult(
        indices=np.array([[0, 1], [1, -1]]), scores=np.ones((2, 2), dtype=np.float32)
    )
    products = profiles[[0, 0, 1]].multiply(papers[[0, 1, 1]])
    assert not products.has_sorted_indices  # what explain() must not depend on
    assert explain(profiles, papers, result, feature_names=NAMES) == [
        [("beta", "gamma", "delta"), ("zeta", "alpha", "delta")],
        [("zeta", "alpha", "delta")],
    ]


def test_many_picks_of_float32_vectors_match_the_three_key_sort() -> None:
    rng = np.random.default_rng(7)
    names = np.array([f"w{j}" for j in range(40)])
    values = [0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 1.0]  # few values: many exact ties
    profiles = scipy.sparse.csr_matrix(rng.choice(values, size=(60, 40)).astype(np.float32))
    papers = scipy.sparse.csr_matrix(rng.choice(values, size=(30, 40)).astype(np.float32))
    indices = np.array([rng.permutation(30)[:5] for _ in range(60)])
    result = RankResult(indices=indices, scores=np.ones(indices.shape, dtype=np.float32))
    as_float64 = explain(
        profiles.astype(np.float64), papers.astype(np.float64), result, feature_names=names
    )
    assert explain(profiles, papers, result, feature_names=names) == as_float64
    assert sum(len(terms) for row in as_float64 for terms in row) > 300
