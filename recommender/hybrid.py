"""Hybrid ranking: a weighted sum of TF-IDF and sentence-embedding cosines (issue 8).

    score = tfidf * cos(tfidf profile, tfidf paper) + dense * cos(dense profile, dense paper)

Ranked like ``rank``: a block of profiles at a time (the TF-IDF part through the
same sparse scorer, the dense part one float32 BLAS product per block), identical
profiles ranked once, the best k selected without a full sort. Explanations still
come from the TF-IDF vectors alone (``explain``).
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
from recommender.ranking import (
    _BLOCK_BYTES,
    _MAX_WORKERS,
    _PARALLEL_CELLS,
    RankResult,
    _cpu_count,
    _distinct_rows,
    _each,
    _Scorer,
    _spread,
    _top_k,
)


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the two cosines. The dense weight was chosen on the tuning days (May
    11–15, training May 1–10) of benchmarks/eval_recommender.py from 0.1, 0.15, 0.25,
    0.5 and 1: nDCG@10 0.523, 0.529, 0.531, 0.530, 0.519 (benchmarks/README.md)."""

    tfidf: float = 1.0
    dense: float = 0.25

    def __post_init__(self) -> None:
        for name in ("tfidf", "dense"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite, non-negative weight, got {value}")


def rank_hybrid(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    dense_profiles: npt.NDArray[np.floating],
    dense_papers: npt.NDArray[np.floating],
    *,
    k: int,
    weights: HybridWeights | None = None,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
    chunk_size: int = 5000,
) -> RankResult:
    """Each profile's k best papers by the hybrid score (rows of both kinds align)."""
    weights = weights or HybridWeights()
    profiles = as_csr(profiles, name="profiles")
    papers = as_csr(papers, name="papers")
    n_profiles, n_papers = profiles.shape[0], papers.shape[0]
    # float16 profiles (half the memory of a million rows) are widened a block at a time.
    dense_profiles = np.asarray(dense_profiles)
    if dense_profiles.dtype not in (np.float16, np.float32):
        dense_profiles = dense_profiles.astype(np.float32)
    dense_papers_t = np.ascontiguousarray(np.asarray(dense_papers, dtype=np.float32).T)
    if profiles.shape[1] != papers.shape[1]:
        raise ValueError("profiles and papers have a different number of TF-IDF features")
    if dense_profiles.shape[0] != n_profiles or dense_papers_t.shape[1] != n_papers:
        raise ValueError(
            f"dense rows must match: {dense_profiles.shape[0]} profiles vs {n_profiles}, "
            f"{dense_papers_t.shape[1]} papers vs {n_papers}"
        )
    if dense_profiles.shape[1] != dense_papers_t.shape[0]:
        raise ValueError("dense profiles and papers have a different number of dimensions")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not (np.isfinite(min_score) and min_score >= 0.0):
        raise ValueError(f"min_score must be a finite number >= 0, got {min_score}")
    if exclude is not None:
        exclude = as_csr(exclude, name="exclude").copy()
        if exclude.shape != (n_profiles, n_papers):
            raise ValueError(f"exclude must have shape {(n_profiles, n_papers)}")
        exclude.eliminate_zeros()
        if exclude.nnz == 0:
            exclude = None
    width = min(k, n_papers)
    if width == 0 or n_profiles == 0:
        return RankResult(
            indices=np.full((n_profiles, k), -1, dtype=np.int64),
            scores=np.zeros((n_profiles, k), dtype=np.float32),
        )

    w_sparse, w_dense = np.float32(weights.tfidf), np.float32(weights.dense)
    workers = min(_MAX_WORKERS, _cpu_count()) if n_profiles * n_papers > _PARALLEL_CELLS else 1
    # Blocks run side by side on the pool, so each BLAS call keeps to one thread.
    limits = threadpool_limits(1, user_api="blas") if workers > 1 else nullcontext()
    with limits, ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        scorer = _Scorer(profiles, papers)
        ranked, owner = _distinct_rows(profiles, exclude, pool)
        if ranked is not None and owner is not None:
            ranked, owner = _split_dense(dense_profiles, ranked, owner)
        n_ranked = n_profiles if ranked is None else len(ranked)
        indices = np.full((n_ranked, k), -1, dtype=np.int64)
        scores = np.zeros((n_ranked, k), dtype=np.float32)
        block = max(1, min(chunk_size, _BLOCK_BYTES // (n_papers * 4)))

        def rank_block(start: int) -> None:
            stop = min(start + block, n_ranked)
            rows = slice(start, stop) if ranked is None else ranked[start:stop]
            similarity = np.asarray(scorer.scores(profiles[rows]), dtype=np.float32)
            similarity *= w_sparse
            block_dense = dense_profiles[rows].astype(np.float32, copy=False)
            similarity += w_dense * (block_dense @ dense_papers_t)
            if exclude is not None:
                excluded = exclude[rows]
                if excluded.nnz:
                    in_block = np.repeat(np.arange(stop - start), np.diff(excluded.indptr))
                    similarity[in_block, excluded.indices] = -np.inf
            indices[start:stop, :width], scores[start:stop, :width] = _top_k(
                similarity, width, min_score
            )

        _each(pool, rank_block, range(0, n_ranked, block))
        if owner is not None:
            indices, scores = _spread(indices, scores, owner, pool)
    return RankResult(indices=indices, scores=scores)


def _split_dense(
    dense: npt.NDArray[np.float32], ranked: npt.NDArray[np.int64], position: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Keep a TF-IDF duplicate merged only when its dense row is identical too."""
    n_rows = len(position)
    owner = ranked[position]
    duplicates = np.flatnonzero(owner != np.arange(n_rows))
    differ = np.zeros(len(duplicates), dtype=bool)
    for start in range(0, len(duplicates), 65_536):
        part = duplicates[start : start + 65_536]
        differ[start : start + 65_536] = (dense[part] != dense[owner[part]]).any(axis=1)
    if not differ.any():
        return ranked, position
    owner[duplicates[differ]] = duplicates[differ]
    ranked = np.flatnonzero(owner == np.arange(n_rows))
    new_position = np.empty(n_rows, dtype=np.int64)
    new_position[ranked] = np.arange(len(ranked))
    return ranked, new_position[owner]
