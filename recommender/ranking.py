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
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse
from threadpoolctl import threadpool_limits

from recommender._sparse import as_csr

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

# At most this many threads rank blocks in parallel (never more than the
# CPUs this process may use), and only for more than this many scores.
_MAX_WORKERS = 4
_PARALLEL_CELLS = 1 << 21
# Bytes of scores per block of profile rows (fewer rows than chunk_size
# when that is smaller): a block's temporary arrays are then reused from
# the heap instead of being mapped and page-faulted in anew each time.
_BLOCK_BYTES = 4 * 1024 * 1024
# Entries per block of the passes over all profile entries (counting terms,
# comparing rows), for the same reason.
_BLOCK_NNZ = 1 << 18
# A dense copy of the papers (shared terms x papers) is used when it is at
# most this big and cheaper than the sparse product by the cost model below.
_DENSE_PAPERS_MAX_BYTES = 256 * 1024 * 1024
# Measured on the 2-core benchmark machine: a multiply-add in scipy's sparse
# product (csr_matmat) costs about this many times one in its sparse-times-
# dense product (csr_matvecs).
_SPARSE_COST_FACTOR = 32
# Profile rows sampled for that cost model.
_COST_SAMPLE_ROWS = 20_000
# Looking for duplicate rows is only worth it when at least this share of
# the rows would go.
_DEDUP_MIN_SAVING = 0.1


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
    ``papers_t`` is the papers' float32 matrix transposed (d x n_papers)."""

    profiles: npt.NDArray[np.floating]
    papers_t: npt.NDArray[np.float32]
    sparse_weight: float
    dense_weight: float


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
    if exclude is not None:
        exclude = as_csr(exclude, name="exclude")
        if exclude.shape != (n_profiles, n_papers):
            raise ValueError(
                f"exclude must have shape (n_profiles, n_papers) = {(n_profiles, n_papers)}, "
                f"got {exclude.shape}"
            )
        # Stored zeros are not exclusions; only nonzero entries are.
        exclude = exclude.copy()
        exclude.eliminate_zeros()
        if exclude.nnz == 0:
            exclude = None

    width = min(k, n_papers)
    if width == 0 or n_profiles == 0:
        return RankResult(
            indices=np.full((n_profiles, k), -1, dtype=np.int64),
            scores=np.zeros((n_profiles, k), dtype=np.float32),
        )

    # Threads only pay off beyond a few blocks of scores.
    workers = min(_MAX_WORKERS, _cpu_count()) if n_profiles * n_papers > _PARALLEL_CELLS else 1
    # Blocks run side by side on the pool, so each BLAS call (the dense term) keeps to
    # one thread.
    one_blas_thread = dense is not None and workers > 1
    limits = threadpool_limits(1, user_api="blas") if one_blas_thread else nullcontext()
    with limits, ThreadPoolExecutor(max_workers=workers) if workers > 1 else nullcontext() as pool:
        # The scorer is prepared while duplicates are looked for.
        scorer_ready = _start(pool, _Scorer, profiles, papers)
        # Rank each distinct row once; owner[row] is the ranked row holding its picks.
        ranked, owner = _distinct_rows(profiles, exclude, pool)
        if dense is not None and ranked is not None and owner is not None:
            ranked, owner = _split_dense(dense.profiles, ranked, owner)
        n_ranked = n_profiles if ranked is None else len(ranked)
        indices = np.full((n_ranked, k), -1, dtype=np.int64)
        scores = np.zeros((n_ranked, k), dtype=np.float32)
        scorer = scorer_ready.result()
        itemsize = 4 if dense is not None else scorer.dtype.itemsize
        block = max(1, min(chunk_size, _BLOCK_BYTES // (n_papers * itemsize)))

        def rank_block(start: int) -> None:
            stop = min(start + block, n_ranked)
            rows = slice(start, stop) if ranked is None else ranked[start:stop]
            similarity = scorer.scores(profiles[rows])
            if dense is not None:
                similarity = np.asarray(similarity, dtype=np.float32)
                similarity *= np.float32(dense.sparse_weight)
                widened = dense.profiles[rows].astype(np.float32, copy=False)
                similarity += np.float32(dense.dense_weight) * (widened @ dense.papers_t)
            if exclude is not None:
                excluded = exclude[rows]
                if excluded.nnz:
                    # -inf marks "never pick": it is never above min_score.
                    in_block = np.repeat(np.arange(stop - start), np.diff(excluded.indptr))
                    similarity[in_block, excluded.indices] = -np.inf
            # Blocks write disjoint rows of the results.
            indices[start:stop, :width], scores[start:stop, :width] = _top_k(
                similarity, width, min_score
            )

        _each(pool, rank_block, range(0, n_ranked, block))
        if owner is not None:
            indices, scores = _spread(indices, scores, owner, pool)
    return RankResult(indices=indices, scores=scores)


def _check_dense(dense: DenseTerm, n_profiles: int, n_papers: int) -> None:
    if dense.profiles.shape[0] != n_profiles or dense.papers_t.shape[1] != n_papers:
        raise ValueError(
            f"dense rows must match: {dense.profiles.shape[0]} profiles vs {n_profiles}, "
            f"{dense.papers_t.shape[1]} papers vs {n_papers}"
        )
    if dense.profiles.shape[1] != dense.papers_t.shape[0]:
        raise ValueError("dense profiles and papers have a different number of dimensions")


def _split_dense(
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


def _spread(
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

    cuts = np.linspace(0, len(owner), _cpu_count() + 1).astype(np.int64)
    _each(pool, copy, itertools.pairwise(cuts.tolist()))
    return all_indices, all_scores


def _cpu_count() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _each(
    pool: ThreadPoolExecutor | None, func: Callable[[_Item], None], items: Iterable[_Item]
) -> None:
    """func(item) for every item: on the pool, if any, when there is more than one."""
    todo = list(items)
    if pool is None or len(todo) == 1:
        for item in todo:
            func(item)
    else:
        # list() waits for all of them and re-raises the first exception.
        list(pool.map(func, todo))


def _start(
    pool: ThreadPoolExecutor | None, func: Callable[..., _Result], *args: object
) -> Future[_Result]:
    """func(*args) on the pool, or right away without one."""
    if pool is not None:
        return pool.submit(func, *args)
    done: Future[_Result] = Future()
    done.set_result(func(*args))
    return done


class _Scorer:
    """Scores of blocks of profile rows against every paper, as dense arrays."""

    def __init__(self, profiles: scipy.sparse.csr_matrix, papers: scipy.sparse.csr_matrix) -> None:
        self.dtype = np.result_type(profiles.dtype, papers.dtype)
        self.papers_t: scipy.sparse.csr_matrix = papers.T.tocsr()
        self.column_of: npt.NDArray[np.signedinteger] | None = None
        self.dense_papers: npt.NDArray[np.floating] | None = None
        if self.dtype.kind != "f":
            # Integer or boolean input: the plain sparse product in its own
            # dtype, converted afterwards, exactly as it always was.
            return
        # Only terms that some paper and some profile have add to a score, so
        # the others are dropped. The kept columns are renumbered most used
        # first (the dense rows read most often then sit together); each
        # profile row keeps its entry order, hence the order of its sums.
        n_features = profiles.shape[1]
        uses = np.zeros(n_features, dtype=np.int64)
        step = 8 * _BLOCK_NNZ
        for lo in range(0, profiles.nnz, step):
            uses += np.bincount(profiles.indices[lo : lo + step], minlength=n_features)
        uses[np.diff(self.papers_t.indptr) == 0] = 0
        shared = np.flatnonzero(uses)
        shared = shared[np.argsort(-uses[shared], kind="stable")]
        self.column_of = np.full(n_features, -1, dtype=_index_dtype(len(shared)))
        self.column_of[shared] = np.arange(len(shared))
        self.papers_t = self.papers_t[shared].astype(self.dtype)
        # Cost model on a sample of rows: the sparse product does one
        # multiply-add per (profile term, paper with that term), the dense
        # one a whole row of papers per profile term, each far cheaper.
        sample = profiles[:: max(1, profiles.shape[0] // _COST_SAMPLE_ROWS)]
        sample_columns = self.column_of[sample.indices]
        sample_columns = sample_columns[sample_columns >= 0]
        document_frequency = np.diff(self.papers_t.indptr)
        sparse_cost = float(document_frequency[sample_columns].sum()) * _SPARSE_COST_FACTOR
        dense_cost = float(len(sample_columns)) * papers.shape[0]
        dense_bytes = len(shared) * papers.shape[0] * self.dtype.itemsize
        if dense_bytes <= _DENSE_PAPERS_MAX_BYTES and dense_cost <= sparse_cost:
            self.dense_papers = self.papers_t.toarray()

    def scores(self, block: scipy.sparse.csr_matrix) -> npt.NDArray[np.floating]:
        """The block's rows times papers.T, as a new writable dense array."""
        if self.column_of is not None:
            block = _keep_columns(block, self.column_of, self.papers_t.shape[0])
        if self.dense_papers is not None:
            # scipy's csr @ dense adds each row's terms in entry order, as
            # the sparse product does; a paper's zeros add nothing.
            return np.asarray(block @ self.dense_papers)
        similarity = np.asarray((block @ self.papers_t).toarray())
        if similarity.dtype.kind != "f":
            similarity = similarity.astype(np.float64)
        return similarity


def _keep_columns(
    matrix: scipy.sparse.csr_matrix, column_of: npt.NDArray[np.signedinteger], n_columns: int
) -> scipy.sparse.csr_matrix:
    """The matrix on the columns where column_of >= 0, renumbered, entry order kept."""
    new_columns = column_of[matrix.indices]
    keep = new_columns >= 0
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    return scipy.sparse.csr_matrix(
        (matrix.data[keep], new_columns[keep], kept_before[matrix.indptr]),
        shape=(matrix.shape[0], n_columns),
    )


def _index_dtype(n: int) -> type[np.signedinteger]:
    return np.int32 if n < np.iinfo(np.int32).max else np.int64


def _distinct_rows(
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

    _each(pool, add_up, range(len(arrays)))
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

    _each(pool, compare, _row_blocks(check_indptr, len(check)))
    return same


def _row_blocks(indptr: npt.NDArray[np.integer], n_rows: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) row ranges of about _BLOCK_NNZ entries each."""
    cuts = np.searchsorted(indptr, np.arange(_BLOCK_NNZ, int(indptr[n_rows]), _BLOCK_NNZ))
    bounds = np.unique(np.concatenate([[0], cuts, [n_rows]]).astype(np.int64))
    return list(itertools.pairwise(bounds.tolist()))


def _top_k(
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
