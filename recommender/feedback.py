"""Feedback in profiles: papers marked "more like this" pull, "less like this" push.

A Rocchio update, for every subscriber at once as two sparse products:

    profile = normalise(a * interests + b * mean(liked) - c * mean(disliked))

where each mean is weighted by an exponential decay on the age of the feedback,
so last week's "more like this" counts more than last year's. A profile made only
of liked papers (no topics, no keywords) works the same way: its interest part is
zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import as_csr, normalise_rows


@dataclass(frozen=True)
class FeedbackWeights:
    """How much each part counts; tuned on the evaluation in benchmarks/eval_recommender.py."""

    interests: float = 1.0
    liked: float = 1.0
    disliked: float = 0.5
    half_life_days: float = 120.0

    def __post_init__(self) -> None:
        for name in ("interests", "liked", "disliked"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite, non-negative weight, got {value}")
        if not self.half_life_days > 0:
            raise ValueError(f"half_life_days must be positive, got {self.half_life_days}")


def decay(ages_days: npt.ArrayLike, *, half_life_days: float) -> npt.NDArray[np.float64]:
    """Weight of feedback given ``ages_days`` ago: 1 today, 1/2 after one half-life."""
    ages = np.asarray(ages_days, dtype=np.float64)
    if ages.size and (not np.isfinite(ages).all() or ages.min() < 0):
        raise ValueError("ages_days must be finite and non-negative")
    return np.power(0.5, ages / half_life_days)


def _decayed_mean(
    rows: npt.NDArray[np.int64],
    cols: npt.NDArray[np.int64],
    weights: npt.NDArray[np.float64],
    papers: scipy.sparse.csr_matrix,
    n_profiles: int,
) -> scipy.sparse.csr_matrix:
    # Dividing by the number of events makes W @ papers a mean of decay-weighted
    # papers: fifty likes pull no harder than one, and old ones pull less than new
    # ones (dividing by the summed decay instead would cancel the decay whenever a
    # subscriber's ratings are all of one age).
    matrix = scipy.sparse.csr_matrix((weights, (rows, cols)), shape=(n_profiles, papers.shape[0]))
    totals = np.bincount(rows, minlength=n_profiles).astype(np.float64)
    scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    matrix = scipy.sparse.diags(scale) @ matrix
    return scipy.sparse.csr_matrix(matrix @ papers)


def apply_feedback(
    interests: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    *,
    rows: npt.ArrayLike,
    cols: npt.ArrayLike,
    values: npt.ArrayLike,
    ages_days: npt.ArrayLike,
    weights: FeedbackWeights | None = None,
) -> scipy.sparse.csr_matrix:
    """Combine interest vectors with feedback events into L2-normalised profiles.

    Event ``i`` says profile ``rows[i]`` rated paper ``cols[i]`` (a row of ``papers``)
    with ``values[i]`` (+1 more like this, -1 less like this), ``ages_days[i]`` ago.
    """
    weights = weights or FeedbackWeights()
    interests = as_csr(interests, name="interests")
    papers = as_csr(papers, name="papers")
    n_profiles, n_features = interests.shape
    if papers.shape[1] != n_features:
        raise ValueError(f"interests have {n_features} features but papers have {papers.shape[1]}")
    row = np.asarray(rows, dtype=np.int64).ravel()
    col = np.asarray(cols, dtype=np.int64).ravel()
    value = np.asarray(values).ravel()
    ages = decay(ages_days, half_life_days=weights.half_life_days).ravel()
    if not len(row) == len(col) == len(value) == len(ages):
        raise ValueError("rows, cols, values and ages_days must have the same length")
    if row.size and (row.min() < 0 or row.max() >= n_profiles):
        raise ValueError(f"rows must lie in [0, {n_profiles})")
    if col.size and (col.min() < 0 or col.max() >= papers.shape[0]):
        raise ValueError(f"cols must lie in [0, {papers.shape[0]})")
    if value.size and not np.isin(value, (-1, 1)).all():
        raise ValueError("values must be +1 (more like this) or -1 (less like this)")

    liked, disliked = value > 0, value < 0
    combined = weights.interests * normalise_rows(interests)
    if liked.any():
        combined = combined + weights.liked * _decayed_mean(
            row[liked], col[liked], ages[liked], papers, n_profiles
        )
    if disliked.any():
        combined = combined - weights.disliked * _decayed_mean(
            row[disliked], col[disliked], ages[disliked], papers, n_profiles
        )
    return normalise_rows(scipy.sparse.csr_matrix(combined, dtype=np.float32))
