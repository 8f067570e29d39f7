"""Top-k ranking of papers for every profile at once.

Profiles and papers are L2-normalised sparse rows, so the cosine similarity
of all pairs is the product profiles @ papers.T. It is densified a block of
profiles at a time to bound memory, and the best k papers of each row are
selected without a full sort.

What makes a million profiles x a thousand papers fast (benchmarks/bench_rank.py):

- Identical profile rows (subscribers with the same interests and nothing
  excluded) are ranked once: a row's picks depend on that row alone.
- The product is taken over the terms both sides use, against a dense copy
  of the papers (one row update per profile term) when that is cheaper than
  the sparse product. Either way each score sums the same products in the
  same order as the plain sparse product, so scores are identical bit for bit.
- Blocks of a few MB are ranked on a small pool of threads (scipy and numpy
  release the GIL in the products and in the selection).

Those parts live beside this module: ``recommender.duplicates`` (rows ranked once),
``recommender.scorer`` (the product), ``recommender.topk`` (the selection) and
``recommender.blocks`` (the pool).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse
from threadpoolctl import threadpool_limits

from recommender._sparse import as_csr
from recommender.blocks import cpu_count, each, start
from recommender.duplicates import distinct_rows, split_dense, spread
from recommender.scorer import Scorer
from recommender.topk import top_k

# At most this many threads rank blocks in parallel (never more than the
# CPUs this process may use), and only for more than this many scores.
_MAX_WORKERS = 4
_PARALLEL_CELLS = 1 << 21
# Bytes of scores per block of profile rows (fewer rows than chunk_size
# when that is smaller): a block's temporary arrays are then reused from
# the heap instead of being mapped and page-faulted in anew each time.
_BLOCK_BYTES = 4 * 1024 * 1024


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


@dataclass(frozen=True)
class DenseTerm:
    """A dense addend to the sparse cosine (the hybrid ranking, ``recommender.hybrid``):

        score = sparse_weight * sparse cosine + dense_weight * (profiles @ papers_t)

    ``profiles`` (n_profiles x d, float16 or float32) are widened a block at a time;
    ``papers_t`` is the papers' float32 matrix transposed (d x n_papers). ``paper_offset``
    (n_papers) is added to every profile's scores: the background penalty and density
    term of ``recommender.hybrid``."""

    profiles: npt.NDArray[np.floating]
    papers_t: npt.NDArray[np.float32]
    sparse_weight: float
    dense_weight: float
    paper_offset: npt.NDArray[np.float32] | None = None


def rank(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    *,
    k: int,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
    chunk_size: int = 5000,
    dense: DenseTerm | None = None,
) -> RankResult:
    """Pick each profile's k most similar unsent papers: what each subscriber's issue holds.

    With ``dense``, the score is the hybrid of ``DenseTerm``; profiles are then merged
    as duplicates only when their dense rows are identical too."""
    profiles = as_csr(profiles, name="profiles")
    papers = as_csr(papers, name="papers")
    exclude = _checked_exclude(profiles, papers, k, exclude, min_score, chunk_size, dense)
    n_profiles, n_papers = profiles.shape[0], papers.shape[0]
    width = min(k, n_papers)
    if width == 0 or n_profiles == 0:
        return RankResult(
            indices=np.full((n_profiles, k), -1, dtype=np.int64),
            scores=np.zeros((n_profiles, k), dtype=np.float32),
        )

    # Threads only pay off beyond a few blocks of scores.
    workers = min(_MAX_WORKERS, cpu_count()) if n_profiles * n_papers > _PARALLEL_CELLS else 1
    # Blocks run side by side on the pool, so each BLAS call (the dense term) keeps to
    # one thread.
    one_blas_thread = dense is not None and workers > 1
    limits = threadpool_limits(1, user_api="blas") if one_blas_thread else nullcontext()
    with limits, ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        # The scorer is prepared while duplicates are looked for.
        scorer_ready = start(pool, Scorer, profiles, papers)
        # Rank each distinct row once; owner[row] is the ranked row holding its picks.
        ranked, owner = distinct_rows(profiles, exclude, pool)
        if dense is not None and ranked is not None and owner is not None:
            ranked, owner = split_dense(dense.profiles, ranked, owner)
        n_ranked = n_profiles if ranked is None else len(ranked)
        blocks = _BlockRanker(
            profiles=profiles,
            ranked=ranked,
            scorer=scorer_ready.result(),
            dense=dense,
            exclude=exclude,
            width=width,
            min_score=min_score,
            indices=np.full((n_ranked, k), -1, dtype=np.int64),
            scores=np.zeros((n_ranked, k), dtype=np.float32),
        )
        itemsize = 4 if dense is not None else blocks.scorer.dtype.itemsize
        block = max(1, min(chunk_size, _BLOCK_BYTES // (n_papers * itemsize)))
        each(pool, lambda first: blocks.rank(first, block), range(0, n_ranked, block))
        indices, scores = blocks.indices, blocks.scores
        if owner is not None:
            indices, scores = spread(indices, scores, owner, pool)
    return RankResult(indices=indices, scores=scores)


def _checked_exclude(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    k: int,
    exclude: scipy.sparse.csr_matrix | None,
    min_score: float,
    chunk_size: int,
    dense: DenseTerm | None,
) -> scipy.sparse.csr_matrix | None:
    """Refuse arguments ``rank`` cannot rank with (``ValueError``, saying which); return
    ``exclude`` as CSR holding only its nonzero entries, or None when it excludes nothing."""
    n_profiles, n_papers = profiles.shape[0], papers.shape[0]
    if profiles.shape[1] != papers.shape[1]:
        raise ValueError(
            f"profiles have {profiles.shape[1]} features but papers have {papers.shape[1]}; "
            "were they embedded by the same model?"
        )
    if dense is not None:
        _check_dense(dense, n_profiles, n_papers)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    # A negative threshold would let negative scores through while score 0
    # (no shared term) stays unpickable, which orders nothing sensibly.
    if not (np.isfinite(min_score) and min_score >= 0.0):
        raise ValueError(f"min_score must be a finite number >= 0, got {min_score}")
    if exclude is None:
        return None
    exclude = as_csr(exclude, name="exclude")
    if exclude.shape != (n_profiles, n_papers):
        raise ValueError(
            f"exclude must have shape (n_profiles, n_papers) = {(n_profiles, n_papers)}, "
            f"got {exclude.shape}"
        )
    # Stored zeros are not exclusions; only nonzero entries are.
    exclude = exclude.copy()
    exclude.eliminate_zeros()
    return exclude if exclude.nnz else None


def _check_dense(dense: DenseTerm, n_profiles: int, n_papers: int) -> None:
    if dense.profiles.shape[0] != n_profiles or dense.papers_t.shape[1] != n_papers:
        raise ValueError(
            f"dense rows must match: {dense.profiles.shape[0]} profiles vs {n_profiles}, "
            f"{dense.papers_t.shape[1]} papers vs {n_papers}"
        )
    if dense.profiles.shape[1] != dense.papers_t.shape[0]:
        raise ValueError("dense profiles and papers have a different number of dimensions")
    if dense.paper_offset is not None and dense.paper_offset.shape != (n_papers,):
        raise ValueError(f"paper_offset must have shape ({n_papers},)")


@dataclass(frozen=True, eq=False)
class _BlockRanker:
    """Ranks blocks of the rows to rank into ``indices`` and ``scores`` (one row per
    ranked row); blocks write disjoint rows, so they may run side by side."""

    profiles: scipy.sparse.csr_matrix
    # The profile rows to rank, in order; None: every row.
    ranked: npt.NDArray[np.int64] | None
    scorer: Scorer
    dense: DenseTerm | None
    exclude: scipy.sparse.csr_matrix | None
    width: int
    min_score: float
    indices: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]

    def rank(self, first: int, size: int) -> None:
        """Rank the ranked rows ``first`` to ``first + size`` (fewer at the end)."""
        stop = min(first + size, len(self.indices))
        rows = slice(first, stop) if self.ranked is None else self.ranked[first:stop]
        similarity = self.scorer.scores(self.profiles[rows])
        dense = self.dense
        if dense is not None:
            similarity = np.asarray(similarity, dtype=np.float32)
            similarity *= np.float32(dense.sparse_weight)
            widened = dense.profiles[rows].astype(np.float32, copy=False)
            similarity += np.float32(dense.dense_weight) * (widened @ dense.papers_t)
            if dense.paper_offset is not None:
                similarity += dense.paper_offset
        if self.exclude is not None:
            excluded = self.exclude[rows]
            if excluded.nnz:
                # -inf marks "never pick": it is never above min_score.
                in_block = np.repeat(np.arange(stop - first), np.diff(excluded.indptr))
                similarity[in_block, excluded.indices] = -np.inf
        self.indices[first:stop, : self.width], self.scores[first:stop, : self.width] = top_k(
            similarity, self.width, self.min_score
        )
