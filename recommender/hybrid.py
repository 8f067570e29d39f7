"""Hybrid ranking: a weighted sum of TF-IDF and sentence-embedding cosines (the
optional ``semantic`` extra).

    score = tfidf * cos(tfidf profile, tfidf paper) + dense * cos(dense profile, dense paper)
            - background penalty(paper)

The dense vectors are whitened by the caller before they get here (planning and the
batch command fit ``recommender.whitening`` on the papers being ranked and pass every
dense vector through it). The background penalty (issue 16) pushes down papers that
are closer than average to the mean of the papers being ranked, in either space:
generic papers that match every profile a little. It is one number per paper, the
same for every profile, so it costs nothing at scale; it never raises a score, so a
profile with no interests still picks nothing.

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

# Chosen on the CiteULike-a tuning users (benchmarks/README.md, issue 16.3): the dense
# cosine (on whitened vectors, recommender.whitening) twice the TF-IDF one, background
# penalties 0.4 (TF-IDF) and 0.5 (dense) of the TF-IDF weight. Only their ratios change
# a ranking; the scale keeps the dense weight at 0.35, as before whitening, so a paper
# whose only tie to a profile is a dense cosine of 0.16 stays below min_score_semantic
# (0.06; tests/test_editions.py). min_score_semantic was not recalibrated for whitened
# cosines (benchmarks/calibrate_min_score.py).
_SCALE = 0.175
TFIDF_WEIGHT = _SCALE
DENSE_WEIGHT = 2 * _SCALE
TFIDF_BACKGROUND = 0.4 * _SCALE
DENSE_BACKGROUND = 0.5 * _SCALE
# Fewer papers than this: their mean is no background, and no penalty is applied.
MIN_BACKGROUND_PAPERS = 50


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the two cosines and of the background penalty in each space.

    Chosen on the tuning users of the CiteULike-a evaluation (issue 16.3,
    benchmarks/README.md); on the arXiv days' simulated subscribers the dense weight
    was 0.25 before (nDCG@10 0.531 there, 0.519 at 1.0)."""

    tfidf: float = TFIDF_WEIGHT
    dense: float = DENSE_WEIGHT
    tfidf_background: float = TFIDF_BACKGROUND
    dense_background: float = DENSE_BACKGROUND

    def __post_init__(self) -> None:
        for name in ("tfidf", "dense", "tfidf_background", "dense_background"):
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
    dense_papers = np.asarray(dense_papers, dtype=np.float32)
    dense = DenseTerm(
        profiles=dense_profiles,
        papers_t=np.ascontiguousarray(dense_papers.T),
        sparse_weight=weights.tfidf,
        dense_weight=weights.dense,
        paper_offset=background_penalty(papers, dense_papers, weights),
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


def background_penalty(
    papers: scipy.sparse.csr_matrix,
    dense_papers: npt.NDArray[np.float32],
    weights: HybridWeights,
) -> npt.NDArray[np.float32] | None:
    """Minus each paper's excess cosine with the papers' mean direction, in each space
    (0 for papers no closer to it than average); None when nothing is penalised."""
    n_papers = dense_papers.shape[0]
    if n_papers < MIN_BACKGROUND_PAPERS:
        return None
    sparse = scipy.sparse.csr_matrix(papers)
    penalty = np.zeros(n_papers, dtype=np.float64)
    for weight, mean, rows in (
        (weights.tfidf_background, np.asarray(sparse.mean(axis=0)).ravel(), sparse),
        (weights.dense_background, dense_papers.mean(axis=0), dense_papers),
    ):
        norm = float(np.linalg.norm(mean))
        if weight == 0 or norm == 0:
            continue
        closeness = np.asarray(rows @ (mean / norm), dtype=np.float64).ravel()
        penalty += weight * np.maximum(closeness - closeness.mean(), 0.0)
    if not penalty.any():
        return None
    return (-penalty).astype(np.float32)
