from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from recommender import RankResult, diversify, rank


def _unit_rows(dense: list[list[float]]) -> scipy.sparse.csr_matrix:
    matrix = np.asarray(dense, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return scipy.sparse.csr_matrix(matrix / np.where(norms > 0, norms, 1))


# Papers 0-2 are near-duplicates about one thing; 3 is about another that the
# profile also wants, a little less.
PAPERS = _unit_rows(
    [[1.0, 0.0, 0.0], [0.99, 0.01, 0.0], [0.98, 0.02, 0.0], [0.5, 0.8, 0.0], [0.0, 0.0, 1.0]]
)
PROFILE = _unit_rows([[1.0, 0.2, 0.0]])


def test_trade_off_one_keeps_relevance_order() -> None:
    wide = rank(PROFILE, PAPERS, k=5)
    plain = rank(PROFILE, PAPERS, k=2)
    same = diversify(wide, PAPERS, k=2, trade_off=1.0)
    assert same.indices.tolist() == plain.indices.tolist()
    assert np.allclose(same.scores, plain.scores)


def test_mmr_replaces_a_near_duplicate() -> None:
    wide = rank(PROFILE, PAPERS, k=5)
    assert set(wide.indices[0, :2].tolist()) <= {0, 1, 2}
    mixed = diversify(wide, PAPERS, k=2, trade_off=0.5)
    assert mixed.indices[0, 0] == wide.indices[0, 0]
    assert mixed.indices[0, 1] == 3
    chosen = {int(i): float(s) for i, s in zip(wide.indices[0], wide.scores[0], strict=True)}
    assert mixed.scores[0, 1] == pytest.approx(chosen[3])


def test_rows_run_out_and_pad() -> None:
    result = RankResult(
        indices=np.array([[4, -1, -1], [-1, -1, -1]]),
        scores=np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32),
    )
    out = diversify(result, PAPERS, k=3, trade_off=0.7)
    assert out.indices.tolist() == [[4, -1, -1], [-1, -1, -1]]
    assert out.scores[0, 0] == pytest.approx(0.5)


def test_many_rows_are_independent() -> None:
    rng = np.random.default_rng(3)
    papers = _unit_rows(rng.random((40, 12)).tolist())
    profiles = _unit_rows(rng.random((25, 12)).tolist())
    wide = rank(profiles, papers, k=15)
    together = diversify(wide, papers, k=5, trade_off=0.6)
    for row in range(25):
        alone = diversify(
            RankResult(indices=wide.indices[row : row + 1], scores=wide.scores[row : row + 1]),
            papers,
            k=5,
            trade_off=0.6,
        )
        assert together.indices[row].tolist() == alone.indices[0].tolist()
        assert len(set(together.indices[row].tolist())) == 5


@pytest.mark.parametrize(("k", "trade_off"), [(0, 0.5), (2, -0.1), (2, 1.5)])
def test_bad_arguments(k: int, trade_off: float) -> None:
    with pytest.raises(ValueError, match="must"):
        diversify(rank(PROFILE, PAPERS, k=3), PAPERS, k=k, trade_off=trade_off)
