"""Tests of build_profiles: the weighted, normalised sum of interest vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import scipy.sparse

from recommender import Document, TfidfModel, build_profiles, fit_model, rank

CORPUS = [
    Document("Robot grasping", "A robot arm learns to grasp unknown objects."),
    Document("Legged locomotion", "Quadruped robot walking on rough terrain."),
    Document("Machine translation", "Neural translation between low-resource languages."),
    Document("Image segmentation", "Pixel-level labels for medical images."),
    Document("Graph networks", "Message passing on molecular graphs."),
]
TEXTS = ["robot grasping", "machine translation", "image segmentation"]


@pytest.fixture(scope="module")
def model() -> TfidfModel:
    return fit_model(CORPUS)


def dense_texts(model: TfidfModel, texts: Sequence[str]) -> np.ndarray:
    return model.transform_texts(texts).toarray().astype(np.float64)


def normalised(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_profiles_are_normalised_weighted_sums(model: TfidfModel) -> None:
    profiles = build_profiles(
        model,
        texts=TEXTS,
        rows=[0, 0, 1, 1, 1],
        cols=[0, 1, 0, 1, 2],
        weights=[2.0, 1.0, 1.0, 1.0, 0.5],
        n_profiles=2,
    )
    assert isinstance(profiles, scipy.sparse.csr_matrix)
    assert profiles.shape == (2, model.n_features)
    assert profiles.dtype == np.float32
    t = dense_texts(model, TEXTS)
    expected = np.vstack([normalised(2 * t[0] + t[1]), normalised(t[0] + t[1] + 0.5 * t[2])])
    np.testing.assert_allclose(profiles.toarray(), expected, atol=1e-6)


def test_weights_change_the_balance_between_interests(model: TfidfModel) -> None:
    profiles = build_profiles(
        model, texts=TEXTS, rows=[0, 0, 1, 1], cols=[0, 1, 0, 1], weights=[3, 1, 1, 3], n_profiles=2
    )
    result = rank(profiles, model.transform_documents(CORPUS), k=1)
    # Same two interests, opposite emphasis: each profile's best paper follows its weight.
    assert result.indices[:, 0].tolist() == [0, 2]


def test_shared_text_is_vectorised_once(model: TfidfModel, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    original = model.transform_texts

    def spy(texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        calls.append(list(texts))
        return original(texts)

    monkeypatch.setattr(model, "transform_texts", spy)
    n = 1000
    profiles = build_profiles(
        model,
        texts=TEXTS,
        rows=np.arange(n),
        cols=np.zeros(n, dtype=np.int64),
        weights=np.ones(n),
        n_profiles=n,
    )
    assert calls == [TEXTS]
    # A thousand subscribers of one topic all get that topic's vector.
    expected = normalised(dense_texts(model, TEXTS[:1])[0])
    np.testing.assert_allclose(profiles.toarray(), np.tile(expected, (n, 1)), atol=1e-6)


def test_repeated_interest_adds_up(model: TfidfModel) -> None:
    repeated = build_profiles(
        model, texts=TEXTS, rows=[0, 0, 0], cols=[0, 0, 1], weights=[1, 1, 1], n_profiles=1
    )
    doubled = build_profiles(
        model, texts=TEXTS, rows=[0, 0], cols=[0, 1], weights=[2, 1], n_profiles=1
    )
    np.testing.assert_allclose(repeated.toarray(), doubled.toarray(), atol=1e-7)


def test_negative_weight_pushes_shared_terms_away(model: TfidfModel) -> None:
    texts = ["robot grasping objects", "robot walking terrain"]
    profiles = build_profiles(
        model, texts=texts, rows=[0, 1, 1], cols=[0, 0, 1], weights=[1, 1, -0.6], n_profiles=2
    )
    t = dense_texts(model, texts)
    np.testing.assert_allclose(profiles.toarray()[1], normalised(t[0] - 0.6 * t[1]), atol=1e-6)
    papers = model.transform_documents(CORPUS)
    scores = (profiles @ papers.T).toarray()
    # The locomotion paper (1) scores lower once walking is disliked...
    assert scores[1, 1] < scores[0, 1]
    # ...and the shared word "robot" now weighs less than in the plain profile.
    robot = int(np.flatnonzero(model.feature_names == "robot")[0])
    assert 0 < profiles[1, robot] < profiles[0, robot]
    # Terms only in the disliked text become negative.
    walking = int(np.flatnonzero(model.feature_names == "walking")[0])
    assert profiles[1, walking] < 0


def test_profile_without_interests_is_zero_and_ranks_nothing(model: TfidfModel) -> None:
    profiles = build_profiles(
        model, texts=TEXTS, rows=[0, 2], cols=[0, 1], weights=[1, 1], n_profiles=3
    )
    assert profiles.getrow(1).nnz == 0
    result = rank(profiles, model.transform_documents(CORPUS), k=3)
    assert result.picks(1) == []
    assert result.picks(0)[0][0] == 0


def test_cancelling_weights_leave_no_stored_zeros(model: TfidfModel) -> None:
    profiles = build_profiles(
        model, texts=TEXTS, rows=[0, 0], cols=[0, 0], weights=[1, -1], n_profiles=1
    )
    assert profiles.nnz == 0


def test_no_interests_at_all(model: TfidfModel) -> None:
    profiles = build_profiles(model, texts=[], rows=[], cols=[], weights=[], n_profiles=4)
    assert profiles.shape == (4, model.n_features)
    assert profiles.nnz == 0
    empty = build_profiles(model, texts=TEXTS, rows=[], cols=[], weights=[], n_profiles=0)
    assert empty.shape == (0, model.n_features)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rows": [0, 1]}, "same length"),
        ({"weights": [1.0]}, "same length"),
        ({"rows": [0, 2, 1]}, r"rows must lie in \[0, n_profiles\)"),
        ({"rows": [0, -1, 1]}, "rows must lie in"),
        ({"cols": [0, 1, 3]}, r"cols must lie in \[0, len\(texts\)\)"),
        ({"cols": [0.0, 1.0, 2.0]}, "cols must hold integers"),
        ({"rows": [[0, 1, 1]]}, "rows must be one-dimensional"),
        ({"weights": [[1.0, 1.0, 1.0]]}, "weights must be one-dimensional"),
        ({"weights": [1.0, np.nan, 1.0]}, "finite"),
        ({"n_profiles": -1}, "n_profiles must be non-negative"),
        ({"texts": "robot grasping"}, "not a single string"),
    ],
)
def test_invalid_input_is_rejected(
    model: TfidfModel, overrides: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {
        "texts": TEXTS,
        "rows": [0, 1, 1],
        "cols": [0, 1, 2],
        "weights": [1.0, 1.0, 1.0],
        "n_profiles": 2,
    } | overrides
    with pytest.raises(ValueError, match=message):
        build_profiles(model, **arguments)
