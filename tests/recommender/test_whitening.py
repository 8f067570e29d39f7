"""Whitening of the dense vectors (recommender.whitening): what all papers share stops
deciding cosines; few papers, zero rows and bad strengths. Plain numpy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from recommender.semantic import normalise
from recommender.whitening import MIN_PAPERS, fit_whitening, whiten

DIM, N_TOPICS, PER_TOPIC = 32, 4, 60


def _anisotropic(seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Papers as sentence models give them: a direction every paper shares, a loud
    direction that says nothing about the topic (style, length), and a quieter topic
    signal; unit rows, and each paper's topic."""
    rng = np.random.default_rng(seed)
    common = normalise(rng.standard_normal((1, DIM)))[0]
    loud = normalise(rng.standard_normal((1, DIM)))[0]
    centres = normalise(rng.standard_normal((N_TOPICS, DIM)))
    topics = np.repeat(np.arange(N_TOPICS), PER_TOPIC)
    n = len(topics)
    papers = (
        3.0 * common
        + 8.0 * rng.standard_normal((n, 1)) * loud
        + 0.6 * centres[topics]
        + 0.3 * rng.standard_normal((n, DIM)) / np.sqrt(DIM)
    )
    return normalise(papers), topics


def _same_topic_share(vectors: npt.NDArray[np.float32], topics: npt.NDArray[np.int64]) -> float:
    """How many of each paper's 10 nearest neighbours (cosine) share its topic."""
    cosines = vectors @ vectors.T
    np.fill_diagonal(cosines, -np.inf)
    nearest = np.argsort(-cosines, axis=1)[:, :10]
    return float((topics[nearest] == topics[:, None]).mean())


def test_whitening_lets_the_topic_decide_what_is_near() -> None:
    papers, topics = _anisotropic(7)
    whitened = whiten(fit_whitening(papers), papers)
    raw_share = _same_topic_share(papers, topics)
    white_share = _same_topic_share(whitened, topics)
    # Raw cosines follow the loud direction too; whitened ones mostly the topic.
    assert raw_share < 0.75
    assert white_share > 0.8
    assert white_share > raw_share + 0.15
    # What every paper shares no longer makes any two papers look alike.
    assert float((papers @ papers.T).mean()) > 0.25
    assert abs(float((whitened @ whitened.T).mean())) < 0.05


def test_new_vectors_go_through_the_same_transform() -> None:
    papers, topics = _anisotropic(11)
    # Fitted on half the papers (the candidates), applied to the others (rated papers).
    whitening = fit_whitening(papers[::2])
    assert whitening is not None
    rated, rated_topics = papers[1::2], topics[1::2]
    raw_share = _same_topic_share(rated, rated_topics)
    assert _same_topic_share(whitening.apply(rated), rated_topics) > raw_share + 0.1


def test_rows_stay_unit_and_zero_rows_stay_zero() -> None:
    papers, _ = _anisotropic(3)
    whitening = fit_whitening(papers)
    assert whitening is not None
    rows = np.vstack([papers[:5], np.zeros((1, DIM), dtype=np.float32)])
    out = whitening.apply(rows)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out[:5], axis=1), 1.0, atol=1e-5)
    assert not out[5].any()
    assert whitening.apply(np.zeros((0, DIM), dtype=np.float32)).shape == (0, DIM)


def test_too_few_papers_leave_the_vectors_as_they_are() -> None:
    papers, _ = _anisotropic(5)
    assert fit_whitening(papers[: MIN_PAPERS - 1]) is None
    np.testing.assert_array_equal(whiten(None, papers[:3]), papers[:3])
    assert fit_whitening(papers[:MIN_PAPERS]) is not None


@pytest.mark.parametrize("strength", [-0.1, 1.5, float("nan")])
def test_a_strength_outside_zero_to_one_is_refused(strength: float) -> None:
    papers, _ = _anisotropic(5)
    with pytest.raises(ValueError, match="strength"):
        fit_whitening(papers, strength=strength)
