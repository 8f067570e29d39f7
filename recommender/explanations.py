"""Why a paper was picked: the shared terms that contributed most to its score.

A pick's cosine score is the sum over terms of profile[r, j] * paper[p, j];
the terms with the largest positive products are the readable reason
("matched on: diffusion models, segmentation"). ``reasons`` turns those terms into
reasons in the reader's own words: the keyword they typed, the topic they chose, the
paper they liked. Pure: the reader's interests come in as plain data.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import scipy.sparse

from recommender._sparse import as_csr
from recommender.ranking import RankResult
from recommender.words import WORD_PATTERN, stop_words


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
    products = profiles[pick_rows].multiply(papers[pick_papers])
    if not products.has_sorted_indices:
        products.sort_indices()  # each pick's terms ascending: what ties fall back on
    contributions = products.tocoo()
    positive = contributions.data > 0
    pick = contributions.row[positive]
    term = contributions.col[positive]
    value = contributions.data[positive]

    # Group by pick, largest contribution first; the term index settles ties
    # so the output does not depend on storage order.
    order = _by_pick_then_value(pick, term, value)
    pick, term = pick[order], term[order]
    # Keep a few spare candidates per pick: overlapping n-grams are dropped below.
    group_start = np.searchsorted(pick, pick, side="left")
    keep = np.arange(len(pick)) - group_start < n_terms * _SPARE
    pick, term = pick[keep], term[keep]

    # Each distinct term's name and words once (picks share most of their terms).
    distinct = np.unique(term)
    names = dict(zip(distinct.tolist(), feature_names[distinct].tolist(), strict=True))
    words = {t: frozenset(name.split()) for t, name in names.items()}
    terms: list[int] = term.tolist()
    bounds = np.searchsorted(pick, np.arange(len(pick_rows) + 1), side="left").tolist()
    out: list[list[tuple[str, ...]]] = [[] for _ in range(n_profiles)]
    for i, row in enumerate(pick_rows.tolist()):
        out[row].append(_distinct(terms[bounds[i] : bounds[i + 1]], names, words, n_terms))
    return out


_SPARE = 3


def _by_pick_then_value(
    pick: npt.NDArray[np.int32],
    term: npt.NDArray[np.int32],
    value: npt.NDArray[np.floating],
) -> npt.NDArray[np.intp]:
    """The order of the (positive) contributions by pick, then value descending, then
    term ascending (each pick's terms come in ascending).

    With float32 values this is one stable sort of a 64-bit key: the pick above, the
    value's bits inverted below (a positive float's bits order like the float),
    sixteen times faster than sorting on three keys; other dtypes sort on the keys.
    """
    if value.dtype != np.float32 or (len(pick) and int(pick.max()) >= 1 << 32):
        return np.lexsort((term, -value, pick))
    key = pick.astype(np.uint64) << np.uint64(32)
    key |= np.uint64(0xFFFFFFFF) - value.view(np.uint32).astype(np.uint64)
    return np.argsort(key, kind="stable")


def _distinct(
    candidates: list[int], names: Mapping[int, str], words: Mapping[int, frozenset[str]], n: int
) -> tuple[str, ...]:
    """The best terms that share no word with a better-scoring candidate.

    Unigrams and bigrams of one phrase all score ("language models", "large language",
    "large"); naming the best of them says as much as naming all three, and a word is
    covered once any better candidate used it, even one that was itself left out.
    """
    chosen: list[str] = []
    covered: set[str] = set()
    for term in candidates:
        parts = words[term]
        if covered.isdisjoint(parts):
            chosen.append(names[term])
            if len(chosen) == n:
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
    paper_id: int | None = None  # the stored paper, when known (a paper is not its own reason)


# A word -> the positions of the candidates (keywords, liked papers) that hold it.
_Index = dict[str, frozenset[int]]


def _index(word_sets: Sequence[frozenset[str]]) -> _Index:
    found: dict[str, set[int]] = {}
    for position, words in enumerate(word_sets):
        for word in words:
            found.setdefault(word, set()).add(position)
    return {word: frozenset(positions) for word, positions in found.items()}


@dataclass(frozen=True)
class ReaderInterests:
    """What the reader told us, as plain data: keywords as typed, topics, liked papers."""

    keywords: Sequence[str] = ()
    topics: Mapping[str, str] = field(default_factory=dict)  # topic id -> display name
    liked: Sequence[LikedPaper] = ()  # newest first
    # Which keywords and liked papers hold each word: built once per reader, since every
    # pick of their issue asks (see ``reasons``).
    indexes: tuple[_Index, _Index] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keywords = _index([_telling_words(keyword) for keyword in self.keywords])
        # A frozen dataclass sets a derived field this way (the documented idiom).
        object.__setattr__(self, "indexes", (keywords, _index([p.words for p in self.liked])))


_WORD = re.compile(WORD_PATTERN)


def words_of(text: str) -> frozenset[str]:
    """The words of ``text`` as the TF-IDF model tokenises them (lower case, no accents,
    no stop words), so they compare with the model's terms."""
    folded = text.lower()
    if not folded.isascii():
        folded = unicodedata.normalize("NFKD", folded)
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    return frozenset(_WORD.findall(folded)).difference(stop_words())


# Words too common in paper abstracts to say a paper is about a keyword: "reinforcement
# learning" must not explain a paper on federated learning. A keyword is matched by its
# other words; one made only of these (say "language models") by any of its words.
GENERIC_WORDS: frozenset[str] = frozenset(
    [
        "learning",
        "model",
        "models",
        "modeling",
        "modelling",
        "network",
        "networks",
        "neural",
        "data",
        "dataset",
        "datasets",
        "method",
        "methods",
        "language",
        "languages",
        "based",
        "approach",
        "approaches",
        "using",
        "large",
        "task",
        "tasks",
        "training",
        "system",
        "systems",
        "analysis",
        "efficient",
        "framework",
    ]
)


def _telling_words(keyword: str) -> frozenset[str]:
    words = words_of(keyword)
    return (words - GENERIC_WORDS) or words


def reasons(
    *, terms: Sequence[str], categories: Sequence[str], reader: ReaderInterests
) -> tuple[Reason, ...]:
    """Why a pick fits this reader: the keyword its matched terms come from, the liked
    paper that shares them, the reader's topic it is listed in (each at most once, in
    that order; none when nothing of the reader's explains it)."""
    keyword_index, liked_index = reader.indexes
    found: list[Reason] = []
    if keyword_index or liked_index:  # most readers have neither keywords nor likes
        term_words = [(term, _term_words(term)) for term in terms]
        keyword = _best(keyword_index, term_words, whole=False)
        if keyword is not None:
            found.append(Reason(ReasonKind.KEYWORD, reader.keywords[keyword[0]], keyword[1]))
        liked = _best(liked_index, term_words, whole=True)
        if liked is not None:
            paper = reader.liked[liked[0]]
            kind = ReasonKind.LIBRARY if paper.from_library else ReasonKind.LIKED
            found.append(Reason(kind, paper.title, liked[1]))
    topics = reader.topics
    if topics:
        topic = next((topics[c] for c in categories if c in topics), None)
        if topic is not None:
            found.append(Reason(ReasonKind.TOPIC, topic))
    return tuple(found)


@functools.lru_cache(maxsize=65_536)
def _term_words(term: str) -> tuple[str, ...]:
    # An edition's matched terms recur in thousands of picks (callers do not change it).
    return tuple(term.split())


_NOWHERE: frozenset[int] = frozenset()


def _best(
    index: _Index, term_words: Sequence[tuple[str, Sequence[str]]], *, whole: bool
) -> tuple[int, tuple[str, ...]] | None:
    """The candidate whose words cover the most terms (the first on a tie), with those
    terms. A keyword covers a term that shares a word with it ("retrieval-augmented
    generation" covers "augmented generation" and "generation"); a liked paper must hold
    every word of a term (``whole``), since a long abstract shares some word with anything."""
    if not index:
        return None
    covered: dict[int, list[str]] = {}
    for term, parts in term_words:
        holders = [index.get(word, _NOWHERE) for word in parts]
        if not holders:
            continue
        hits = holders[0].intersection(*holders[1:]) if whole else holders[0].union(*holders[1:])
        for position in hits:
            covered.setdefault(position, []).append(term)
    if not covered:
        return None
    position = min(covered, key=lambda p: (-len(covered[p]), p))
    return position, tuple(covered[position])
