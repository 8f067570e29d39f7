"""Tests of the TF-IDF model: vocabulary, tokenisation, title weighting, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse

from recommender import Document, TfidfModel, fit_model

TINY = [
    Document("Graph neural networks", "Message passing on molecular graphs."),
    Document("Robot grasping", "A robot arm learns to grasp unknown objects."),
    Document("Machine translation", "Neural translation between low-resource languages."),
]

_TOPICS = {
    "vision": ["image", "segmentation", "pixels", "camera", "detection", "video"],
    "language": ["translation", "tokens", "syntax", "corpus", "dialogue", "parsing"],
    "robots": ["robot", "grasping", "locomotion", "actuator", "trajectory", "manipulator"],
}


def realistic_corpus(n: int = 90) -> list[Document]:
    """Papers from three topics, each sharing boilerplate and a rare one-off word."""
    rng = np.random.default_rng(7)
    docs = []
    for i in range(n):
        topic = list(_TOPICS)[i % 3]
        words = rng.choice(_TOPICS[topic], size=4, replace=False).tolist()
        docs.append(
            Document(
                title=f"{words[0].capitalize()} {words[1]} study",
                abstract=(
                    f"We propose a method for {words[2]} and {words[3]}. "
                    f"Experiments show the approach works. Oneoff{i} appears once."
                ),
            )
        )
    return docs


def row_of(model: TfidfModel, matrix: scipy.sparse.csr_matrix, row: int) -> dict[str, float]:
    """One vector as {term: weight}, for readable assertions."""
    vector = matrix.getrow(row)
    return {
        str(model.feature_names[j]): float(v)
        for j, v in zip(vector.indices, vector.data, strict=True)
    }


def test_tiny_corpus_has_a_vocabulary_and_normalised_float32_rows() -> None:
    model = fit_model(TINY)
    names = set(model.feature_names.tolist())
    assert {"robot", "grasp", "translation", "graph neural"} <= names
    assert model.feature_names.dtype.kind == "U"
    assert model.n_features == len(model.feature_names)

    vectors = model.transform_documents(TINY)
    assert isinstance(vectors, scipy.sparse.csr_matrix)
    assert vectors.shape == (3, model.n_features)
    assert vectors.dtype == np.float32
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_stop_words_are_not_terms() -> None:
    names = set(fit_model(TINY).feature_names.tolist())
    assert not names & {"a", "on", "to", "between", "the"}


def test_min_df_defaults_to_one_on_small_corpora() -> None:
    # Every word of TINY is in one document only; min_df=1 keeps them all.
    assert "molecular" in fit_model(TINY).feature_names


def test_realistic_corpus_prunes_rare_and_ubiquitous_terms() -> None:
    docs = realistic_corpus()
    model = fit_model(docs)
    names = set(model.feature_names.tolist())
    # >= 50 documents: min_df becomes 2, so a word seen in one paper is gone...
    assert not any(name.startswith("oneoff") for name in names)
    # ...and max_df=0.5 drops boilerplate every paper shares.
    assert not names & {"propose", "method", "experiments", "study"}
    assert {"segmentation", "translation", "robot"} <= names

    vectors = model.transform_documents(docs)
    # Papers of the same topic are closer to each other than to other topics.
    similarity = (vectors @ vectors.T).toarray()
    topic = np.arange(len(docs)) % 3
    same = topic[:, None] == topic[None, :]
    np.fill_diagonal(same, False)
    different = topic[:, None] != topic[None, :]
    assert similarity[same].mean() > 3 * similarity[different].mean()


def test_explicit_min_df_overrides_the_default() -> None:
    docs = [*TINY, Document("Robot arms", "Another robot paper.")]
    names = set(fit_model(docs, min_df=2, max_df=1.0).feature_names.tolist())
    assert names == {"neural", "robot"}


def test_title_terms_weigh_more_than_abstract_terms() -> None:
    docs = [
        Document("Diffusion", "We study sampling of images."),
        Document("Sampling", "We study diffusion of images."),
        Document("Parsing", "Syntax trees for sentences."),
    ]
    # max_df=1.0 keeps both words, which occur in two of three papers.
    model = fit_model(docs, max_df=1.0)
    vectors = model.transform_documents(docs)
    first, second = row_of(model, vectors, 0), row_of(model, vectors, 1)
    # Same words, swapped between title and abstract: the title one wins.
    assert first["diffusion"] > first["sampling"]
    assert second["sampling"] > second["diffusion"]


def test_larger_title_weight_raises_title_terms_further() -> None:
    weights = []
    for title_weight in (1, 2, 4):
        model = fit_model(TINY, title_weight=title_weight)
        weights.append(row_of(model, model.transform_documents(TINY), 1)["grasping"])
    assert weights[0] < weights[1] < weights[2]


def test_title_weight_one_treats_title_and_abstract_alike() -> None:
    docs = [Document("Diffusion", "sampling"), Document("Parsing", "syntax")]
    model = fit_model(docs, title_weight=1)
    vector = row_of(model, model.transform_documents(docs), 0)
    assert vector["diffusion"] == pytest.approx(vector["sampling"])


def test_latex_numbers_and_single_letters_are_not_tokens() -> None:
    docs = [
        Document(
            "Faster $k$-means in 2024",
            r"We cluster $n=100$ points in $\mathbb{R}^d$ with $O(n \log n)$ cost "
            r"and $\alpha_2$ steps on 3D scans, 10x faster over 12.5 GB.",
        ),
        Document("Robot grasping", "A robot arm grasps objects."),
    ]
    names = set(fit_model(docs).feature_names.tolist())
    unigrams = {name for name in names if " " not in name}
    assert not unigrams & {"k", "n", "d", "o", "100", "2024", "12", "mathbb", "log", "alpha"}
    assert not any(part.isdigit() for name in names for part in name.split())
    # Words that merely contain digits still count: "3d" is a topic, not a number.
    assert {"means", "cluster", "3d", "10x"} <= unigrams


def test_accents_are_stripped() -> None:
    docs = [Document("Café naïve", "Résumé parsing."), Document("Robot", "Grasping.")]
    names = set(fit_model(docs).feature_names.tolist())
    assert {"cafe", "naive", "resume"} <= names


def test_free_text_lands_in_the_same_space_as_documents() -> None:
    model = fit_model(TINY)
    texts = model.transform_texts(["robot grasping", "quantum chromodynamics"])
    assert texts.shape == (2, model.n_features)
    assert texts.dtype == np.float32
    assert set(row_of(model, texts, 0)) == {"robot", "grasping", "robot grasping"}
    # Words outside the vocabulary give a zero vector, not an error.
    assert texts.getrow(1).nnz == 0
    papers = model.transform_documents(TINY)
    assert int((texts @ papers.T).toarray()[0].argmax()) == 1


def test_empty_batches_transform_to_empty_matrices() -> None:
    model = fit_model(TINY)
    assert model.transform_documents([]).shape == (0, model.n_features)
    assert model.transform_texts([]).shape == (0, model.n_features)


def test_transform_texts_rejects_a_bare_string() -> None:
    with pytest.raises(ValueError, match="not a single string"):
        fit_model(TINY).transform_texts("robot grasping")


def test_empty_corpus_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot fit a model on an empty corpus"):
        fit_model([])


def test_corpus_of_stop_words_is_an_error() -> None:
    docs = [Document("The", "and of the"), Document("A", "to be or not to be")]
    with pytest.raises(ValueError, match="vocabulary is empty"):
        fit_model(docs)


def test_single_document_is_pruned_to_nothing_by_max_df() -> None:
    with pytest.raises(ValueError, match=r"1 document\(s\).*vocabulary is empty"):
        fit_model(TINY[:1])
    assert "robot" in fit_model(TINY[1:2], max_df=1.0).feature_names


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"title_weight": 0}, "title_weight"),
        ({"max_df": 0.0}, "max_df"),
        ({"max_df": 1.5}, "max_df"),
        ({"min_df": 0}, "min_df"),
        ({"min_df": 1.5}, "min_df"),
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_model(TINY, **kwargs)
