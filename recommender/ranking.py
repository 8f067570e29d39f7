"""Top-k ranking of papers for every profile at once.

Profiles and papers are L2-normalised sparse rows, so the cosine similarity
of all pairs is the sparse product profiles @ papers.T. It is densified a
chunk of profiles at a time to bound memory, and the best k papers of each
row are selected without a full sort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import as_csr


# eq=False: the generated __eq__ would compare arrays with ==, which has no
# single truth value; compare the fields with np.array_equal instead.
@dataclass(frozen=True, eq=False)
class RankResult:
    """The top-k papers of every profile, best first, padded with -1."""

    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.indices.ndim != 2 or self.indices.shape != self.scores.shape:
            raise ValueError(
                "indices and scores must be 2-D arrays of the same shape, got "
                f"{self.indices.shape} and {self.scores.shape}"
            )

    def picks(self, row: int) -> list[tuple[int, float]]:
        """Return one profile's valid (paper index, score) pairs, best first, padding dropped."""
        indices = self.indices[row]
        valid = indices >= 0
        return [
            (int(index), float(score))
            for index, score in zip(indices[valid], self.scores[row][valid], strict=True)
        ]


def rank(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    *,
    k: int,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
    chunk_size: int = 5000,
) -> RankResult:
    """Pick each profile's k most similar unsent papers: what each subscriber's issue holds."""
    profiles = as_csr(profiles, name="profiles")
    papers = as_csr(papers, name="papers")
    n_profiles, n_papers = profiles.shape[0], papers.shape[0]
    if profiles.shape[1] != papers.shape[1]:
        raise ValueError(
            f"profiles have {profiles.shape[1]} features but papers have {papers.shape[1]}; "
            "were they embedded by the same model?"
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    # A negative threshold would let negative scores through while score 0
    # (no shared term) stays unpickable, which orders nothing sensibly.
    if not (np.isfinite(min_score) and min_score >= 0.0):
        raise ValueError(f"min_score must be a finite number >= 0, got {min_score}")
    if exclude is not None:
        exclude = as_csr(exclude, name="exclude")
        if exclude.shape != (n_profiles, n_papers):
            raise ValueError(
                f"exclude must have shape (n_profiles, n_papers) = {(n_profiles, n_papers)}, "
                f"got {exclude.shape}"
            )
        # Stored zeros are not exclusions; only nonzero entries are.
        exclude = exclude.copy()
        exclude.eliminate_zeros()

    indices = np.full((n_profiles, k), -1, dtype=np.int64)
    scores = np.zeros((n_profiles, k), dtype=np.float32)
    width = min(k, n_papers)
    if width == 0 or n_profiles == 0:
        return RankResult(indices=indices, scores=scores)

    # Transposed once to CSR, the layout the sparse product wants as its
    # right operand, instead of a conversion per chunk.
    papers_t = papers.T.tocsr()
    for start in range(0, n_profiles, chunk_size):
        stop = min(start + chunk_size, n_profiles)
        similarity = np.asarray((profiles[start:stop] @ papers_t).toarray())
        if similarity.dtype.kind != "f":
            similarity = similarity.astype(np.float64)
        # -inf marks "never pick": it sorts below every real score.
        similarity[similarity <= min_score] = -np.inf
        if exclude is not None:
            excluded = exclude[start:stop].tocoo()
            similarity[excluded.row, excluded.col] = -np.inf
        chunk_indices, chunk_scores = _top_k(similarity, width)
        valid = np.isfinite(chunk_scores)
        indices[start:stop, :width] = np.where(valid, chunk_indices, -1)
        scores[start:stop, :width] = np.where(valid, chunk_scores, 0.0)
    return RankResult(indices=indices, scores=scores)


def _top_k(
    similarity: npt.NDArray[np.floating], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]:
    """Return the k best columns of each row, best first, ties to the lower column."""
    n_rows, n_cols = similarity.shape
    # The k-th largest value of each row, found by selection rather than sorting.
    kth = np.partition(similarity, n_cols - k, axis=1)[:, n_cols - k]
    above = similarity > kth[:, None]
    # Entries equal to the k-th value fill the remaining slots, lowest column
    # first; argpartition alone would pick among such ties arbitrarily.
    at_kth = similarity == kth[:, None]
    slots_left = k - above.sum(axis=1)
    chosen = above | (at_kth & (np.cumsum(at_kth, axis=1) <= slots_left[:, None]))
    # Exactly k entries per row are chosen; nonzero walks rows in order and
    # columns ascending, so each row's picks are already in column order.
    columns = np.nonzero(chosen)[1].reshape(n_rows, k)
    values = np.take_along_axis(similarity, columns, axis=1)
    # A stable sort on the negated score keeps equal scores in column order.
    order = np.argsort(-values, axis=1, kind="stable")
    return (
        np.take_along_axis(columns, order, axis=1).astype(np.int64),
        np.take_along_axis(values, order, axis=1),
    )
