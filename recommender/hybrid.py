"""Hybrid ranking: a weighted sum of TF-IDF and sentence-embedding cosines (the
optional ``semantic`` extra).

    score = tfidf * cos(tfidf profile, tfidf paper) + dense * cos(dense profile, dense paper)

Ranked like ``rank``: a block of profiles at a time (the TF-IDF part through the
same sparse scorer, the dense part one float32 BLAS product per block), identical
profiles ranked once, the best k selected without a full sort. Explanations still
come from the TF-IDF vectors alone (``explain``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender.ranking import DenseTerm, RankResult, rank


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
    # float16 profiles (half the memory of a million rows) are widened a block at a time.
    dense_profiles = np.asarray(dense_profiles)
    if dense_profiles.dtype not in (np.float16, np.float32):
        dense_profiles = dense_profiles.astype(np.float32)
    dense = DenseTerm(
        profiles=dense_profiles,
        papers_t=np.ascontiguousarray(np.asarray(dense_papers, dtype=np.float32).T),
        sparse_weight=weights.tfidf,
        dense_weight=weights.dense,
    )
    return rank(
        profiles,
        papers,
        k=k,
        exclude=exclude,
        min_score=min_score,
        chunk_size=chunk_size,
        dense=dense,
    )
