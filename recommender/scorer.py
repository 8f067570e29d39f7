"""The scores of blocks of profile rows against every paper: the cosine product.

The product is taken over the terms both sides use, against a dense copy of the
papers (one row update per profile term) when a cost model says that is cheaper than
the sparse product. Either way each score sums the same products in the same order as
the plain sparse product, so scores are identical bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender import blocks

# A dense copy of the papers (shared terms x papers) is used when it is at
# most this big and cheaper than the sparse product by the cost model below.
_DENSE_PAPERS_MAX_BYTES = 256 * 1024 * 1024
# Measured on the 2-core benchmark machine: a multiply-add in scipy's sparse
# product (csr_matmat) costs about this many times one in its sparse-times-
# dense product (csr_matvecs).
_SPARSE_COST_FACTOR = 32
# Profile rows sampled for that cost model.
_COST_SAMPLE_ROWS = 20_000


class Scorer:
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
        step = 8 * blocks.BLOCK_NNZ
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
