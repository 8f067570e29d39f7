"""A pick's evidence: TF-IDF cosine + 0.25 x the raw embedding cosine, for picks only."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from recommender.evidence import EVIDENCE_DENSE_WEIGHT, pick_evidence


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_evidence_is_each_picks_tfidf_cosine_plus_a_quarter_of_its_raw_cosine() -> None:
    rng = np.random.default_rng(3)
    profiles = scipy.sparse.csr_matrix(
        _unit(rng.random((300, 40)) * (rng.random((300, 40)) < 0.2) + 1e-3)
    )
    papers = scipy.sparse.csr_matrix(
        _unit(rng.random((50, 40)) * (rng.random((50, 40)) < 0.3) + 1e-3)
    )
    raw_profiles = _unit(rng.standard_normal((300, 16))).astype(np.float32)
    raw_papers = _unit(rng.standard_normal((50, 16))).astype(np.float32)
    indices = rng.integers(0, 50, size=(300, 7))
    indices[::5, 4:] = -1  # rows with fewer picks

    got = pick_evidence(profiles, papers, raw_profiles, raw_papers, indices)

    full = (profiles @ papers.T).toarray() + EVIDENCE_DENSE_WEIGHT * (raw_profiles @ raw_papers.T)
    want = np.where(indices >= 0, np.take_along_axis(full, np.maximum(indices, 0), axis=1), 0)
    assert got.shape == (300, 7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (got[::5, 4:] == 0).all()


def test_no_rows_or_no_picks() -> None:
    papers = scipy.sparse.csr_matrix(np.eye(3, dtype=np.float32))
    vectors = np.eye(3, dtype=np.float32)
    empty = pick_evidence(
        scipy.sparse.csr_matrix((0, 3)), papers, np.zeros((0, 3)), vectors, np.zeros((0, 2), int)
    )
    assert empty.shape == (0, 2)
    none = pick_evidence(papers, papers, vectors, vectors, -np.ones((3, 2), dtype=int))
    assert (none == 0).all()
