"""Input checks shared by the functions that take sparse matrices."""

from __future__ import annotations

import numpy as np
import scipy.sparse


def as_csr(matrix: scipy.sparse.spmatrix, *, name: str) -> scipy.sparse.csr_matrix:
    """Return `matrix` as CSR, rejecting dense, non-2-D or non-finite input with a clear error."""
    if not scipy.sparse.issparse(matrix):
        raise ValueError(f"{name} must be a scipy sparse matrix, got {type(matrix).__name__}")
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional, got shape {matrix.shape}")
    csr = scipy.sparse.csr_matrix(matrix)
    # NaN compares false with everything, so it would silently never rank.
    if csr.dtype.kind == "f" and not np.isfinite(csr.data).all():
        raise ValueError(f"{name} must hold finite values only")
    return csr


def normalise_rows(matrix: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
    """L2-normalise every row; all-zero rows stay zero (sklearn's normalize rejects 0 rows)."""
    # Squares are summed in float64: float32 overflows above ~1.8e19 and loses
    # precision below ~1e-19.
    result = scipy.sparse.csr_matrix(matrix, dtype=np.float64, copy=True)
    result.eliminate_zeros()
    norms = np.sqrt(np.asarray(result.multiply(result).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    result.data *= np.repeat(scale, np.diff(result.indptr))
    return scipy.sparse.csr_matrix(result, dtype=np.float32)
