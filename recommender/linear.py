"""Per-subscriber logistic regression in embedding space, all subscribers at once
(the optional ``semantic`` extra).

Once a subscriber has rated enough papers, a linear model separates what they liked
from a shared sample of background papers (and from what they disliked): the
approach of Scholar Inbox, and of arxiv-sanity's per-user SVM. Every subscriber's
model is fitted together by full-batch gradient descent on a (subscribers x 384)
weight matrix: the background sample is shared, so its scores are one BLAS product
per step, and the ratings are sparse (subscriber x rated paper) matrices. No Python
loop over subscribers.

The unit-length weight vector then serves as that subscriber's dense profile, so
the hybrid score keeps its meaning (a cosine-like similarity on a fixed scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender.semantic import FeedbackEvents, normalise

# Subscribers fitted together: (500 negatives x this) float32 scores per step.
_CHUNK = 16_384


@dataclass(frozen=True)
class LinearOptions:
    """When and how the per-subscriber models are fitted."""

    # Fewer liked papers than this: keep the Rocchio profile. 1 (issue 16): a reader who
    # seeded from their library, or clicked "more like this" once, gets a model at once
    # (CiteULike-a, benchmarks/README.md).
    min_liked: int = 1
    negatives: int = 500  # background papers sampled as the shared negatives
    l2: float = 0.05  # ridge penalty on the weights (per example, like C = 1 / (n * l2))
    steps: int = 150
    learning_rate: float = 2.0
    # The fitted direction is blended with the Rocchio profile (weight 1 - this).
    blend: float = 0.5
    seed: int = 0


def fit_directions(
    liked: scipy.sparse.csr_matrix,
    disliked: scipy.sparse.csr_matrix,
    paper_vectors: npt.NDArray[np.float32],
    background: npt.NDArray[np.float32],
    *,
    options: LinearOptions | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Fit every eligible subscriber's model; return unit weight vectors and who got one.

    ``liked`` / ``disliked``: (subscribers x rated papers) weights (e.g. decayed), rows of
    ``paper_vectors``. ``background``: papers to sample the shared negatives from.
    """
    options = options or LinearOptions()
    n_subscribers, dim = liked.shape[0], paper_vectors.shape[1]
    eligible = np.diff(liked.indptr) >= options.min_liked
    weights = np.zeros((n_subscribers, dim), dtype=np.float32)
    if not eligible.any() or len(background) == 0:
        return weights, eligible
    rng = np.random.default_rng(options.seed)
    sample = rng.choice(
        len(background), size=min(options.negatives, len(background)), replace=False
    )
    negatives = np.ascontiguousarray(background[sample], dtype=np.float32)
    vectors = np.asarray(paper_vectors, dtype=np.float32)
    eligible_rows = np.flatnonzero(eligible)
    # Subscribers are independent: a chunk at a time bounds the (negatives x chunk) scores.
    for first in range(0, len(eligible_rows), _CHUNK):
        rows = eligible_rows[first : first + _CHUNK]
        weights[rows] = _fit_chunk(
            scipy.sparse.csr_matrix(liked[rows], dtype=np.float32),
            scipy.sparse.csr_matrix(disliked[rows], dtype=np.float32),
            vectors,
            negatives,
            options,
        )
    return weights, eligible


def _fit_chunk(
    pos: scipy.sparse.csr_matrix,
    neg_rated: scipy.sparse.csr_matrix,
    vectors: npt.NDArray[np.float32],
    negatives: npt.NDArray[np.float32],
    options: LinearOptions,
) -> npt.NDArray[np.float32]:
    """Gradient descent for one chunk of subscribers; their unit weight vectors."""
    # Balanced classes: the liked papers weigh as much as all the negatives together.
    pos_total = np.asarray(pos.sum(axis=1)).ravel()
    neg_count = len(negatives) + np.diff(neg_rated.indptr)
    pos = scipy.sparse.diags(0.5 / np.maximum(pos_total, 1e-9)) @ pos
    neg_rated = scipy.sparse.diags(0.5 / neg_count) @ neg_rated
    neg_weight = (0.5 / neg_count).astype(np.float32)[:, None]
    w = np.asarray(pos @ vectors, dtype=np.float32)  # start at the liked centroid
    b = np.zeros((pos.shape[0], 1), dtype=np.float32)
    pos_coo = pos.tocoo()
    negr_coo = neg_rated.tocoo()
    for _ in range(options.steps):
        # Gradient of the weighted logistic loss: sum_i c_i (sigmoid(z_i) - y_i) x_i.
        z_neg = negatives @ w.T  # (negatives x subscribers)
        g_neg = (_sigmoid(z_neg.T + b) * neg_weight) @ negatives
        bias = (_sigmoid(z_neg.T + b) * neg_weight).sum(axis=1, keepdims=True)
        for coo, label in ((pos_coo, 1.0), (negr_coo, 0.0)):
            if coo.nnz == 0:
                continue
            z = np.einsum("ij,ij->i", w[coo.row], vectors[coo.col]) + b[coo.row, 0]
            coef = coo.data * (_sigmoid(z) - label)
            step = scipy.sparse.csr_matrix((coef, (coo.row, coo.col)), shape=coo.shape)
            g_neg = g_neg + np.asarray(step @ vectors, dtype=np.float32)
            bias = bias + np.asarray(step.sum(axis=1), dtype=np.float32)
        w -= options.learning_rate * (g_neg + options.l2 * w)
        b -= options.learning_rate * bias
    return normalise(w)


def blend_profiles(
    rocchio: npt.NDArray[np.float32],
    directions: npt.NDArray[np.float32],
    eligible: npt.NDArray[np.bool_],
    *,
    blend: float,
) -> npt.NDArray[np.float32]:
    """Rocchio profiles, moved towards the fitted direction where there is one."""
    out = np.array(rocchio, dtype=np.float32, copy=True)
    out[eligible] = normalise((1.0 - blend) * rocchio[eligible] + blend * directions[eligible])
    return out


def _sigmoid(z: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float32)


def personalise(
    profiles: npt.NDArray[np.float32],
    feedback: FeedbackEvents,
    *,
    event_weights: npt.NDArray[np.float64],
    rated_vectors: npt.NDArray[np.float32],
    candidates: npt.NDArray[np.float32],
    options: LinearOptions,
) -> npt.NDArray[np.float32]:
    """``profiles`` moved towards each subscriber's own logistic-regression direction
    (the one home of that rule, for planning and for the batch command).

    ``feedback`` rows are subscribers, its columns rows of ``rated_vectors``; each event
    counts with its weight in ``event_weights`` (1, or decayed by age). The ``candidates``
    (the papers to rank) are the background negatives. Subscribers without enough
    likes keep their profile.
    """
    shape = (len(profiles), len(rated_vectors))

    def matrix(mask: npt.NDArray[np.bool_]) -> scipy.sparse.csr_matrix:
        return scipy.sparse.csr_matrix(
            (event_weights[mask], (feedback.rows[mask], feedback.cols[mask])), shape=shape
        )

    directions, eligible = fit_directions(
        matrix(feedback.values > 0),
        matrix(feedback.values < 0),
        rated_vectors,
        candidates,
        options=options,
    )
    return blend_profiles(profiles, directions, eligible, blend=options.blend)
