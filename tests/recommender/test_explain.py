"""Tests of explain: the terms that contributed most to each pick."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse

from recommender import Document, RankResult, build_profiles, explain, fit_model, rank

NAMES = np.array(["alpha", "beta", "gamma", "delta", "epsilon"])


def csr(rows: list[list[float]]) -> scipy.sparse.csr_matrix:
    return scipy.sparse.csr_matrix(np.array(rows, dtype=np.float32))


def test_terms_are_ordered_by_contribution_and_negative_ones_dropped() -> None:
    profiles = csr([[0.5, 0.4, 0.3, 0.0, -0.2]])
    papers = csr([[0.1, 0.5, 0.3, 0.9, 0.4]])
    result = rank(profiles, papers, k=1)
    # Contributions: alpha .05, beta .20, gamma .09, delta 0 (not in profile), epsilon -.08.
    assert explain(profiles, papers, result, feature_names=NAMES) == [[("beta", "gamma", "alpha")]]
    assert explain(profiles, papers, result, feature_names=NAMES, n_terms=2) == [
        [("beta", "gamma")]
    ]
    assert explain(profiles, papers, result, feature_names=NAMES, n_terms=5) == [
        [("beta", "gamma", "alpha")]
    ]


def test_output_is_aligned_with_the_picks() -> None:
    profiles = csr([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 1]])
    papers = csr([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0.5, 0, 0, 0, 0]])
    result = rank(profiles, papers, k=3)
    assert result.indices.tolist() == [[1, 3, -1], [-1, -1, -1], [0, 2, -1]]
    assert explain(profiles, papers, result, feature_names=NAMES) == [
        [("alpha",), ("alpha",)],
        [],
        [("epsilon",), ("beta",)],
    ]


def test_equal_contributions_are_ordered_by_feature_index() -> None:
    profiles = csr([[0.5, 0.5, 0.5, 0.5, 0.0]])
    papers = csr([[0.0, 0.5, 0.5, 0.5, 0.5]])
    result = rank(profiles, papers, k=1)
    assert explain(profiles, papers, result, feature_names=NAMES) == [[("beta", "gamma", "delta")]]


def test_no_picks_explain_nothing() -> None:
    profiles = csr([[0, 0, 0, 0, 0]] * 2)
    papers = csr([[1, 0, 0, 0, 0]])
    result = rank(profiles, papers, k=2)
    assert explain(profiles, papers, result, feature_names=NAMES) == [[], []]
    empty = rank(csr([[1, 0, 0, 0, 0]])[:0], papers, k=2)
    assert explain(csr([[1, 0, 0, 0, 0]])[:0], papers, empty, feature_names=NAMES) == []


@pytest.mark.parametrize("seed", range(3))
def test_matches_a_dense_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_features = 30
    names = np.array([f"term{j}" for j in range(n_features)])

    def sparse(n: int) -> scipy.sparse.csr_matrix:
        dense = rng.choice([0.0, 0.0, 0.0, -0.25, 0.25, 0.5, 1.0], size=(n, n_features))
        return scipy.sparse.csr_matrix(dense.astype(np.float32))

    profiles, papers = sparse(20), sparse(15)
    result = rank(profiles, papers, k=4)
    out = explain(profiles, papers, result, feature_names=names, n_terms=3)
    dense_profiles, dense_papers = profiles.toarray(), papers.toarray()
    assert len(out) == 20
    for row in range(20):
        picks = result.picks(row)
        assert len(out[row]) == len(picks)
        for (paper, _), terms in zip(picks, out[row], strict=True):
            contribution = dense_profiles[row] * dense_papers[paper]
            order = sorted(
                (j for j in range(n_features) if contribution[j] > 0),
                key=lambda j: (-contribution[j], j),
            )
            assert terms == tuple(names[order[:3]].tolist())


def test_real_model_explanations_name_shared_terms() -> None:
    corpus = [
        Document("Robot grasping with tactile sensing", "A robot arm grasps unknown objects."),
        Document("Legged locomotion", "A quadruped robot walks on rough terrain."),
        Document("Machine translation", "Neural translation between low-resource languages."),
        Document("Image segmentation", "Pixel labels for medical images and scans."),
        Document("Tactile sensors for grasping", "Touch sensing improves robot grasp success."),
    ]
    model = fit_model(corpus)
    papers = model.transform_documents(corpus)
    profiles = build_profiles(
        model,
        texts=["robot grasping and tactile sensing", "translation of languages"],
        rows=[0, 1],
        cols=[0, 1],
        weights=[1, 1],
        n_profiles=2,
    )
    result = rank(profiles, papers, k=3)
    out = explain(profiles, papers, result, feature_names=model.feature_names, n_terms=4)
    assert out[0][0][0] in {"grasping", "tactile", "robot", "tactile sensing", "robot grasping"}
    assert out[1] == [("translation", "languages")]
    for row in range(2):
        profile = profiles.getrow(row).toarray().ravel()
        for (paper, _), terms in zip(result.picks(row), out[row], strict=True):
            vector = papers.getrow(paper).toarray().ravel()
            columns = [int(np.flatnonzero(model.feature_names == term)[0]) for term in terms]
            assert terms
            assert all(profile[j] > 0 and vector[j] > 0 for j in columns)
            contributions = [profile[j] * vector[j] for j in columns]
            assert contributions == sorted(contributions, reverse=True)


_P = csr([[1, 0, 0, 0, 0]])
_RESULT = RankResult(indices=np.array([[0]], dtype=np.int64), scores=np.ones((1, 1), np.float32))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"feature_names": NAMES[:3]}, "feature_names has 3 entries"),
        ({"n_terms": 0}, "n_terms must be at least 1"),
        ({"papers": csr([[1, 0, 0]])}, "features"),
        (
            {
                "result": RankResult(
                    indices=np.zeros((2, 1), np.int64), scores=np.zeros((2, 1), np.float32)
                )
            },
            "rows",
        ),
        (
            {"result": RankResult(indices=np.array([[3]]), scores=np.ones((1, 1), np.float32))},
            "picks paper 3",
        ),
    ],
)
def test_invalid_input_is_rejected(arguments: dict[str, Any], message: str) -> None:
    call: dict[str, Any] = {
        "profiles": _P,
        "papers": _P,
        "result": _RESULT,
        "feature_names": NAMES,
    } | arguments
    with pytest.raises(ValueError, match=message):
        explain(**call)


def test_overlapping_ngrams_are_named_once() -> None:
    docs = [
        Document("Large language models reason", "large language models reason step by step"),
        Document("Video diffusion", "video diffusion generation of frames"),
        Document("Robot grasping", "robot arms grasp objects"),
    ]
    model = fit_model(docs, min_df=1, max_df=1.0)
    papers = model.transform_documents(docs)
    profiles = model.transform_texts(["large language models and reasoning"])
    result = rank(profiles, papers, k=1)
    (terms,) = explain(profiles, papers, result, feature_names=model.feature_names)[0]
    assert terms
    words = [word for term in terms for word in term.split()]
    assert len(words) == len(set(words)), terms
