"""Why a paper was picked: the shared terms that contributed most to its score.

A pick's cosine score is the sum over terms of profile[r, j] * paper[p, j];
the terms with the largest positive products are the readable reason
("matched on: diffusion models, segmentation").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import as_csr
from recommender.ranking import RankResult


def explain(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    result: RankResult,
    *,
    feature_names: npt.NDArray[np.str_],
    n_terms: int = 3,
) -> list[list[tuple[str, ...]]]:
    """Name the top contributing terms of every pick, so a reader sees why it was chosen."""
    profiles = as_csr(profiles, name="profiles")
    papers = as_csr(papers, name="papers")
    n_profiles, n_features = profiles.shape
    if papers.shape[1] != n_features:
        raise ValueError(f"profiles have {n_features} features but papers have {papers.shape[1]}")
    if len(feature_names) != n_features:
        raise ValueError(
            f"feature_names has {len(feature_names)} entries but the vectors have "
            f"{n_features} features"
        )
    if n_terms < 1:
        raise ValueError(f"n_terms must be at least 1, got {n_terms}")
    if result.indices.shape[0] != n_profiles:
        raise ValueError(
            f"result has {result.indices.shape[0]} rows but there are {n_profiles} profiles"
        )
    if result.indices.size and result.indices.max() >= papers.shape[0]:
        raise ValueError(
            f"result picks paper {result.indices.max()} but there are {papers.shape[0]} papers"
        )

    # One row per valid pick, in row-major order: pick i belongs to profile
    # pick_rows[i], and row-major order keeps each profile's picks best first.
    pick_rows, pick_slots = np.nonzero(result.indices >= 0)
    pick_papers = result.indices[pick_rows, pick_slots]
    contributions = profiles[pick_rows].multiply(papers[pick_papers]).tocoo()
    positive = contributions.data > 0
    pick = contributions.row[positive]
    term = contributions.col[positive]
    value = contributions.data[positive]

    # Group by pick, largest contribution first; the term index settles ties
    # so the output does not depend on storage order.
    order = np.lexsort((term, -value, pick))
    pick, term = pick[order], term[order]
    # Keep a few spare candidates per pick: overlapping n-grams are dropped below.
    group_start = np.searchsorted(pick, pick, side="left")
    keep = np.arange(len(pick)) - group_start < n_terms * _SPARE
    pick, term = pick[keep], term[keep]

    names: list[str] = feature_names[term].tolist()
    bounds = np.searchsorted(pick, np.arange(len(pick_rows) + 1), side="left").tolist()
    out: list[list[tuple[str, ...]]] = [[] for _ in range(n_profiles)]
    for i, row in enumerate(pick_rows.tolist()):
        out[row].append(_distinct(names[bounds[i] : bounds[i + 1]], n_terms))
    return out


_SPARE = 3


def _distinct(candidates: list[str], n_terms: int) -> tuple[str, ...]:
    """The best terms that share no word with a better-scoring candidate.

    Unigrams and bigrams of one phrase all score ("language models", "large language",
    "large"); naming the best of them says as much as naming all three, and a word is
    covered once any better candidate used it, even one that was itself left out.
    """
    chosen: list[str] = []
    covered: set[str] = set()
    for name in candidates:
        parts = set(name.split())
        if not parts & covered:
            chosen.append(name)
            if len(chosen) == n_terms:
                break
        covered |= parts
    return tuple(chosen)
