"""Subscriber interest profiles: weighted sums of interest-text vectors.

All profiles are built at once as one sparse product, W @ T, where T embeds
each distinct interest text once and W says which subscriber holds which
interest with what weight. A topic description shared by thousands of
subscribers is therefore vectorised once, and there is no Python loop over
subscribers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import normalise_rows
from recommender.model import TfidfModel


def build_profiles(
    model: TfidfModel,
    *,
    texts: Sequence[str],
    rows: npt.ArrayLike,
    cols: npt.ArrayLike,
    weights: npt.ArrayLike,
    n_profiles: int,
    text_vectors: scipy.sparse.csr_matrix | None = None,
) -> scipy.sparse.csr_matrix:
    """Build every subscriber's L2-normalised interest vector, so ranking is one cosine product.

    ``text_vectors`` are the texts already embedded with ``model`` (row i = texts[i]),
    when the caller keeps them between runs; otherwise the texts are embedded here.
    """
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, not a single string")
    if n_profiles < 0:
        raise ValueError(f"n_profiles must be non-negative, got {n_profiles}")
    row_index = _index_array(rows, name="rows", bound=n_profiles, bound_name="n_profiles")
    col_index = _index_array(cols, name="cols", bound=len(texts), bound_name="len(texts)")
    weight_values = np.asarray(weights, dtype=np.float64)
    if weight_values.ndim != 1:
        raise ValueError(f"weights must be one-dimensional, got shape {weight_values.shape}")
    if not len(row_index) == len(col_index) == len(weight_values):
        raise ValueError(
            "rows, cols and weights must have the same length, got "
            f"{len(row_index)}, {len(col_index)} and {len(weight_values)}"
        )
    if not np.isfinite(weight_values).all():
        raise ValueError("weights must be finite numbers")

    # Repeated (row, col) pairs add up, as the sum over interests says.
    interest_weights = scipy.sparse.csr_matrix(
        (weight_values, (row_index, col_index)), shape=(n_profiles, len(texts))
    )
    if text_vectors is None:
        text_vectors = model.transform_texts(texts)
    elif text_vectors.shape != (len(texts), model.n_features):
        raise ValueError(
            f"text_vectors must have shape ({len(texts)}, {model.n_features}), "
            f"got {text_vectors.shape}"
        )
    # Opposite weights can cancel a term exactly; normalise_rows drops the stored
    # zeros, and all-zero rows (no interests) stay zero and so rank nothing.
    return normalise_rows(scipy.sparse.csr_matrix(interest_weights @ text_vectors))


def _index_array(
    values: npt.ArrayLike, *, name: str, bound: int, bound_name: str
) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    # np.asarray([]) is float64; an empty list is still a valid (empty) index.
    if array.size and (array.dtype.kind not in "iu"):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    index = array.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= bound):
        raise ValueError(
            f"{name} must lie in [0, {bound_name}) = [0, {bound}), "
            f"got values from {index.min()} to {index.max()}"
        )
    return index
