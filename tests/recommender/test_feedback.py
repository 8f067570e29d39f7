"""Tests of apply_feedback, decay and FeedbackWeights: the Rocchio update of profiles."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse

from recommender import FeedbackWeights, apply_feedback, decay


def unit(vector: list[float]) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


def csr(rows: list[np.ndarray] | list[list[float]]) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(np.array(rows, dtype=np.float32))


def cosine(vector: np.ndarray, other: np.ndarray) -> float:
    return float(vector @ other / (np.linalg.norm(vector) * np.linalg.norm(other)))


# Five features. Profiles 0 and 1 hold the same interest, profile 2 a different one,
# profile 3 none at all. Paper 0 overlaps interest 0 on feature 0; papers 1 and 2 are
# symmetric with respect to interest 0; paper 3 lies outside it.
INTERESTS = csr(
    [
        unit([1, 1, 0, 0, 0]),
        unit([1, 1, 0, 0, 0]),
        unit([0, 0, 1, 1, 0]),
        [0, 0, 0, 0, 0],
    ]
)
PAPERS = csr(
    [
        unit([1, 0, 1, 0, 0]),
        unit([1, 0, 0, 1, 0]),
        unit([0, 1, 0, 0, 1]),
        unit([0, 0, 0, 1, 1]),
    ]
)
NO_EVENTS: dict[str, Any] = {"rows": [], "cols": [], "values": [], "ages_days": []}


def feedback(
    rows: list[int],
    cols: list[int],
    values: list[int],
    ages_days: list[float] | None = None,
    *,
    interests: scipy.sparse.csr_matrix = INTERESTS,
    weights: FeedbackWeights | None = None,
) -> np.ndarray:
    ages = [0.0] * len(rows) if ages_days is None else ages_days
    profiles = apply_feedback(
        interests, PAPERS, rows=rows, cols=cols, values=values, ages_days=ages, weights=weights
    )
    return profiles.toarray().astype(np.float64)


def paper(index: int) -> np.ndarray:
    return PAPERS.toarray()[index].astype(np.float64)


# --- decay -----------------------------------------------------------------------------------


@pytest.mark.parametrize("half_life", [1.0, 30.0, 120.0, 365.25])
def test_decay_is_one_today_and_halves_every_half_life(half_life: float) -> None:
    assert decay(0.0, half_life_days=half_life) == 1.0
    assert decay(half_life, half_life_days=half_life) == pytest.approx(0.5, abs=1e-12)
    assert decay(2 * half_life, half_life_days=half_life) == pytest.approx(0.25, abs=1e-12)
    np.testing.assert_allclose(
        decay([0.0, half_life, 3 * half_life], half_life_days=half_life),
        [1.0, 0.5, 0.125],
        rtol=1e-12,
    )


def test_decay_is_strictly_decreasing_in_age() -> None:
    ages = np.linspace(0.0, 1500.0, 301)
    weights = decay(ages, half_life_days=120.0)
    assert weights.shape == ages.shape
    assert (np.diff(weights) < 0).all()
    assert (weights > 0).all()
    assert weights[0] == 1.0


def test_longer_half_life_decays_slower() -> None:
    assert decay(100.0, half_life_days=200.0) > decay(100.0, half_life_days=50.0)


@pytest.mark.parametrize("ages", [[-1.0], [0.0, -0.001], [np.nan], [5.0, np.nan], [np.inf]])
def test_decay_rejects_negative_and_non_finite_ages(ages: list[float]) -> None:
    with pytest.raises(ValueError, match="ages_days must be finite and non-negative"):
        decay(ages, half_life_days=120.0)


@pytest.mark.parametrize("age", [-1.0, np.nan])
def test_apply_feedback_rejects_bad_ages(age: float) -> None:
    with pytest.raises(ValueError, match="ages_days must be finite and non-negative"):
        apply_feedback(INTERESTS, PAPERS, rows=[0], cols=[0], values=[1], ages_days=[age])


# --- direction of the update -----------------------------------------------------------------


def test_liked_paper_moves_the_profile_towards_it() -> None:
    before = feedback(**NO_EVENTS)
    after = feedback([0], [3], [1])
    assert cosine(before[0], paper(3)) == pytest.approx(0.0, abs=1e-7)
    assert cosine(after[0], paper(3)) > cosine(before[0], paper(3)) + 0.1
    # Also for a paper the interest already overlaps.
    after_overlapping = feedback([0], [0], [1])
    assert cosine(after_overlapping[0], paper(0)) > cosine(before[0], paper(0)) + 0.1


def test_disliked_paper_moves_the_profile_away_from_it() -> None:
    before = feedback(**NO_EVENTS)
    after = feedback([0], [0], [-1])
    assert cosine(before[0], paper(0)) > 0.4
    assert cosine(after[0], paper(0)) < cosine(before[0], paper(0)) - 0.1
    # The term shared with the disliked paper loses weight; the other interest term gains.
    assert after[0, 0] < before[0, 0]
    assert after[0, 1] > before[0, 1]


def test_newer_feedback_pulls_harder_than_older_feedback() -> None:
    # Profiles 0 and 1 have the same interest and like the same paper, 0 and 365
    # days ago: the fresh "more like this" must move its profile further.
    profiles = feedback([0, 1], [3, 3], [1, 1], [0.0, 365.0])
    assert cosine(profiles[0], paper(3)) > cosine(profiles[1], paper(3)) + 0.05


def test_newer_dislike_pushes_harder_than_older_dislike() -> None:
    profiles = feedback([0, 1], [0, 0], [-1, -1], [0.0, 365.0])
    assert cosine(profiles[0], paper(0)) < cosine(profiles[1], paper(0)) - 0.05


def test_newer_feedback_outweighs_older_feedback_in_one_profile() -> None:
    # Papers 1 and 2 are mirror images with respect to interest 0: liked at the same
    # age they pull equally, liked at different ages the newer one wins.
    equal = feedback([0, 0], [1, 2], [1, 1], [10.0, 10.0])
    assert cosine(equal[0], paper(1)) == pytest.approx(cosine(equal[0], paper(2)), abs=1e-6)
    newer_first = feedback([0, 0], [1, 2], [1, 1], [0.0, 365.0])
    assert cosine(newer_first[0], paper(1)) > cosine(newer_first[0], paper(2)) + 0.05
    newer_second = feedback([0, 0], [1, 2], [1, 1], [365.0, 0.0])
    assert cosine(newer_second[0], paper(2)) > cosine(newer_second[0], paper(1)) + 0.05


def test_liked_only_profile_points_at_the_mean_of_the_liked_papers() -> None:
    profiles = feedback([3, 3], [1, 2], [1, 1])
    expected = unit(list((paper(1) + paper(2)) / 2))
    np.testing.assert_allclose(profiles[3], expected, atol=1e-6)
    assert np.linalg.norm(profiles[3]) == pytest.approx(1.0, abs=1e-6)


def test_liked_only_profile_weights_the_mean_by_age() -> None:
    ages = [0.0, 120.0, 240.0]
    profiles = feedback([3, 3, 3], [0, 1, 3], [1, 1, 1], ages)
    weights = decay(ages, half_life_days=FeedbackWeights().half_life_days)
    expected = unit(list(weights[0] * paper(0) + weights[1] * paper(1) + weights[2] * paper(3)))
    np.testing.assert_allclose(profiles[3], expected, atol=1e-6)


def test_profiles_without_feedback_are_the_normalised_interests() -> None:
    # Interests need not come normalised; profiles without events are them, normalised.
    interests = csr([[2, 2, 0, 0, 0], [0, 0, 3, 0, 4], [0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0]])
    profiles = feedback([0, 0], [3, 1], [1, -1], interests=interests)
    expected = np.array(
        [[0, 0, 0, 0, 0], [0, 0, 0.6, 0, 0.8], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]], dtype=np.float64
    )
    np.testing.assert_allclose(profiles[1:], expected[1:], atol=1e-7)
    assert not profiles[2].any()
    # ...and the profile with events did change.
    assert not np.allclose(profiles[0], unit([1, 1, 0, 0, 0]), atol=1e-3)


def test_no_events_at_all_gives_the_normalised_interests() -> None:
    profiles = feedback(**NO_EVENTS)
    np.testing.assert_allclose(profiles, INTERESTS.toarray(), atol=1e-7)


def test_liking_a_paper_five_times_is_liking_it_once() -> None:
    once = feedback([0], [3], [1])
    five_times = feedback([0] * 5, [3] * 5, [1] * 5)
    np.testing.assert_allclose(five_times, once, atol=1e-7)
    disliked_once = feedback([0], [0], [-1])
    disliked_five_times = feedback([0] * 5, [0] * 5, [-1] * 5)
    np.testing.assert_allclose(disliked_five_times, disliked_once, atol=1e-7)


def test_many_liked_papers_pull_no_harder_than_one() -> None:
    # A mean, not a sum: three liked copies of the same direction pull like one.
    interests = csr([unit([1, 1, 0, 0, 0]), unit([1, 1, 0, 0, 0])])
    papers = csr([unit([0, 0, 0, 1, 1])] * 3)
    one = apply_feedback(interests, papers, rows=[0], cols=[0], values=[1], ages_days=[0])
    three = apply_feedback(
        interests, papers, rows=[1, 1, 1], cols=[0, 1, 2], values=[1, 1, 1], ages_days=[0, 0, 0]
    )
    np.testing.assert_allclose(three.toarray()[1], one.toarray()[0], atol=1e-7)


def test_weights_set_the_balance() -> None:
    no_feedback = feedback(**NO_EVENTS)
    ignored = feedback([0, 0], [3, 0], [1, -1], weights=FeedbackWeights(liked=0.0, disliked=0.0))
    np.testing.assert_allclose(ignored, no_feedback, atol=1e-7)
    light = feedback([0], [3], [1], weights=FeedbackWeights(liked=0.2))
    heavy = feedback([0], [3], [1], weights=FeedbackWeights(liked=5.0))
    assert cosine(heavy[0], paper(3)) > cosine(light[0], paper(3)) + 0.1
    only_liked = feedback([0], [3], [1], weights=FeedbackWeights(interests=0.0))
    np.testing.assert_allclose(only_liked[0], paper(3), atol=1e-6)


# --- validation ------------------------------------------------------------------------------

VALID: dict[str, Any] = {"rows": [0, 1], "cols": [0, 1], "values": [1, -1], "ages_days": [0, 1]}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rows": [0]}, "same length"),
        ({"cols": [0, 1, 2]}, "same length"),
        ({"values": [1]}, "same length"),
        ({"ages_days": [0, 1, 2]}, "same length"),
        ({"rows": [0, 4]}, r"rows must lie in \[0, 4\)"),
        ({"rows": [-1, 0]}, r"rows must lie in \[0, 4\)"),
        ({"cols": [0, 4]}, r"cols must lie in \[0, 4\)"),
        ({"cols": [-1, 0]}, r"cols must lie in \[0, 4\)"),
        ({"values": [1, 0]}, r"values must be \+1"),
        ({"values": [1, 2]}, r"values must be \+1"),
        ({"values": [0.5, 1]}, r"values must be \+1"),
        ({"values": [-2, 1]}, r"values must be \+1"),
        ({"papers": csr([[1, 0, 0, 0, 0, 0]])}, "5 features but papers have 6"),
        ({"interests": csr([[1, 0, 0]])}, "3 features but papers have 5"),
        ({"interests": np.eye(4, 5, dtype=np.float32)}, "must be a scipy sparse matrix"),
        ({"papers": csr([[np.nan, 0, 0, 0, 0]] * 4)}, "finite"),
    ],
)
def test_invalid_input_is_rejected(arguments: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {"interests": INTERESTS, "papers": PAPERS} | VALID | arguments
    with pytest.raises(ValueError, match=message):
        apply_feedback(**call)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"interests": -1.0}, "interests must be a finite, non-negative weight"),
        ({"liked": -0.5}, "liked must be a finite, non-negative weight"),
        ({"disliked": -1e-9}, "disliked must be a finite, non-negative weight"),
        ({"liked": float("nan")}, "liked must be a finite, non-negative weight"),
        ({"disliked": float("inf")}, "disliked must be a finite, non-negative weight"),
        ({"half_life_days": 0.0}, "half_life_days must be positive"),
        ({"half_life_days": -30.0}, "half_life_days must be positive"),
        ({"half_life_days": float("nan")}, "half_life_days must be positive"),
    ],
)
def test_invalid_feedback_weights_are_rejected(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FeedbackWeights(**arguments)


def test_zero_feedback_weights_are_allowed() -> None:
    weights = FeedbackWeights(interests=0.0, liked=0.0, disliked=0.0)
    assert (weights.interests, weights.liked, weights.disliked) == (0.0, 0.0, 0.0)


# --- shape of the result ---------------------------------------------------------------------


def test_rows_are_unit_norm_or_zero_float32() -> None:
    result = apply_feedback(
        INTERESTS,
        PAPERS,
        rows=[0, 0, 1, 2, 2, 3, 3],
        cols=[0, 3, 2, 2, 3, 1, 1],
        values=[1, -1, -1, 1, 1, -1, -1],
        ages_days=[0, 10, 400, 3, 0, 1, 2],
    )
    assert isinstance(result, scipy.sparse.csr_matrix)
    assert result.shape == INTERESTS.shape
    assert result.dtype == np.float32
    norms = np.linalg.norm(result.toarray().astype(np.float64), axis=1)
    for row, norm in enumerate(norms):
        assert norm == 0.0 or abs(norm - 1.0) <= 1e-6, (row, norm)
    # A profile whose interest and feedback cancel exactly is zero, with nothing stored.
    cancelled = apply_feedback(
        csr([paper(3)]),
        PAPERS,
        rows=[0],
        cols=[3],
        values=[-1],
        ages_days=[0],
        weights=FeedbackWeights(disliked=1.0),
    )
    assert cancelled.nnz == 0


def test_result_is_deterministic_and_inputs_are_untouched() -> None:
    interests, papers = INTERESTS.copy(), PAPERS.copy()
    events: dict[str, Any] = {
        "rows": np.array([0, 2, 3, 3, 1]),
        "cols": np.array([1, 0, 2, 3, 3]),
        "values": np.array([1, -1, 1, 1, -1]),
        "ages_days": np.array([3.0, 50.0, 0.0, 200.0, 7.0]),
    }
    first = apply_feedback(interests, papers, **events)
    second = apply_feedback(interests, papers, **events)
    np.testing.assert_array_equal(first.indptr, second.indptr)
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(interests.toarray(), INTERESTS.toarray())
    np.testing.assert_array_equal(papers.toarray(), PAPERS.toarray())
