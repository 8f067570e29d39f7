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
