"""Whitening of sentence embeddings: the papers being ranked set the space's axes.

MiniLM vectors are anisotropic: every paper shares a large common direction, and a
few directions carry most of the variance, so a cosine is dominated by what all papers
have in common. Whitening subtracts the papers' mean and scales each principal axis by
its variance to the power ``-strength / 2`` (0: centring only, 1: full whitening), with
the variances shrunk towards their mean so that few papers (a quiet day) give a stable
transform. Rows are then normalised again, so a cosine is still a dot product.

Every dense vector of a ranking goes through the same transform: the candidate papers,
the rated papers and the interest texts the profiles are built from (profiles are then
built in the whitened space, the per-subscriber model fitted there). It is fitted on the
papers being ranked, like the background penalty of ``recommender.hybrid``: one
384 x 384 eigendecomposition per edition, nothing per subscriber.

CiteULike-a tuning users (benchmarks/README.md, issue 16.3): recall@300 of the hybrid
0.500 -> 0.510 with strength 0.5; strength 1 gave 0.503.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recommender.semantic import normalise

STRENGTH = 0.5
# Fewer papers than this: no transform (their mean and axes say nothing general).
MIN_PAPERS = 50


@dataclass(frozen=True, eq=False)
class Whitening:
    """A fitted transform: ``normalise((vectors - mean) @ matrix)``."""

    mean: npt.NDArray[np.float32]
    matrix: npt.NDArray[np.float32]

    def apply(self, vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """The vectors in the whitened space, unit rows (all-zero rows stay zero)."""
        rows = np.asarray(vectors, dtype=np.float32)
        if len(rows) == 0:
            return rows.copy()
        # A zero row (no interest, no rating) stays zero rather than becoming -mean.
        zero = ~rows.any(axis=1)
        out = normalise((rows - self.mean) @ self.matrix)
        out[zero] = 0.0
        return out


def fit_whitening(
    papers: npt.NDArray[np.floating], *, strength: float = STRENGTH
) -> Whitening | None:
    """The transform fitted on ``papers`` (unit rows), or None below ``MIN_PAPERS``."""
    if not (np.isfinite(strength) and 0.0 <= strength <= 1.0):
        raise ValueError(f"strength must lie in [0, 1], got {strength}")
    rows = np.asarray(papers, dtype=np.float64)
    if len(rows) < MIN_PAPERS:
        return None
    mean = rows.mean(axis=0)
    centred = np.asarray(normalise(rows - mean), dtype=np.float64)
    covariance = centred.T @ centred / max(len(rows) - 1, 1)
    variances, axes = np.linalg.eigh(covariance)
    # Shrunk towards the mean variance: directions no paper varies in keep a finite scale.
    variances = np.maximum(variances, 0.0) + variances.mean()
    matrix = (axes * variances ** (-strength / 2)) @ axes.T
    return Whitening(mean=mean.astype(np.float32), matrix=matrix.astype(np.float32))


def whiten(
    whitening: Whitening | None, vectors: npt.NDArray[np.floating]
) -> npt.NDArray[np.float32]:
    """``vectors`` through ``whitening``; unchanged (as float32) when there is none."""
    if whitening is None:
        return np.asarray(vectors, dtype=np.float32)
    return whitening.apply(vectors)
