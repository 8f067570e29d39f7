"""Diversity: maximal marginal relevance (MMR), so an issue is not ten near-duplicates.

Greedy MMR picks, at each step, the candidate with the best

    trade_off * relevance - (1 - trade_off) * max similarity to the papers already picked.

It runs for all subscribers at once: each of the k steps is a handful of array
operations over an (n_profiles x n_candidates) block, with paper-to-paper
similarities looked up in one Gram matrix of the candidate papers.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from recommender._sparse import as_csr
from recommender.ranking import RankResult


def diversify(
    result: RankResult,
    papers: scipy.sparse.csr_matrix,
    *,
    k: int,
    trade_off: float = 0.8,
) -> RankResult:
    """Re-pick ``k`` of each row's candidates by MMR; ``trade_off`` 1.0 keeps relevance order.

    ``result`` should hold more candidates than ``k`` (say 3k) for MMR to have a
    choice. Scores in the answer are the original relevance scores.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not 0.0 <= trade_off <= 1.0:
        raise ValueError(f"trade_off must lie in [0, 1], got {trade_off}")
    papers = as_csr(papers, name="papers")
    indices, scores = result.indices, result.scores
    n_rows, width = indices.shape
    out_indices = np.full((n_rows, min(k, width)), -1, dtype=np.int64)
    out_scores = np.zeros(out_indices.shape, dtype=np.float32)
    if n_rows == 0 or width == 0:
        return RankResult(indices=out_indices, scores=out_scores)

    valid = indices >= 0
    used = np.unique(indices[valid])
    # Paper-to-paper cosine similarities among the papers any row may pick.
    local = np.searchsorted(used, np.where(valid, indices, used[0] if used.size else 0))
    block = papers[used]
    gram = np.asarray((block @ block.T).toarray(), dtype=np.float32)

    relevance = np.where(valid, scores, -np.inf).astype(np.float32)
    max_similarity = np.zeros((n_rows, width), dtype=np.float32)
    available = valid.copy()
    rows = np.arange(n_rows)
    for step in range(out_indices.shape[1]):
        objective = trade_off * relevance - (1.0 - trade_off) * max_similarity
        objective[~available] = -np.inf
        # argmax takes the first maximum: among equals, the more relevant candidate.
        choice = np.argmax(objective, axis=1)
        picked = available[rows, choice]
        if not picked.any():
            break
        out_indices[picked, step] = indices[rows[picked], choice[picked]]
        out_scores[picked, step] = scores[rows[picked], choice[picked]]
        available[rows[picked], choice[picked]] = False
        similarity = gram[local[rows, choice][:, None], local]
        np.maximum(max_similarity, similarity, out=max_similarity)
    return RankResult(indices=out_indices, scores=out_scores)
