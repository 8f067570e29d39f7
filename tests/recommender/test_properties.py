"""Property-based tests of rank, explain and build_profiles.

Random inputs are drawn in two layers: hypothesis chooses the structure (shapes,
densities, how many rows are duplicates or all-zero, k, min_score, the exclusion
density) and a seed; a NumPy generator seeded from it fills in the values. That
keeps each example cheap while hypothesis still shrinks shapes and parameters
towards a small counterexample.

Ties are deliberate: rows are copies of a few distinct base rows, so duplicate
papers score bit-for-bit equal, and "coarse" matrices draw values from a small
set so distinct papers often tie too.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender import Document, RankResult, TfidfModel, build_profiles, explain, fit_model, rank

pytestmark = pytest.mark.slow  # hypothesis-heavy property tests

# Tolerance between rank's float32 scores and the float64 dot product of the same inputs.
TOL = 1e-5


def examples(n: int) -> settings:
    # No example database: a failure is reproduced from the printed example, and a
    # stale stored one cannot fail a later run.
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@dataclass(frozen=True)
class RankCase:
    profiles: scipy.sparse.csr_matrix
    papers: scipy.sparse.csr_matrix
    exclude: scipy.sparse.csr_matrix | None
    k: int
    min_score: float

    def __repr__(self) -> str:
        # Dense arrays in the falsifying example, so it can be pasted into a test.
        exclude = None if self.exclude is None else self.exclude.toarray().astype(int).tolist()
        return (
            f"RankCase(n_features={self.profiles.shape[1]}, "
            f"profiles={self.profiles.toarray().tolist()!r}, "
            f"papers={self.papers.toarray().tolist()!r}, exclude={exclude!r}, "
            f"k={self.k}, min_score={self.min_score!r})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with this hook.
        printer.text(repr(self))

    def run(self, **overrides: object) -> RankResult:
        arguments: dict[str, object] = {"k": self.k, "exclude": self.exclude}
        arguments["min_score"] = self.min_score
        arguments |= overrides
        return rank(self.profiles, self.papers, **arguments)  # type: ignore[arg-type]


def unit_rows(
    rng: np.random.Generator,
    n_rows: int,
    n_features: int,
    *,
    density: float,
    coarse: bool,
    n_distinct: int,
    zero_fraction: float,
) -> scipy.sparse.csr_matrix:
    """Sparse non-negative L2-normalised rows: copies of a few base rows, some all-zero."""
    if n_rows == 0:
        return scipy.sparse.csr_matrix((0, n_features), dtype=np.float32)
    shape = (n_distinct, n_features)
    if coarse:
        values = rng.choice([0.25, 0.5, 1.0], size=shape)
    else:
        values = rng.uniform(0.01, 1.0, size=shape)
    base = np.where(rng.random(shape) < density, values, 0.0)
    dense = base[rng.integers(n_distinct, size=n_rows)]
    dense[rng.random(n_rows) < zero_fraction] = 0.0
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    dense = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
    return scipy.sparse.csr_matrix(dense.astype(np.float32))


@st.composite
def unit_matrices(
    draw: st.DrawFn, n_rows: int, n_features: int, seed: int
) -> scipy.sparse.csr_matrix:
    return unit_rows(
        np.random.default_rng(seed),
        n_rows,
        n_features,
        density=draw(st.sampled_from([0.05, 0.15, 0.3, 0.6, 1.0])),
        coarse=draw(st.booleans()),
        n_distinct=draw(st.integers(1, max(1, n_rows))),
        zero_fraction=draw(st.sampled_from([0.0, 0.0, 0.1, 0.3])),
    )


@st.composite
def rank_cases(draw: st.DrawFn) -> RankCase:
    n_features = draw(st.integers(1, 25))
    n_profiles = draw(st.integers(0, 30))
    n_papers = draw(st.integers(0, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    profiles = draw(unit_matrices(n_profiles, n_features, seed))
    papers = draw(unit_matrices(n_papers, n_features, seed + 1))
    exclude_density = draw(st.sampled_from([None, 0.0, 0.1, 0.3, 0.7, 1.0]))
    exclude = None
    if exclude_density is not None:
        mask = np.random.default_rng(seed + 2).random((n_profiles, n_papers)) < exclude_density
        exclude = scipy.sparse.csr_matrix(mask)
    k = draw(st.integers(1, 50))
    min_score = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.5)))
    return RankCase(profiles, papers, exclude, k, min_score)


def excluded_mask(case: RankCase) -> np.ndarray:
    shape = (case.profiles.shape[0], case.papers.shape[0])
    return np.zeros(shape, dtype=bool) if case.exclude is None else case.exclude.toarray() != 0


def true_scores(case: RankCase) -> np.ndarray:
    profiles = case.profiles.toarray().astype(np.float64)
    papers = case.papers.toarray().astype(np.float64)
    return profiles @ papers.T


def duplicate_groups(papers: scipy.sparse.csr_matrix) -> list[list[int]]:
    """Indices of papers with bit-identical rows, each group in ascending order."""
    groups: defaultdict[bytes, list[int]] = defaultdict(list)
    for index, row in enumerate(papers.toarray()):
        groups[row.tobytes()].append(index)
    return [group for group in groups.values() if len(group) > 1]


def assert_same_result(actual: RankResult, expected: RankResult) -> None:
    np.testing.assert_array_equal(actual.indices, expected.indices)
    np.testing.assert_array_equal(actual.scores, expected.scores)


# --- rank ------------------------------------------------------------------------------------


@examples(60)
@given(case=rank_cases())
def test_rank_picks_are_valid_sorted_exact_and_padded(case: RankCase) -> None:
    result = case.run()
    n_profiles, n_papers = case.profiles.shape[0], case.papers.shape[0]
    assert result.indices.shape == result.scores.shape == (n_profiles, case.k)
    assert result.indices.dtype == np.int64
    assert result.scores.dtype == np.float32
    scores = true_scores(case)
    excluded = excluded_mask(case)
    for row in range(n_profiles):
        indices, values = result.indices[row], result.scores[row]
        valid = indices >= 0
        n_picks = int(valid.sum())
        # Padding: the picks come first, then -1 with score exactly 0.
        assert valid[:n_picks].all(), indices
        assert (indices[n_picks:] == -1).all(), indices
        assert (values[n_picks:] == 0.0).all(), values
        picks, picked_scores = indices[:n_picks], values[:n_picks].astype(np.float64)
        assert [index for index, _ in result.picks(row)] == picks.tolist()
        # Unique and in range, never excluded.
        assert len(set(picks.tolist())) == n_picks
        assert ((picks >= 0) & (picks < n_papers)).all()
        assert not excluded[row, picks].any()
        # Above the threshold, strictly positive, best first, equal to the dot product.
        assert (picked_scores > case.min_score).all(), (picked_scores, case.min_score)
        assert (picked_scores > 0).all()
        assert (np.diff(picked_scores) <= 0).all(), picked_scores
        np.testing.assert_allclose(picked_scores, scores[row, picks], rtol=0, atol=TOL)


@examples(60)
@given(case=rank_cases())
def test_rank_leaves_no_better_paper_out(case: RankCase) -> None:
    result = case.run()
    scores = true_scores(case)
    excluded = excluded_mask(case)
    for row in range(case.profiles.shape[0]):
        picks = [index for index, _ in result.picks(row)]
        unpicked = np.ones(case.papers.shape[0], dtype=bool)
        unpicked[picks] = False
        candidates = unpicked & ~excluded[row] & (scores[row] > 0)
        if len(picks) < case.k:
            # The issue is not full: no eligible paper may be missing (papers within TOL
            # of the threshold are ambiguous in float32 and not counted).
            missing = np.flatnonzero(candidates & (scores[row] > case.min_score + TOL))
            assert missing.size == 0, (row, picks, missing.tolist(), scores[row, missing])
        else:
            kth = float(result.scores[row, case.k - 1])
            eligible = candidates & (scores[row] > case.min_score)
            better = np.flatnonzero(eligible & (scores[row] > kth + TOL))
            assert better.size == 0, (row, picks, kth, better.tolist(), scores[row, better])


@examples(60)
@given(case=rank_cases())
def test_rank_breaks_ties_by_lower_paper_index(case: RankCase) -> None:
    result = case.run()
    excluded = excluded_mask(case)
    groups = duplicate_groups(case.papers)
    for row in range(case.profiles.shape[0]):
        picks = result.picks(row)
        # Equal scores next to each other: lower paper index first.
        for (first, first_score), (second, second_score) in itertools.pairwise(picks):
            if first_score == second_score:
                assert first < second, (row, picks)
        # Identical papers score identically, so of two eligible copies the lower index
        # is picked first, also when only one of them fits into the k slots.
        position = {index: slot for slot, (index, _) in enumerate(picks)}
        for group in groups:
            eligible = [index for index in group if not excluded[row, index]]
            for lower, higher in itertools.pairwise(eligible):
                if higher in position:
                    assert lower in position, (row, picks, lower, higher)
                    assert position[lower] < position[higher], (row, picks, lower, higher)


@examples(50)
@given(data=st.data(), case=rank_cases())
def test_rank_does_not_depend_on_profile_order(data: st.DataObject, case: RankCase) -> None:
    n_profiles = case.profiles.shape[0]
    order = np.array(data.draw(st.permutations(range(n_profiles)), label="order"), dtype=np.int64)
    exclude = None if case.exclude is None else case.exclude[order]
    permuted = rank(
        case.profiles[order], case.papers, k=case.k, exclude=exclude, min_score=case.min_score
    )
    original = case.run()
    np.testing.assert_array_equal(permuted.indices, original.indices[order])
    np.testing.assert_array_equal(permuted.scores, original.scores[order])


@examples(30)
@given(case=rank_cases())
def test_rank_does_not_depend_on_chunk_size(case: RankCase) -> None:
    large = case.run(chunk_size=10_000)
    assert_same_result(case.run(chunk_size=1), large)
    assert_same_result(case.run(chunk_size=3), large)
    assert_same_result(case.run(), large)


@examples(30)
@given(case=rank_cases())
def test_identical_profiles_get_identical_picks(case: RankCase) -> None:
    result = case.run()
    excluded = excluded_mask(case)
    rows = case.profiles.toarray()
    for first in range(len(rows)):
        for second in range(first + 1, len(rows)):
            if np.array_equal(rows[first], rows[second]) and np.array_equal(
                excluded[first], excluded[second]
            ):
                assert result.picks(first) == result.picks(second)


# --- explain ---------------------------------------------------------------------------------


@examples(50)
@given(case=rank_cases(), n_terms=st.integers(1, 6))
def test_explain_names_the_top_shared_terms_of_every_pick(case: RankCase, n_terms: int) -> None:
    result = case.run()
    n_features = case.profiles.shape[1]
    # Single-token names share no word, so explain drops no candidate as overlapping.
    names = np.array([f"t{j}" for j in range(n_features)])
    column = {name: j for j, name in enumerate(names.tolist())}
    out = explain(case.profiles, case.papers, result, feature_names=names, n_terms=n_terms)
    profiles, papers = case.profiles.toarray(), case.papers.toarray()
    assert len(out) == case.profiles.shape[0]
    for row, explanations in enumerate(out):
        picks = result.picks(row)
        assert len(explanations) == len(picks)
        for (paper, _), terms in zip(picks, explanations, strict=True):
            assert isinstance(terms, tuple)
            # A positive score has at least one positive shared term.
            assert 1 <= len(terms) <= n_terms, terms
            assert len(set(terms)) == len(terms), terms
            features = np.array([column[term] for term in terms], dtype=np.int64)
            assert (profiles[row, features] > 0).all(), (row, paper, terms)
            assert (papers[paper, features] > 0).all(), (row, paper, terms)
            contributions = profiles[row, features] * papers[paper, features]
            assert (np.diff(contributions) <= 0).all(), (terms, contributions)
            # And they are the best ones: the top n_terms shared terms, ties by index.
            products = profiles[row] * papers[paper]
            shared = [j for j in range(n_features) if products[j] > 0]
            best = sorted(shared, key=lambda j: (-products[j], j))[:n_terms]
            assert terms == tuple(names[best].tolist())


# --- build_profiles --------------------------------------------------------------------------

CORPUS = [
    Document("Robot grasping", "A robot arm learns to grasp unknown objects from touch."),
    Document("Legged locomotion", "Quadruped robots walk on rough terrain with learned gaits."),
    Document("Machine translation", "Neural translation between low-resource languages."),
    Document("Medical image segmentation", "Pixel-level labels for tumours in scans."),
    Document("Graph neural networks", "Message passing on molecular graphs predicts toxicity."),
    Document("Diffusion models for video", "Denoising diffusion generates coherent frames."),
    Document("Speech recognition", "Acoustic models transcribe noisy conversational speech."),
    Document("Protein folding", "Predicting protein structure from amino acid sequences."),
    Document("Reinforcement learning", "Agents learn policies from sparse delayed rewards."),
    Document("Federated learning", "Clients train a shared model without sharing data."),
    Document("Quantum error correction", "Surface codes protect logical qubits from noise."),
    Document("Galaxy clustering", "Dark matter halos shape the distribution of galaxies."),
    Document("Climate downscaling", "Regional rainfall projections from global simulations."),
    Document("Causal inference", "Estimating treatment effects from observational studies."),
    Document("Code generation", "Large language models write and repair programs."),
]
TEXTS = [
    "robot grasping",
    "machine translation of languages",
    "medical image segmentation",
    "graph neural networks for molecules",
    "diffusion models",
    "quantum error correction codes",
    "reinforcement learning agents",
    "the of and",  # only stop words: a zero vector
    "language models for code",
]


@pytest.fixture(scope="module")
def model() -> TfidfModel:
    fitted = fit_model(CORPUS)
    # The properties are about how build_profiles combines text vectors, not about
    # sklearn: vectorise TEXTS once (with the real model) and hand out copies, which
    # keeps a hypothesis example to a fraction of a millisecond.
    vectors = fitted.transform_texts(TEXTS)
    transform = fitted.transform_texts

    def cached(texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        return vectors.copy() if list(texts) == TEXTS else transform(texts)

    fitted.transform_texts = cached  # type: ignore[method-assign]
    return fitted


def text_vectors(model: TfidfModel) -> np.ndarray:
    return model.transform_texts(TEXTS).toarray().astype(np.float64)


@st.composite
def interest_triples(
    draw: st.DrawFn, weights: st.SearchStrategy[float]
) -> tuple[int, list[tuple[int, int, float]]]:
    n_profiles = draw(st.integers(1, 8))
    triple = st.tuples(st.integers(0, n_profiles - 1), st.integers(0, len(TEXTS) - 1), weights)
    return n_profiles, draw(st.lists(triple, max_size=25))


POSITIVE_WEIGHTS = st.floats(0.01, 100.0)
ANY_WEIGHTS = st.one_of(st.floats(-10.0, -0.01), st.floats(0.01, 10.0))


def profiles_from(
    model: TfidfModel, n_profiles: int, triples: list[tuple[int, int, float]]
) -> scipy.sparse.csr_matrix:
    rows = np.array([row for row, _, _ in triples], dtype=np.int64)
    cols = np.array([col for _, col, _ in triples], dtype=np.int64)
    weights = np.array([weight for _, _, weight in triples], dtype=np.float64)
    return build_profiles(
        model, texts=TEXTS, rows=rows, cols=cols, weights=weights, n_profiles=n_profiles
    )


def test_the_zero_text_really_is_zero(model: TfidfModel) -> None:
    # Guards the properties below: some profiles must come out all-zero.
    vectors = text_vectors(model)
    assert not vectors[TEXTS.index("the of and")].any()
    assert all(vectors[j].any() for j in range(len(TEXTS)) if TEXTS[j] != "the of and")


@examples(40)
@given(drawn=interest_triples(ANY_WEIGHTS))
def test_profile_rows_are_unit_norm_or_zero(
    model: TfidfModel, drawn: tuple[int, list[tuple[int, int, float]]]
) -> None:
    n_profiles, triples = drawn
    profiles = profiles_from(model, n_profiles, triples)
    assert profiles.shape == (n_profiles, model.n_features)
    assert profiles.dtype == np.float32
    dense = profiles.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=1)
    for row, norm in enumerate(norms):
        if profiles.getrow(row).nnz:
            assert abs(norm - 1.0) <= 1e-5, (row, norm)
        else:
            assert norm == 0.0


@examples(40)
@given(drawn=interest_triples(POSITIVE_WEIGHTS))
def test_profiles_are_the_normalised_weighted_sums(
    model: TfidfModel, drawn: tuple[int, list[tuple[int, int, float]]]
) -> None:
    n_profiles, triples = drawn
    profiles = profiles_from(model, n_profiles, triples).toarray().astype(np.float64)
    vectors = text_vectors(model)
    expected = np.zeros((n_profiles, model.n_features))
    for row, col, weight in triples:
        expected[row] += weight * vectors[col]
    for row in range(n_profiles):
        norm = np.linalg.norm(expected[row])
        # With positive weights a profile is zero exactly when all its texts are.
        if norm == 0:
            assert not profiles[row].any()
        else:
            np.testing.assert_allclose(profiles[row], expected[row] / norm, atol=1e-6)


@examples(40)
@given(data=st.data(), drawn=interest_triples(POSITIVE_WEIGHTS))
def test_profiles_do_not_depend_on_triple_order(
    model: TfidfModel, data: st.DataObject, drawn: tuple[int, list[tuple[int, int, float]]]
) -> None:
    n_profiles, triples = drawn
    shuffled = data.draw(st.permutations(triples), label="shuffled")
    original = profiles_from(model, n_profiles, triples)
    reordered = profiles_from(model, n_profiles, shuffled)
    # Same sparsity pattern (all-zero rows included), same values up to summation order.
    assert (original != 0).toarray().tolist() == (reordered != 0).toarray().tolist()
    np.testing.assert_allclose(reordered.toarray(), original.toarray(), rtol=0, atol=1e-6)


@examples(40)
@given(
    data=st.data(),
    drawn=interest_triples(POSITIVE_WEIGHTS),
    factor=st.floats(1e-6, 1e6),
)
def test_scaling_a_subscribers_weights_keeps_its_profile(
    model: TfidfModel,
    data: st.DataObject,
    drawn: tuple[int, list[tuple[int, int, float]]],
    factor: float,
) -> None:
    n_profiles, triples = drawn
    subscriber = data.draw(st.integers(0, n_profiles - 1), label="subscriber")
    scaled = [
        (row, col, weight * factor if row == subscriber else weight) for row, col, weight in triples
    ]
    original = profiles_from(model, n_profiles, triples).toarray()
    rescaled = profiles_from(model, n_profiles, scaled).toarray()
    np.testing.assert_allclose(rescaled, original, rtol=0, atol=1e-6)
