"""Rows ranked once: identical profile rows found, and their picks spread back.

A row's picks depend on that row alone, so subscribers with the same interests and
nothing excluded are ranked once. Rows are grouped by a hash, then compared entry by
entry: a hash collision can only cost a missed merge, never a wrong one.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender.blocks import cpu_count, each, row_blocks

# Looking for duplicate rows is only worth it when at least this share of
# the rows would go.
_DEDUP_MIN_SAVING = 0.1


def distinct_rows(
    profiles: scipy.sparse.csr_matrix,
    exclude: scipy.sparse.csr_matrix | None,
    pool: ThreadPoolExecutor | None,
) -> tuple[npt.NDArray[np.int64] | None, npt.NDArray[np.int64] | None]:
    """(rows to rank, for every row the position of its ranked row), or (None, None): all.

    Two rows are merged only when they hold the same entries in the same
    order (so their scores are computed identically) and neither excludes a
    paper. Rows are grouped by a hash, then compared entry by entry: a hash
    collision can only cost a missed merge, never a wrong one.
    """
    n_rows = profiles.shape[0]
    if n_rows < 2:
        return None, None
    keys = _row_keys(profiles, pool)
    candidates = np.arange(n_rows, dtype=np.int64)
    if exclude is not None:
        candidates = candidates[np.diff(exclude.indptr) == 0]
    # Sort the keys with the row number in their low bits: equal keys come
    # together, each group led by its first row. Losing the keys' low bits
    # only makes false groups likelier, and the comparison catches those.
    row_bits = max(1, (n_rows - 1).bit_length())
    row_mask = np.uint64((1 << row_bits) - 1)
    packed = keys[candidates] & ~row_mask
    packed |= candidates.astype(np.uint64)
    packed.sort()
    group_keys = packed >> np.uint64(row_bits)
    group_starts = np.flatnonzero(np.concatenate([[True], group_keys[1:] != group_keys[:-1]]))
    if len(candidates) - len(group_starts) < _DEDUP_MIN_SAVING * n_rows:
        return None, None
    sorted_rows = (packed & row_mask).astype(np.int64)
    group_sizes = np.diff(np.append(group_starts, len(packed)))
    owner = np.arange(n_rows, dtype=np.int64)
    owner[sorted_rows] = np.repeat(sorted_rows[group_starts], group_sizes)
    duplicates = np.flatnonzero(owner != np.arange(n_rows))
    same = _rows_equal(profiles, duplicates, owner[duplicates], pool)
    # A row that only shares a hash stays a row of its own.
    owner[duplicates[~same]] = duplicates[~same]
    ranked = np.flatnonzero(owner == np.arange(n_rows))
    position = np.empty(n_rows, dtype=np.int64)
    position[ranked] = np.arange(len(ranked))
    return ranked, position[owner]


def _row_keys(
    matrix: scipy.sparse.csr_matrix, pool: ThreadPoolExecutor | None
) -> npt.NDArray[np.uint64]:
    """A 64-bit key per row; equal rows (same entries in the same order) get equal keys.

    It mixes the row's length, the sum of its column numbers and the sum of
    its values' bit patterns (integer sums that wrap around), two passes
    over contiguous arrays, side by side on the pool.
    """
    n_rows = matrix.shape[0]
    lengths = np.diff(matrix.indptr)
    sums = [np.zeros(n_rows, dtype=np.uint64), np.zeros(n_rows, dtype=np.uint64)]
    bits_dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}.get(matrix.data.itemsize)
    arrays = [matrix.indices.view(np.uint32 if matrix.indices.itemsize == 4 else np.uint64)]
    if bits_dtype is not None:
        # Other value types (complex) leave it to the entry-by-entry comparison.
        arrays.append(np.ascontiguousarray(matrix.data).view(bits_dtype))

    def add_up(slot: int) -> None:
        if matrix.nnz:
            starts = np.minimum(matrix.indptr[:-1], matrix.nnz - 1)
            values = arrays[slot]
            totals = np.add.reduceat(values, starts, dtype=values.dtype)
            # reduceat gives an empty row the next row's first value: zero it.
            totals[lengths == 0] = 0
            sums[slot] = totals.astype(np.uint64)

    each(pool, add_up, range(len(arrays)))
    keys = _mix(lengths.astype(np.uint64))
    for total in sums:
        keys = _mix(keys ^ total)
    return keys


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: every input bit moves every output bit."""
    values = values ^ (values >> np.uint64(30))
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


def _rows_equal(
    matrix: scipy.sparse.csr_matrix,
    rows: npt.NDArray[np.int64],
    others: npt.NDArray[np.int64],
    pool: ThreadPoolExecutor | None,
) -> npt.NDArray[np.bool_]:
    """Whether each row holds exactly the entries of its other row, in the same order."""
    lengths = np.diff(matrix.indptr)
    same: npt.NDArray[np.bool_] = lengths[rows] == lengths[others]
    # Empty rows are equal; the others are compared a block of entries at a time.
    check = np.flatnonzero(same & (lengths[rows] > 0))
    check_indptr = np.concatenate([[0], np.cumsum(lengths[rows[check]], dtype=np.int64)])

    def compare(bounds: tuple[int, int]) -> None:
        block = check[bounds[0] : bounds[1]]
        mine = scipy.sparse.csr_matrix(matrix[rows[block]])
        theirs = scipy.sparse.csr_matrix(matrix[others[block]])
        equal = mine.indices == theirs.indices
        equal &= mine.data == theirs.data
        same[block] = np.logical_and.reduceat(equal, mine.indptr[:-1])

    each(pool, compare, row_blocks(check_indptr, len(check)))
    return same


def split_dense(
    dense: npt.NDArray[np.floating], ranked: npt.NDArray[np.int64], position: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Keep a sparse duplicate merged only when its dense row is identical too."""
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


def spread(
    indices: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    owner: npt.NDArray[np.int64],
    pool: ThreadPoolExecutor | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Every row's picks: those of its ranked row (indices[owner], scores[owner])."""
    all_indices = np.empty((len(owner), indices.shape[1]), dtype=indices.dtype)
    all_scores = np.empty((len(owner), scores.shape[1]), dtype=scores.dtype)

    def copy(bounds: tuple[int, int]) -> None:
        rows = owner[bounds[0] : bounds[1]]
        np.take(indices, rows, axis=0, out=all_indices[bounds[0] : bounds[1]])
        np.take(scores, rows, axis=0, out=all_scores[bounds[0] : bounds[1]])

    cuts = np.linspace(0, len(owner), cpu_count() + 1).astype(np.int64)
    each(pool, copy, itertools.pairwise(cuts.tolist()))
    return all_indices, all_scores
