"""Hybrid ranking: a weighted sum of TF-IDF and sentence-embedding cosines (the
optional ``semantic`` extra).

    score = tfidf * cos(tfidf profile, tfidf paper) + dense * cos(dense profile, dense paper)
            - background penalty(paper) - density term(paper)

The dense vectors are whitened by the caller before they get here (planning and the
batch command fit ``recommender.whitening`` on the papers being ranked and pass every
dense vector through it). The background penalty (issue 16) pushes down papers that
are closer than average to the mean of the papers being ranked, in either space:
generic papers that match every profile a little. It is one number per paper, the
same for every profile, so it costs nothing at scale; it never raises a score, so a
profile with no interests still picks nothing.

The density term (issue 16, third pass) is hubness reduction in the dense space, after
the CSLS score of Lample et al. (2018, "Word translation without parallel data"): a paper
whose nearest neighbours among the papers being ranked are close (a crowded region,
where near-duplicates and generic papers sit) is near many profiles for that reason
alone, so its dense cosine is lowered by the mean cosine of its nearest 2% of papers,
counted from the papers' average: crowded papers go down, isolated ones up, the
average score stays where it was (so ``min_score_semantic`` keeps its meaning). It is
one number per paper too: one (papers x papers) product per set of papers, nothing per
profile. As it can raise a score, a profile with no interests at all (both halves zero)
is given no picks explicitly.

Ranked like ``rank``: a block of profiles at a time (the TF-IDF part through the
same sparse scorer, the dense part one float32 BLAS product per block), identical
profiles ranked once, the best k selected without a full sort. Explanations still
come from the TF-IDF vectors alone (``explain``).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender.ranking import DenseTerm, RankResult, rank

# Chosen on the CiteULike-a tuning users (benchmarks/README.md, issue 16.3): the dense
# cosine (on whitened vectors, recommender.whitening) twice the TF-IDF one, background
# penalties 0.4 (TF-IDF) and 0.5 (dense) of the TF-IDF weight. Only their ratios change
# a ranking; the scale keeps the dense weight at 0.35, as before whitening, so a paper
# whose only tie to a profile is a dense cosine of 0.16 stays below min_score_semantic
# (0.06; tests/test_editions.py). min_score_semantic was not recalibrated for whitened
# cosines (benchmarks/calibrate_min_score.py).
_SCALE = 0.175
TFIDF_WEIGHT = _SCALE
DENSE_WEIGHT = 2 * _SCALE
TFIDF_BACKGROUND = 0.4 * _SCALE
DENSE_BACKGROUND = 0.5 * _SCALE
# The density term: 0.5 of the dense weight times a paper's mean cosine with its nearest
# DENSITY_SHARE of the papers, less the papers' average (CiteULike-a tuning users,
# benchmarks/README.md: recall@300 0.512 -> 0.520; 1% to 6% of the papers and 0.5 to
# 0.625 all gave 0.519-0.520).
DENSE_DENSITY = 0.5 * DENSE_WEIGHT
DENSITY_SHARE = 0.02
# Fewer papers than this: their mean is no background, and no penalty is applied.
MIN_BACKGROUND_PAPERS = 50
# Bytes of (papers x papers) cosines held at once while the density is computed (the
# partition copies a block: twice that at the peak), however many papers there are.
_DENSITY_BLOCK_BYTES = 32 * 1024 * 1024
# Densities of the last few sets of papers, by content: planning ranks an edition's
# candidates in batches of subscribers, each batch a call with the same papers; a hash of
# the vectors (~1 ms for 1,000 papers) then replaces the product (~25 ms).
_DENSITY_CACHE_SIZE = 4
_density_cache: OrderedDict[tuple[bytes, float], npt.NDArray[np.float64]] = OrderedDict()
_density_lock = threading.Lock()


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the two cosines and of the background penalty in each space.

    Chosen on the tuning users of the CiteULike-a evaluation (issue 16.3,
    benchmarks/README.md); on the arXiv days' simulated subscribers the dense weight
    was 0.25 before (nDCG@10 0.531 there, 0.519 at 1.0)."""

    tfidf: float = TFIDF_WEIGHT
    dense: float = DENSE_WEIGHT
    tfidf_background: float = TFIDF_BACKGROUND
    dense_background: float = DENSE_BACKGROUND
    dense_density: float = DENSE_DENSITY

    def __post_init__(self) -> None:
        for name in ("tfidf", "dense", "tfidf_background", "dense_background", "dense_density"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite, non-negative weight, got {value}")


def rank_hybrid(
    profiles: scipy.sparse.csr_matrix,
    papers: scipy.sparse.csr_matrix,
    dense_profiles: npt.NDArray[np.floating],
    dense_papers: npt.NDArray[np.floating],
    *,
    k: int,
    weights: HybridWeights | None = None,
    exclude: scipy.sparse.csr_matrix | None = None,
    min_score: float = 0.0,
    chunk_size: int = 5000,
) -> RankResult:
    """Each profile's k best papers by the hybrid score (rows of both kinds align); a
    profile with neither TF-IDF terms nor a dense vector gets none."""
    weights = weights or HybridWeights()
    # float16 profiles (half the memory of a million rows) are widened a block at a time.
    dense_profiles = np.asarray(dense_profiles)
    if dense_profiles.dtype not in (np.float16, np.float32):
        dense_profiles = dense_profiles.astype(np.float32)
    dense_papers = np.asarray(dense_papers, dtype=np.float32)
    dense = DenseTerm(
        profiles=dense_profiles,
        papers_t=np.ascontiguousarray(dense_papers.T),
        sparse_weight=weights.tfidf,
        dense_weight=weights.dense,
        paper_offset=background_penalty(papers, dense_papers, weights),
    )
    result = rank(
        profiles,
        papers,
        k=k,
        exclude=exclude,
        min_score=min_score,
        chunk_size=chunk_size,
        dense=dense,
    )
    if dense.paper_offset is None or dense.paper_offset.max() <= 0:
        return result
    # The density term raises isolated papers: a profile with nothing in it would pick
    # them for that alone. Only rows without TF-IDF terms are looked at in dense form.
    empty = np.flatnonzero(np.diff(scipy.sparse.csr_matrix(profiles).indptr) == 0)
    empty = empty[~dense_profiles[empty].any(axis=1)]
    if len(empty) == 0:
        return result
    indices, scores = result.indices.copy(), result.scores.copy()
    indices[empty], scores[empty] = -1, 0.0
    return RankResult(indices=indices, scores=scores)


def background_penalty(
    papers: scipy.sparse.csr_matrix,
    dense_papers: npt.NDArray[np.float32],
    weights: HybridWeights,
) -> npt.NDArray[np.float32] | None:
    """Each paper's offset: minus its excess cosine with the papers' mean direction, in
    each space (0 for papers no closer to it than average), minus its density term
    (``neighbour_density``, negative for papers less crowded than average); None when
    there is none."""
    n_papers = dense_papers.shape[0]
    if n_papers < MIN_BACKGROUND_PAPERS:
        return None
    sparse = scipy.sparse.csr_matrix(papers)
    penalty = np.zeros(n_papers, dtype=np.float64)
    for weight, mean, rows in (
        (weights.tfidf_background, np.asarray(sparse.mean(axis=0)).ravel(), sparse),
        (weights.dense_background, dense_papers.mean(axis=0), dense_papers),
    ):
        norm = float(np.linalg.norm(mean))
        if weight == 0 or norm == 0:
            continue
        closeness = np.asarray(rows @ (mean / norm), dtype=np.float64).ravel()
        penalty += weight * np.maximum(closeness - closeness.mean(), 0.0)
    if weights.dense_density > 0:
        penalty += weights.dense_density * neighbour_density(dense_papers)
    if not penalty.any():
        return None
    return (-penalty).astype(np.float32)


def neighbour_density(
    dense_papers: npt.NDArray[np.float32], *, share: float = DENSITY_SHARE
) -> npt.NDArray[np.float64]:
    """Each paper's mean cosine with its nearest ``share`` of the other papers (at least
    one), minus the average of that over the papers: positive where the neighbourhood is
    more crowded than average, negative where less. Rows are taken a block at a time
    (bounded memory); the last few results are kept, keyed by the vectors' content."""
    vectors = np.ascontiguousarray(dense_papers, dtype=np.float32)
    digest = hashlib.blake2b(vectors.data, digest_size=16)  # the buffer itself, no copy
    digest.update(str(vectors.shape).encode())
    key = (digest.digest(), float(share))
    with _density_lock:
        if key in _density_cache:
            _density_cache.move_to_end(key)
            return _density_cache[key].copy()
    density = _neighbour_density(vectors, share)
    with _density_lock:
        _density_cache[key] = density
        while len(_density_cache) > _DENSITY_CACHE_SIZE:
            _density_cache.popitem(last=False)
    return density.copy()


def _neighbour_density(vectors: npt.NDArray[np.float32], share: float) -> npt.NDArray[np.float64]:
    n_papers = len(vectors)
    if n_papers < 2:
        return np.zeros(n_papers)
    neighbours = min(n_papers - 1, max(1, round(share * n_papers)))
    density = np.empty(n_papers, dtype=np.float64)
    rows = max(1, _DENSITY_BLOCK_BYTES // (n_papers * vectors.itemsize))
    for first in range(0, n_papers, rows):
        stop = min(first + rows, n_papers)
        cosines = vectors[first:stop] @ vectors.T
        # A paper is not its own neighbour.
        cosines[np.arange(stop - first), np.arange(first, stop)] = -np.inf
        nearest = np.partition(cosines, n_papers - neighbours, axis=1)[:, n_papers - neighbours :]
        density[first:stop] = nearest.mean(axis=1, dtype=np.float64)
    return np.asarray(density - density.mean(), dtype=np.float64)
