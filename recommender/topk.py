"""The k best scores of each row above a minimum, best first, ties to the lower column.

Selection, not sorting: the k-th largest score of each row is found by partitioning
(on the scores' bit patterns, which numpy selects faster than floats), and only the
candidates at least that large are sorted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def top_k(
    similarity: npt.NDArray[np.floating], k: int, min_score: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The k best columns above min_score of each row, best first, ties to the lower column.

    Returns (indices, scores) of shape (n_rows, k), padded with -1 and 0.
    """
    n_rows, n_cols = similarity.shape
    # Candidates are the scores above min_score that are at least the k-th
    # largest score of their row, which selection finds without sorting.
    # When the k-th largest is not above min_score, that leaves every score
    # above min_score: fewer than k of them.
    floor = _smallest_above(min_score, similarity.dtype)
    rows, columns, values, threshold = _candidates(similarity, k, floor)
    counts = np.bincount(rows, minlength=n_rows)
    if counts.max(initial=0) > k:
        # Some rows tie at their k-th score: keep the scores above it, then
        # the lowest columns among the tied ones (flatnonzero lists each
        # row's candidates in column order).
        keep = _trim_ties(rows, values, threshold, counts, k)
        rows, columns, values = rows[keep], columns[keep], values[keep]
        counts = np.bincount(rows, minlength=n_rows)
    if len(rows) == n_rows * k:
        # Every row has exactly k candidates: no padding needed.
        top_columns = columns.reshape(n_rows, k)
        top_values = values.reshape(n_rows, k)
    else:
        row_starts = np.cumsum(counts) - counts
        slot = np.arange(len(rows)) - row_starts[rows]
        top_columns = np.full((n_rows, k), n_cols, dtype=columns.dtype)
        top_values = np.full((n_rows, k), -np.inf, dtype=similarity.dtype)
        top_columns[rows, slot] = columns
        top_values[rows, slot] = values
    # A stable sort on the negated score keeps equal scores in column order,
    # and the -inf padding last.
    order = np.argsort(-top_values, axis=1, kind="stable")
    top_columns = np.take_along_axis(top_columns, order, axis=1)
    top_values = np.take_along_axis(top_values, order, axis=1)
    # Padding, and an overflowed score, are not picks.
    valid = np.isfinite(top_values)
    return (
        np.where(valid, top_columns, -1).astype(np.int64),
        np.where(valid, top_values, 0.0).astype(np.float32),
    )


def _candidates(
    similarity: npt.NDArray[np.floating], k: int, floor: npt.NDArray[np.floating]
) -> tuple[
    npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.floating], npt.NDArray[np.floating]
]:
    """Each row's scores that are at least floor and at least its k-th largest score.

    Returns their (rows, columns, values), row by row in column order, and
    each row's threshold max(k-th largest, floor). A row whose k-th largest
    is below floor keeps all its scores from floor up: fewer than k.
    """
    n_rows, n_cols = similarity.shape
    if k < n_cols:
        threshold = np.maximum(_kth_largest(similarity, k), floor)
    else:
        threshold = np.full(n_rows, floor, dtype=similarity.dtype)
    return (*_at_least(similarity, threshold), threshold)


def _kth_largest(similarity: npt.NDArray[np.floating], k: int) -> npt.NDArray[np.floating]:
    """Each row's k-th largest score wherever it is positive (selection, not sorting).

    Selection runs on the scores' bit patterns as signed integers, which
    numpy selects faster than floats: they order non-negative floats exactly
    as the floats, and every negative float (-0.0 included) below them. So a
    positive k-th largest comes out exact; otherwise some value <= 0 does,
    and the caller's floor (> min_score >= 0) replaces it either way.
    """
    n_cols = similarity.shape[1]
    as_int = {4: np.int32, 8: np.int64}.get(similarity.dtype.itemsize)
    if as_int is None:
        return np.asarray(np.partition(similarity, n_cols - k, axis=1)[:, n_cols - k])
    bits = np.partition(similarity.view(as_int), n_cols - k, axis=1)[:, n_cols - k]
    return np.ascontiguousarray(bits).view(similarity.dtype)


def _at_least(
    similarity: npt.NDArray[np.floating], threshold: npt.NDArray[np.floating]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.floating]]:
    """(rows, columns, values) of the scores at least their row's threshold, row-major."""
    # flatnonzero on the flat mask is many times faster than a 2-D nonzero.
    flat = np.flatnonzero(similarity >= threshold[:, None])
    rows, columns = np.divmod(flat, similarity.shape[1])
    return rows, columns, similarity.ravel()[flat]


def _trim_ties(
    rows: npt.NDArray[np.intp],
    values: npt.NDArray[np.floating],
    threshold: npt.NDArray[np.floating],
    counts: npt.NDArray[np.intp],
    k: int,
) -> npt.NDArray[np.bool_]:
    """Which candidates to keep: those above their row's threshold, then ties by column."""
    above = values > threshold[rows]
    tied = ~above
    # Rank of each tied candidate among its row's tied ones, 1-based, in column order.
    tied_through = np.cumsum(tied)
    row_starts = (np.cumsum(counts) - counts)[rows]
    tie_rank: npt.NDArray[np.intp] = tied_through - (tied_through - tied)[row_starts]
    slots_left = k - np.bincount(rows[above], minlength=len(counts))
    return above | (tie_rank <= slots_left[rows])


def _smallest_above(min_score: float, dtype: np.dtype[np.floating]) -> npt.NDArray[np.floating]:
    """The smallest score of `dtype` that counts as above min_score, as a 0-d array.

    Found by the comparison `score > min_score` itself, so it agrees with it
    for whatever type min_score has; +inf when no finite score does.
    """
    with np.errstate(over="ignore"):
        nearest = np.asarray(min_score).astype(dtype)
    candidates = np.array(
        [np.nextafter(nearest, -np.inf), nearest, np.nextafter(nearest, np.inf)], dtype=dtype
    )
    above = candidates[candidates > min_score]
    return np.asarray(above[0] if len(above) else np.inf, dtype=dtype)
