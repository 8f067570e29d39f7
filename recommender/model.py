"""The TF-IDF model: documents in, L2-normalised sparse term vectors out.

One vectoriser is fitted on a corpus of papers; the same vocabulary and IDF
weights then embed new papers and free-text interests (topic descriptions,
keywords), so every vector lives in one space and cosine similarity is a dot
product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from recommender.words import WORD_PATTERN

# Below this corpus size a term seen in only one document is kept, so small
# corpora (a quiet day, a test fixture) still yield a vocabulary.
_MIN_DF_CORPUS_SIZE = 50


@dataclass(frozen=True)
class Document:
    """A paper as the model sees it: its title and its abstract."""

    title: str
    abstract: str


class TfidfModel:
    """A fitted TF-IDF vectoriser. Title is weighted above abstract."""

    def __init__(self, vectorizer: TfidfVectorizer, *, title_weight: int) -> None:
        self._vectorizer = vectorizer
        self.title_weight = title_weight
        self.feature_names: npt.NDArray[np.str_] = np.asarray(
            vectorizer.get_feature_names_out(), dtype=np.str_
        )

    @property
    def n_features(self) -> int:
        """Number of terms in the vocabulary, i.e. the width of every vector."""
        return len(self.feature_names)

    def transform_documents(self, docs: Sequence[Document]) -> scipy.sparse.csr_matrix:
        """Embed papers with the title weighting used at fit time, so they match the corpus."""
        return self._transform([_document_text(doc, self.title_weight) for doc in docs])

    def transform_texts(self, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
        """Embed free text (topic descriptions, keywords) in the same space as the papers."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        return self._transform(list(texts))

    def _transform(self, texts: list[str]) -> scipy.sparse.csr_matrix:
        if not texts:
            # sklearn rejects an empty batch; an empty matrix is the natural answer.
            return scipy.sparse.csr_matrix((0, self.n_features), dtype=np.float32)
        matrix = self._vectorizer.transform(texts)
        return scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def fit_model(
    docs: Sequence[Document],
    *,
    min_df: int | float | None = None,
    max_df: float = 0.5,
    title_weight: int = 2,
) -> TfidfModel:
    """Fit vocabulary and IDF weights on a corpus of papers: the space all ranking happens in."""
    return fit_transform(docs, min_df=min_df, max_df=max_df, title_weight=title_weight)[0]


def fit_transform(
    docs: Sequence[Document],
    *,
    min_df: int | float | None = None,
    max_df: float = 0.5,
    title_weight: int = 2,
) -> tuple[TfidfModel, scipy.sparse.csr_matrix]:
    """Fit the model and embed the corpus in one pass (tokenising each document once)."""
    if len(docs) == 0:
        raise ValueError("cannot fit a model on an empty corpus")
    if title_weight < 1:
        raise ValueError(f"title_weight must be at least 1, got {title_weight}")
    if not 0.0 < max_df <= 1.0:
        raise ValueError(f"max_df must be a fraction in (0, 1], got {max_df}")
    if min_df is None:
        min_df = 2 if len(docs) >= _MIN_DF_CORPUS_SIZE else 1
    elif isinstance(min_df, int) and min_df < 1:
        raise ValueError(f"min_df must be at least 1 as a document count, got {min_df}")
    elif isinstance(min_df, float) and not 0.0 <= min_df <= 1.0:
        raise ValueError(f"min_df must be a fraction in [0, 1] as a float, got {min_df}")

    vectorizer = TfidfVectorizer(
        sublinear_tf=True,
        ngram_range=(1, 2),
        stop_words="english",
        strip_accents="unicode",
        token_pattern=WORD_PATTERN,
        min_df=min_df,
        max_df=max_df,
        dtype=np.float32,
    )
    try:
        matrix = vectorizer.fit_transform([_document_text(doc, title_weight) for doc in docs])
    except ValueError as exc:
        # sklearn reports an empty vocabulary (only stop words, or pruned away by
        # min_df/max_df) in its own terms; say what that means for this corpus.
        raise ValueError(
            f"cannot fit a model on {len(docs)} document(s) with min_df={min_df}, "
            f"max_df={max_df}: the vocabulary is empty ({exc})"
        ) from exc
    model = TfidfModel(vectorizer, title_weight=title_weight)
    return model, scipy.sparse.csr_matrix(matrix, dtype=np.float32)


def _document_text(doc: Document, title_weight: int) -> str:
    # First cut of field weighting: repeating the title raises its term counts
    # (dampened by sublinear tf) without a custom analyser.
    return " ".join([doc.title] * title_weight + [doc.abstract])
