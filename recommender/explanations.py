"""Why a paper was picked: the shared terms that contributed most to its score.

A pick's cosine score is the sum over terms of profile[r, j] * paper[p, j];
the terms with the largest positive products are the readable reason
("matched on: diffusion models, segmentation"). ``reasons`` turns those terms into
reasons in the reader's own words: the keyword they typed, the topic they chose, the
paper they liked. Pure: the reader's interests come in as plain data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from recommender._sparse import as_csr
from recommender.model import WORD_PATTERN
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


# --- reasons in the reader's own words ---------------------------------------------------


class ReasonKind(StrEnum):
    """What a reason points at; the mail layer words each kind (one sentence per kind)."""

    KEYWORD = "keyword"  # subject: the keyword as the reader typed it
    TOPIC = "topic"  # subject: the topic's display name
    LIKED = "liked"  # subject: the title of a paper the reader marked "more like this"
    LIBRARY = "library"  # subject: the title of a paper from the reader's own library
    FOLLOWED = "followed"  # subject: the name of an author the reader follows


@dataclass(frozen=True)
class Reason:
    """One reason a paper was picked, in terms the reader chose (not model terms)."""

    kind: ReasonKind
    subject: str
    terms: tuple[str, ...] = ()  # the matched model terms behind it (a quieter detail)


@dataclass(frozen=True)
class LikedPaper:
    """A paper the reader marked "more like this": its title and its words (``words_of``)."""

    title: str
    words: frozenset[str]
    from_library: bool = False  # a seed from the reader's library, not a rating


@dataclass(frozen=True)
class ReaderInterests:
    """What the reader told us, as plain data: keywords as typed, topics, liked papers."""

    keywords: Sequence[str] = ()
    topics: Mapping[str, str] = field(default_factory=dict)  # topic id -> display name
    liked: Sequence[LikedPaper] = ()  # newest first


_WORD = re.compile(WORD_PATTERN)


def words_of(text: str) -> frozenset[str]:
    """The words of ``text`` as the TF-IDF model tokenises them (lower case, no accents,
    no stop words), so they compare with the model's terms."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return frozenset(w for w in _WORD.findall(folded) if w not in ENGLISH_STOP_WORDS)


def reasons(
    *, terms: Sequence[str], categories: Sequence[str], reader: ReaderInterests
) -> tuple[Reason, ...]:
    """Why a pick fits this reader: the keyword its matched terms come from, the liked
    paper that shares them, the reader's topic it is listed in (each at most once, in
    that order; none when nothing of the reader's explains it)."""
    term_words = [(term, frozenset(term.split())) for term in terms]
    found: list[Reason] = []
    keyword = _best(reader.keywords, words_of, term_words)
    if keyword is not None:
        found.append(Reason(ReasonKind.KEYWORD, keyword[0], keyword[1]))
    liked = _best(reader.liked, lambda paper: paper.words, term_words, whole=True)
    if liked is not None:
        kind = ReasonKind.LIBRARY if liked[0].from_library else ReasonKind.LIKED
        found.append(Reason(kind, liked[0].title, liked[1]))
    topic = next((reader.topics[c] for c in categories if c in reader.topics), None)
    if topic is not None:
        found.append(Reason(ReasonKind.TOPIC, topic))
    return tuple(found)


_T = TypeVar("_T")


def _best(
    candidates: Sequence[_T],
    words: Callable[[_T], frozenset[str]],
    term_words: Sequence[tuple[str, frozenset[str]]],
    *,
    whole: bool = False,
) -> tuple[_T, tuple[str, ...]] | None:
    """The candidate whose words cover the most terms (the first on a tie), with those
    terms. A keyword covers a term that shares a word with it ("retrieval-augmented
    generation" covers "augmented generation" and "generation"); a liked paper must hold
    every word of a term (``whole``), since a long abstract shares some word with anything."""
    best: tuple[_T, tuple[str, ...]] | None = None
    for candidate in candidates:
        have = words(candidate)
        covered = tuple(
            term for term, parts in term_words if (parts <= have if whole else parts & have)
        )
        if covered and (best is None or len(covered) > len(best[1])):
            best = (candidate, covered)
    return best
