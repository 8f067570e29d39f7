"""What a pick has to show for itself: the score a minimum is held against.

The hybrid ranks by whitened embeddings with penalties (``recommender.hybrid``): good
for ordering, but whitening centres the vectors, so a typical cosine is near 0 and an
absolute minimum on those scores separates nothing (benchmarks/README.md, "The hybrid's
minimum score"). A pick's *evidence* is the score the minimum was calibrated on (issue
8): its TF-IDF cosine plus ``dense_weight`` times the cosine of the raw (unwhitened)
embeddings, profile without the per-subscriber model. Computed for the picks only,
never for every (subscriber, paper) pair.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import as_csr

# The dense weight of the score `min_score_semantic` was calibrated on (issue 8).
EVIDENCE_DENSE_WEIGHT = 0.25
# Subscribers per block: a block gathers rows x picks x dimensions floats at once.
_BLOCK = 256


def pick_evidence(
    profiles: scipy.sparse.spmatrix,
    papers: scipy.sparse.spmatrix,
    raw_profiles: npt.NDArray[np.floating],
    raw_papers: npt.NDArray[np.floating],
    indices: npt.NDArray[np.integer],
    *,
    dense_weight: float = EVIDENCE_DENSE_WEIGHT,
) -> npt.NDArray[np.float32]:
    """Each pick's evidence (``indices``: one row per profile, columns of ``papers``,
    -1 for no pick, which gets 0). TF-IDF rows are unit vectors, as ``rank`` takes them;
    the raw embeddings are unit vectors too."""
    profiles_csr = as_csr(profiles, name="profiles")
    papers_csr = as_csr(papers, name="papers")
    paper_vectors = np.asarray(raw_papers, dtype=np.float32)
    n_rows, width = indices.shape
    valid = indices >= 0
    safe = np.where(valid, indices, 0)
    out = np.zeros((n_rows, width), dtype=np.float32)
    if n_rows == 0 or width == 0:
        return out
    for start in range(0, n_rows, _BLOCK):
        stop = min(n_rows, start + _BLOCK)
        block = safe[start:stop]
        repeated = profiles_csr[np.repeat(np.arange(start, stop), width)]
        picked = papers_csr[block.ravel()]
        tfidf = np.asarray(repeated.multiply(picked).sum(axis=1), dtype=np.float32)
        dense = np.einsum(
            "nd,nwd->nw",
            np.asarray(raw_profiles[start:stop], dtype=np.float32),
            paper_vectors[block],
        )
        out[start:stop] = tfidf.reshape(stop - start, width) + np.float32(dense_weight) * dense
    return np.where(valid, out, np.float32(0.0))
