"""Offline evaluation of the recommender against baselines on real arXiv listings.

    .venv/bin/python benchmarks/eval_recommender.py [--quick] [--jobs 2]
    .venv/bin/python benchmarks/eval_recommender.py --citeulike [--quick]   # real readers

``--citeulike`` runs the evaluation on real researchers' libraries instead
(``benchmarks/eval_citeulike.py``, issue 16.3); the rest of this docstring is about
the arXiv days.

Data: the daily listings in ``../shared/data/arxiv-daily`` (one JSONL file a day).
A paper belongs to the first day it is listed (later days repeat it: re-listings,
weekend files repeating Friday) and is a candidate on that day only.

Subscribers are simulated from real labels. For every arXiv category with enough
first-listed papers in both halves of the month there are three kinds:

- ``topic``: follows the catalogue topic of the category (config/topics.toml);
  only categories that have a catalogue entry;
- ``liked``: marked a few papers of the category from the training period as
  "more like this" (several subscribers with different seeded draws);
- ``both``: the topic and the same liked papers.

A candidate is relevant to a subscriber iff it carries the subscriber's category.
No "less like this" is simulated, so the ``disliked`` feedback weight plays no part.

Every method ranks each evaluation day's new papers for every subscriber; the
scores are precision@10, nDCG@10 (binary gains) and recall@50, averaged over
(subscriber, day) pairs that have at least one relevant paper. The methods:

- ``random`` (seeded) and ``most recent`` (highest arXiv id first);
- ``plain TF-IDF``: sklearn's ``TfidfVectorizer()`` with its defaults, centroid cosine;
- ``arxiv-sanity SVM``: arxiv-sanity-lite's TF-IDF and per-user ``LinearSVC``;
- ``ours``: the recommender library (fit_transform, build_profiles, apply_feedback,
  rank), with the library defaults and with parameters tuned here.

Parameters are tuned on the early days only (training May 1-10, tuning days May
11-15); the table is measured on the later days (training May 1-15, evaluation
days May 16-31), so tuning never sees the days it is judged on.

Every ours variant that shares model parameters shares one fit per day; the
days run in ``--jobs`` forked worker processes (default 2, this machine's cores).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import itertools
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    # Run as a script, only benchmarks/ is on the path; the packages live one level up.
    sys.path.insert(0, str(REPO))

from newsletter.papers.catalogue import load_catalogue  # noqa: E402
from recommender import (  # noqa: E402
    Document,
    FeedbackWeights,
    apply_feedback,
    build_profiles,
    fit_transform,
    rank,
    semantic,
)
from recommender.hybrid import HybridWeights, rank_hybrid  # noqa: E402
from recommender.linear import LinearOptions, blend_profiles, fit_directions  # noqa: E402
from recommender.model import _MIN_DF_CORPUS_SIZE  # noqa: E402  (min_df=None's rule)
from recommender.whitening import Whitening, fit_whitening, whiten  # noqa: E402

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily"

FIRST_DAY = date(2026, 5, 1)
TUNE_TRAIN_LAST = date(2026, 5, 10)  # tuning: train May 1-10, evaluate May 11-15
TRAIN_LAST = date(2026, 5, 15)  # report: train May 1-15, evaluate May 16-31
LAST_DAY = date(2026, 5, 31)

EMBEDDING_CACHE = Path(tempfile.gettempdir()) / "newsletter-eval"
DEPTH = 50  # every method returns its top 50; the metrics look at 10 and 50
MIN_CATEGORY_PAPERS = 30
N_LIKED = 5
LIKED_DRAWS = 3
SEED = 20260501

TOPIC, LIKED, BOTH = "topic", "liked", "both"
KINDS = (TOPIC, LIKED, BOTH)

# arXiv category codes ("cs.CV", "q-bio.NC", "hep-th"); ACM ("I.2.10") and MSC
# ("68T50") classification codes in the same list are not labels.
_CATEGORY = re.compile(r"[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?")

# arxiv-sanity-lite's compute.py, verbatim (it also appends author names to the
# text; here every method sees title + abstract only).
ARXIV_SANITY_TFIDF: dict[str, object] = {
    "input": "content",
    "encoding": "utf-8",
    "decode_error": "replace",
    "strip_accents": "unicode",
    "lowercase": True,
    "analyzer": "word",
    "stop_words": "english",
    "token_pattern": r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b",
    "ngram_range": (1, 2),
    "max_features": 20000,
    "norm": "l2",
    "use_idf": True,
    "smooth_idf": True,
    "sublinear_tf": True,
    "max_df": 0.1,
    "min_df": 5,
}
# arxiv-sanity-lite's serve.py svm_rank, verbatim.
ARXIV_SANITY_SVM: dict[str, object] = {
    "class_weight": "balanced",
    "verbose": False,
    "max_iter": 10000,
    "tol": 1e-6,
    "C": 0.01,
}

Rankings = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Paper:
    """A paper on the day it was first listed, with its arXiv categories only."""

    id: str
    day: date
    title: str
    abstract: str
    categories: frozenset[str]

    @property
    def text(self) -> str:
        """Title and abstract as one string, what the baselines vectorise."""
        return f"{self.title} {self.abstract}"

    @property
    def document(self) -> Document:
        """The paper as the recommender library sees it."""
        return Document(title=self.title, abstract=self.abstract)


def arxiv_categories(codes: Iterable[str]) -> frozenset[str]:
    """Keep the arXiv category codes, dropping ACM and MSC classification codes."""
    return frozenset(code for code in codes if _CATEGORY.fullmatch(code))


def load_days(directory: Path = DATA_DIR) -> dict[date, list[Paper]]:
    """Papers by the day they were first listed; later listings of an id are dropped.

    Every ``YYYY-MM-DD.jsonl`` file gives a key, so days without new papers
    (weekends repeating Friday) map to an empty list.
    """
    seen: set[str] = set()
    days: dict[date, list[Paper]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        day = date.fromisoformat(path.stem)
        days[day] = []
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                record = json.loads(line)
                if record["id"] in seen:
                    continue
                seen.add(record["id"])
                days[day].append(
                    Paper(
                        id=record["id"],
                        day=day,
                        title=record["title"],
                        abstract=record["summary"],
                        categories=arxiv_categories(record["categories"]),
                    )
                )
    return days


def papers_between(days: Mapping[date, Sequence[Paper]], first: date, last: date) -> list[Paper]:
    """All papers first listed from ``first`` to ``last``, inclusive, in listing order."""
    return [paper for day in sorted(days) if first <= day <= last for paper in days[day]]


def listing_days(days: Mapping[date, Sequence[Paper]], first: date, last: date) -> list[date]:
    """The days from ``first`` to ``last`` that have new papers to rank."""
    return [day for day in sorted(days) if first <= day <= last and days[day]]


def category_counts(papers: Iterable[Paper]) -> Counter[str]:
    """How many papers carry each category."""
    return Counter(category for paper in papers for category in paper.categories)


def eligible_categories(
    first_half: Sequence[Paper], second_half: Sequence[Paper], *, min_papers: int
) -> list[str]:
    """Categories with at least ``min_papers`` papers in each half, largest first."""
    first, second = category_counts(first_half), category_counts(second_half)
    chosen = [c for c in first if first[c] >= min_papers and second[c] >= min_papers]
    return sorted(chosen, key=lambda c: (-first[c], c))


# -------------------------------------------------------------------- subscribers


@dataclass(frozen=True)
class Subscriber:
    """A simulated reader of one category: a topic, liked papers, or both."""

    name: str
    kind: str
    category: str
    topic_text: str | None
    liked: tuple[Paper, ...]


def make_subscribers(
    train: Sequence[Paper],
    categories: Sequence[str],
    topic_texts: Mapping[str, str],
    *,
    n_liked: int = N_LIKED,
    draws: int = LIKED_DRAWS,
    seed: int = SEED,
) -> list[Subscriber]:
    """Topic, liked and both subscribers of every category, liked papers drawn from ``train``.

    The draws are seeded per category, so adding a category does not change the others.
    """
    subscribers: list[Subscriber] = []
    for category in categories:
        pool = [paper for paper in train if category in paper.categories]
        if len(pool) < n_liked:
            raise ValueError(f"{category} has {len(pool)} training papers, fewer than {n_liked}")
        topic = topic_texts.get(category)
        if topic is not None:
            subscribers.append(Subscriber(f"{category} topic", TOPIC, category, topic, ()))
        rng = np.random.default_rng([seed, zlib.crc32(category.encode())])
        for draw in range(draws):
            picked = np.sort(rng.choice(len(pool), size=n_liked, replace=False))
            liked = tuple(pool[i] for i in picked)
            subscribers.append(Subscriber(f"{category} liked#{draw}", LIKED, category, None, liked))
            if topic is not None:
                name = f"{category} both#{draw}"
                subscribers.append(Subscriber(name, BOTH, category, topic, liked))
    return subscribers


def catalogue_topic_texts() -> dict[str, str]:
    """Interest text of every catalogue topic, by id (the id is the arXiv category)."""
    return {topic.id: topic.interest_text for topic in load_catalogue().values()}


# ------------------------------------------------------------------------ metrics


def _first_k(hits: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.bool_]:
    """The first k columns of ``hits``, padded with misses when the lists are shorter."""
    top = hits[:, :k]
    if top.shape[1] < k:
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=False)
    return top


def hits_at(rankings: Rankings, relevance: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Whether each ranked candidate is relevant; padding (-1) counts as a miss."""
    valid = rankings >= 0
    picked = np.take_along_axis(relevance, np.where(valid, rankings, 0), axis=1)
    return valid & picked


def precision_at_k(hits: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.float64]:
    """Share of the first k slots that hold a relevant paper (empty slots count as misses)."""
    found: npt.NDArray[np.float64] = _first_k(hits, k).sum(axis=1, dtype=np.float64)
    return found / k


def ndcg_at_k(
    hits: npt.NDArray[np.bool_], n_relevant: npt.ArrayLike, k: int
) -> npt.NDArray[np.float64]:
    """nDCG@k with binary gains: DCG over the DCG of all relevant papers ranked first."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg: npt.NDArray[np.float64] = _first_k(hits, k) @ discounts
    n_ideal = np.minimum(np.asarray(n_relevant), k)
    idcg: npt.NDArray[np.float64] = (np.arange(k)[None, :] < n_ideal[:, None]) @ discounts
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def recall_at_k(
    hits: npt.NDArray[np.bool_], n_relevant: npt.ArrayLike, k: int
) -> npt.NDArray[np.float64]:
    """Share of all relevant papers that appear in the first k slots."""
    found: npt.NDArray[np.float64] = _first_k(hits, k).sum(axis=1, dtype=np.float64)
    total = np.asarray(n_relevant, dtype=np.float64)
    return np.divide(found, total, out=np.zeros_like(found), where=total > 0)


def relevance_matrix(
    subscribers: Sequence[Subscriber], candidates: Sequence[Paper]
) -> npt.NDArray[np.bool_]:
    """relevance[s, c]: candidate c carries subscriber s's category."""
    return np.array(
        [[s.category in paper.categories for paper in candidates] for s in subscribers],
        dtype=bool,
    ).reshape(len(subscribers), len(candidates))


def top_k(scores: npt.NDArray[np.floating], k: int = DEPTH) -> Rankings:
    """Column indices of each row's k highest scores, best first, ties to the lower index."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    if order.shape[1] < k:
        order = np.pad(order, ((0, 0), (0, k - order.shape[1])), constant_values=-1)
    return order


# ------------------------------------------------------------------------ methods


@dataclass(frozen=True, eq=False)
class DayTask:
    """One evaluation day: what every method is given. Compared by identity."""

    day: date
    train: Sequence[Paper]
    candidates: Sequence[Paper]
    subscribers: Sequence[Subscriber]


# A method ranks the day's candidates for every subscriber: (n_subscribers, DEPTH)
# candidate indices, best first, padded with -1.
Method = Callable[[DayTask], Rankings]


def _topic_rows(
    subscribers: Sequence[Subscriber],
) -> tuple[list[str], list[int], list[int]]:
    """Distinct topic texts, and (subscriber row, text column) for each topic follower."""
    texts: dict[str, int] = {}
    rows, cols = [], []
    for row, subscriber in enumerate(subscribers):
        if subscriber.topic_text is not None:
            rows.append(row)
            cols.append(texts.setdefault(subscriber.topic_text, len(texts)))
    return list(texts), rows, cols


def _like_rows(task: DayTask) -> tuple[list[int], list[int], list[int]]:
    """(subscriber row, training-paper index, age in days) of every liked paper."""
    index = {paper.id: i for i, paper in enumerate(task.train)}
    rows, cols, ages = [], [], []
    for row, subscriber in enumerate(task.subscribers):
        for paper in subscriber.liked:
            if paper.id not in index:
                raise ValueError(f"{subscriber.name} likes {paper.id}, not a training paper")
            rows.append(row)
            cols.append(index[paper.id])
            ages.append((task.day - paper.day).days)
    return rows, cols, ages


def random_method(seed: int = SEED) -> Method:
    """Rank candidates in a random order, seeded by the day."""

    def method(task: DayTask) -> Rankings:
        rng = np.random.default_rng([seed, task.day.toordinal()])
        return top_k(rng.random((len(task.subscribers), len(task.candidates))))

    return method


def _id_key(paper_id: str) -> tuple[int, ...]:
    """Sort key of a new-style arXiv id (YYMM.NNNNN): later submissions sort higher."""
    return tuple(int(part) for part in paper_id.split("v")[0].split("."))


def most_recent(task: DayTask) -> Rankings:
    """Rank candidates by arXiv id, newest first (a proxy for submission time)."""
    keys = [_id_key(paper.id) for paper in task.candidates]
    order = sorted(range(len(keys)), key=lambda i: keys[i], reverse=True)[:DEPTH]
    row = np.full(DEPTH, -1, dtype=np.int64)
    row[: len(order)] = order
    return np.tile(row, (len(task.subscribers), 1))


def _centroid_profiles(
    task: DayTask, papers: scipy.sparse.csr_matrix, topic_vectors: scipy.sparse.csr_matrix
) -> scipy.sparse.csr_matrix:
    """Per subscriber: the mean of the liked papers' vectors plus the topic text's vector."""
    n = len(task.subscribers)
    rows, cols, _ = _like_rows(task)
    counts = np.bincount(rows, minlength=n).astype(np.float64)
    mean = scipy.sparse.csr_matrix((1.0 / counts[rows], (rows, cols)), shape=(n, papers.shape[0]))
    texts, topic_rows, topic_cols = _topic_rows(task.subscribers)
    follow = scipy.sparse.csr_matrix(
        (np.ones(len(topic_rows)), (topic_rows, topic_cols)), shape=(n, len(texts))
    )
    return scipy.sparse.csr_matrix(mean @ papers + follow @ topic_vectors)


def _transform_texts(vectorizer: TfidfVectorizer, texts: Sequence[str]) -> scipy.sparse.csr_matrix:
    """Embed free texts with a fitted vectoriser (an empty list gives an empty matrix)."""
    if not texts:
        return scipy.sparse.csr_matrix((0, len(vectorizer.vocabulary_)))
    return scipy.sparse.csr_matrix(vectorizer.transform(texts))


def plain_tfidf(task: DayTask) -> Rankings:
    """Centroid cosine in sklearn's default TfidfVectorizer space, fitted on train + candidates.

    Candidate vectors are unit length, so ordering by the dot product with the
    (unnormalised) centroid is ordering by cosine.
    """
    vectorizer = TfidfVectorizer()
    papers = vectorizer.fit_transform([p.text for p in (*task.train, *task.candidates)])
    texts, _, _ = _topic_rows(task.subscribers)
    profiles = _centroid_profiles(task, papers, _transform_texts(vectorizer, texts))
    return top_k((profiles @ papers[len(task.train) :].T).toarray())


def _svm_training_set(
    subscriber: Subscriber,
    train_vectors: scipy.sparse.csr_matrix,
    topic_vector: scipy.sparse.csr_matrix | None,
    train_index: Mapping[str, int],
) -> tuple[scipy.sparse.csr_matrix, npt.NDArray[np.int64]]:
    """Liked papers (and the topic text, as one more document) positive, the rest negative."""
    labels = np.zeros(train_vectors.shape[0], dtype=np.int64)
    labels[[train_index[paper.id] for paper in subscriber.liked]] = 1
    if topic_vector is None:
        return train_vectors, labels
    features = scipy.sparse.vstack([train_vectors, topic_vector], format="csr")
    return features, np.append(labels, 1)


def arxiv_sanity_svm(task: DayTask) -> Rankings:
    """arxiv-sanity-lite: its TF-IDF, then one LinearSVC per subscriber, ranked by margin."""
    vectorizer = TfidfVectorizer(**ARXIV_SANITY_TFIDF)
    papers = vectorizer.fit_transform([p.text for p in (*task.train, *task.candidates)])
    train_vectors = scipy.sparse.csr_matrix(papers[: len(task.train)])
    candidates = papers[len(task.train) :]
    texts, _, _ = _topic_rows(task.subscribers)
    topic_matrix = _transform_texts(vectorizer, texts)
    topic_vectors = {text: topic_matrix[i] for i, text in enumerate(texts)}
    train_index = {paper.id: i for i, paper in enumerate(task.train)}
    rankings = np.empty((len(task.subscribers), DEPTH), dtype=np.int64)
    for row, subscriber in enumerate(task.subscribers):
        topic = topic_vectors.get(subscriber.topic_text or "")
        features, labels = _svm_training_set(subscriber, train_vectors, topic, train_index)
        classifier = LinearSVC(**ARXIV_SANITY_SVM).fit(features, labels)
        rankings[row] = top_k(classifier.decision_function(candidates)[None, :])[0]
    return rankings


@dataclass(frozen=True)
class ModelParams:
    """The TF-IDF model's parameters: fit_transform's keyword arguments."""

    title_weight: int
    max_df: float
    min_df: int | None

    @classmethod
    def library_defaults(cls) -> ModelParams:
        """The defaults of recommender.fit_transform, read from its signature."""
        parameters = inspect.signature(fit_transform).parameters
        return cls(
            title_weight=parameters["title_weight"].default,
            max_df=parameters["max_df"].default,
            min_df=parameters["min_df"].default,
        )

    def resolved(self, n_docs: int) -> ModelParams:
        """The same model with min_df=None spelled out as fit_transform resolves it."""
        if self.min_df is not None:
            return self
        return replace(self, min_df=2 if n_docs >= _MIN_DF_CORPUS_SIZE else 1)

    def label(self) -> str:
        """The parameters as the table prints them."""
        min_df = "auto" if self.min_df is None else self.min_df
        return f"title_weight={self.title_weight}, max_df={self.max_df}, min_df={min_df}"


@dataclass(frozen=True)
class _Fit:
    """Ours' vectors for one day: training papers then candidates, and topic interests."""

    papers: scipy.sparse.csr_matrix
    interests: scipy.sparse.csr_matrix


class FitCache:
    """One model fit per (parameter set, day), shared by every variant that only
    changes the feedback weights; entries of earlier days are dropped."""

    def __init__(self) -> None:
        self._task: DayTask | None = None
        self._fits: dict[ModelParams, _Fit] = {}

    def get(self, task: DayTask, params: ModelParams) -> _Fit:
        """The fit of ``params`` on ``task``'s training papers and candidates."""
        if task is not self._task:
            self._task, self._fits = task, {}
        params = params.resolved(len(task.train) + len(task.candidates))
        if params not in self._fits:
            self._fits[params] = _fit_ours(task, params)
        return self._fits[params]


def _fit_ours(task: DayTask, params: ModelParams) -> _Fit:
    docs = [paper.document for paper in (*task.train, *task.candidates)]
    model, papers = fit_transform(
        docs, title_weight=params.title_weight, max_df=params.max_df, min_df=params.min_df
    )
    texts, rows, cols = _topic_rows(task.subscribers)
    interests = build_profiles(
        model,
        texts=texts,
        rows=np.asarray(rows, dtype=np.int64),
        cols=np.asarray(cols, dtype=np.int64),
        weights=np.ones(len(rows)),
        n_profiles=len(task.subscribers),
    )
    return _Fit(papers=papers, interests=interests)


@dataclass
class Ours:
    """The recommender library as the newsletter runs it: topics, then liked papers, then rank."""

    model: ModelParams
    feedback: FeedbackWeights = field(default_factory=FeedbackWeights)
    cache: FitCache = field(default_factory=FitCache)

    def __call__(self, task: DayTask) -> Rankings:
        fit = self.cache.get(task, self.model)
        rows, cols, ages = _like_rows(task)
        profiles = apply_feedback(
            fit.interests,
            fit.papers,
            rows=np.asarray(rows, dtype=np.int64),
            cols=np.asarray(cols, dtype=np.int64),
            values=np.ones(len(rows), dtype=np.int64),
            ages_days=np.asarray(ages, dtype=np.float64),
            weights=self.feedback,
        )
        candidates = fit.papers[len(task.train) :]
        return rank(profiles, candidates, k=DEPTH, min_score=0.0).indices


# ---------------------------------------------------------- semantic (issue 8)


@dataclass
class Embeddings:
    """MiniLM vectors of every paper (by id) and of every topic text, computed once.

    Papers are embedded in the parent process and cached on disk by model version,
    so forked day workers only read arrays (no torch in them).
    """

    papers: dict[str, npt.NDArray[np.float32]]
    texts: dict[str, npt.NDArray[np.float32]]

    def of(self, papers: Sequence[Paper]) -> npt.NDArray[np.float32]:
        """The papers' vectors as rows, in order."""
        if not papers:
            return np.zeros((0, semantic.DIMENSIONS), dtype=np.float32)
        return np.stack([self.papers[p.id] for p in papers])


def embed_corpus(papers: Sequence[Paper], texts: Sequence[str], cache: Path) -> Embeddings:
    """Embed the papers (cached in ``cache``) and topic texts with the semantic extra."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", semantic.MODEL_VERSION)
    path = cache / f"eval-embeddings-{slug}.npz"
    stored: dict[str, npt.NDArray[np.float32]] = {}
    if path.exists():
        with np.load(path) as data:
            stored = dict(zip(data["ids"].tolist(), data["vectors"], strict=True))
    encoder = semantic.load_encoder()
    missing = [p for p in papers if p.id not in stored]
    if missing:
        _log(f"embedding {len(missing)} papers with {semantic.MODEL_VERSION} (cached in {path})")
        started = time.perf_counter()
        vectors = encoder.encode_documents(
            [p.document for p in missing],
            progress=lambda done, total: _log(f"  {done}/{total} papers embedded"),
        )
        _log(f"  {len(missing) / (time.perf_counter() - started):.1f} papers/s")
        stored.update(zip([p.id for p in missing], vectors, strict=True))
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=np.array(list(stored)), vectors=np.stack(list(stored.values())))
    text_list = list(dict.fromkeys(texts))
    text_vectors = dict(zip(text_list, encoder.encode_interests(text_list), strict=True))
    return Embeddings(papers=stored, texts=text_vectors)


def _dense_profiles(
    task: DayTask,
    emb: Embeddings,
    linear: LinearOptions | None = None,
    whitening: Whitening | None = None,
) -> npt.NDArray[np.float32]:
    """Ours' profile rule (topic, then decayed liked papers) in MiniLM space; with
    ``linear``, moved towards a per-subscriber logistic regression's direction; with
    ``whitening``, every vector goes through it first (as planning does)."""
    texts, topic_rows, topic_cols = _topic_rows(task.subscribers)
    rows, cols, ages = _like_rows(task)
    topic_vectors = whiten(
        whitening,
        np.stack([emb.texts[t] for t in texts])
        if texts
        else np.zeros((0, semantic.DIMENSIONS), dtype=np.float32),
    )
    train_vectors = whiten(whitening, emb.of(task.train))
    rocchio = semantic.dense_profiles(
        topic_vectors,
        rows=np.asarray(topic_rows, dtype=np.int64),
        cols=np.asarray(topic_cols, dtype=np.int64),
        weights=np.ones(len(topic_rows), dtype=np.float32),
        n_profiles=len(task.subscribers),
        paper_vectors=train_vectors,
        feedback=semantic.FeedbackEvents(
            rows=np.asarray(rows, dtype=np.int64),
            cols=np.asarray(cols, dtype=np.int64),
            values=np.ones(len(rows)),
            ages_days=np.asarray(ages, dtype=np.float64),
        ),
    )
    if linear is None:
        return rocchio
    n = len(task.subscribers)
    decayed = np.power(0.5, np.asarray(ages, dtype=np.float64) / FeedbackWeights().half_life_days)
    liked = scipy.sparse.csr_matrix((decayed, (rows, cols)), shape=(n, len(task.train)))
    directions, eligible = fit_directions(
        liked,
        scipy.sparse.csr_matrix((n, len(task.train))),
        train_vectors,
        train_vectors,
        options=linear,
    )
    return blend_profiles(rocchio, directions, eligible, blend=linear.blend)


@dataclass
class Dense:
    """Dense only: MiniLM profiles (ours' rule) against MiniLM paper vectors, cosine."""

    embeddings: Embeddings
    linear: LinearOptions | None = None

    def __call__(self, task: DayTask) -> Rankings:
        profiles = _dense_profiles(task, self.embeddings, self.linear)
        return top_k(profiles @ self.embeddings.of(task.candidates).T)


@dataclass
class Hybrid:
    """Ours' TF-IDF (library defaults) plus MiniLM, ranked by ``rank_hybrid``."""

    embeddings: Embeddings
    weights: HybridWeights
    cache: FitCache = field(default_factory=FitCache)
    linear: LinearOptions | None = None
    # Whitened MiniLM (recommender.whitening), as planning ranks; False: raw vectors.
    whitened: bool = True

    def __call__(self, task: DayTask) -> Rankings:
        fit = self.cache.get(task, ModelParams.library_defaults())
        rows, cols, ages = _like_rows(task)
        profiles = apply_feedback(
            fit.interests,
            fit.papers,
            rows=np.asarray(rows, dtype=np.int64),
            cols=np.asarray(cols, dtype=np.int64),
            values=np.ones(len(rows), dtype=np.int64),
            ages_days=np.asarray(ages, dtype=np.float64),
        )
        # Whitened on the day's candidates, as planning whitens on an edition's.
        candidates = self.embeddings.of(task.candidates)
        whitening = fit_whitening(candidates) if self.whitened else None
        return rank_hybrid(
            profiles,
            fit.papers[len(task.train) :],
            _dense_profiles(task, self.embeddings, self.linear, whitening),
            whiten(whitening, candidates),
            k=DEPTH,
            weights=self.weights,
        ).indices


HYBRID_GRID = (0.1, 0.15, 0.25, 0.5, 1.0)  # dense weight, TF-IDF weight 1


def tune_hybrid(
    embeddings: Embeddings,
    days: Sequence[date],
    *,
    papers_by_day: Mapping[date, Sequence[Paper]],
    train: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    jobs: int,
) -> tuple[HybridWeights, list[tuple[float, float]]]:
    """The dense weight (TF-IDF weight 1) with the best mean nDCG@10 on the tuning days,
    for the hybrid as the newsletter runs it (with the per-subscriber linear models)."""
    cache = FitCache()
    methods: dict[str, Method] = {
        f"{w:g}": Hybrid(embeddings, hybrid_weights(w), cache, LinearOptions()) for w in HYBRID_GRID
    }
    evaluation = evaluate(
        methods,
        days,
        papers_by_day=papers_by_day,
        train=train,
        subscribers=subscribers,
        jobs=jobs,
        log=_log,
    )
    results = sorted(
        ((w, evaluation.mean(f"{w:g}").ndcg) for w in HYBRID_GRID), key=lambda r: -r[1]
    )
    return hybrid_weights(results[0][0]), results


def hybrid_weights(dense: float) -> HybridWeights:
    """TF-IDF weight 1, the given dense weight, and the library defaults' penalties in
    proportion (backgrounds to the TF-IDF weight, the density penalty to the dense one)."""
    defaults = HybridWeights()
    return HybridWeights(
        tfidf=1.0,
        dense=dense,
        tfidf_background=defaults.tfidf_background / defaults.tfidf,
        dense_background=defaults.dense_background / defaults.tfidf,
        dense_density=dense * defaults.dense_density / defaults.dense,
    )


# --------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Score:
    """One method's scores for one subscriber on one day."""

    method: str
    subscriber: str
    kind: str
    category: str
    day: date
    precision: float  # precision@10
    ndcg: float  # nDCG@10
    recall: float  # recall@50


@dataclass(frozen=True)
class Metrics:
    """Mean scores over a set of (subscriber, day) pairs."""

    precision: float
    ndcg: float
    recall: float
    pairs: int


@dataclass
class Evaluation:
    """Every score of a run, and the seconds each method spent ranking."""

    scores: list[Score]
    seconds: dict[str, float]

    def mean(self, method: str, *, kind: str | None = None, category: str | None = None) -> Metrics:
        """Mean scores of ``method``, optionally over one subscriber kind or category."""
        chosen = [
            s
            for s in self.scores
            if s.method == method
            and (kind is None or s.kind == kind)
            and (category is None or s.category == category)
        ]
        if not chosen:
            return Metrics(np.nan, np.nan, np.nan, 0)
        return Metrics(
            precision=float(np.mean([s.precision for s in chosen])),
            ndcg=float(np.mean([s.ndcg for s in chosen])),
            recall=float(np.mean([s.recall for s in chosen])),
            pairs=len(chosen),
        )

    def per_subscriber(self, method: str) -> dict[str, float]:
        """Each subscriber's nDCG@10 averaged over its days."""
        values: dict[str, list[float]] = defaultdict(list)
        for s in self.scores:
            if s.method == method:
                values[s.subscriber].append(s.ndcg)
        return {name: float(np.mean(v)) for name, v in values.items()}


def _score_day(
    name: str, rankings: Rankings, task: DayTask, relevance: npt.NDArray[np.bool_]
) -> list[Score]:
    n_relevant = relevance.sum(axis=1)
    expected = (len(task.subscribers), DEPTH)
    if rankings.shape != expected:
        raise ValueError(f"{name} returned rankings of shape {rankings.shape}, not {expected}")
    hits = hits_at(rankings, relevance)
    precision = precision_at_k(hits, 10)
    ndcg = ndcg_at_k(hits, n_relevant, 10)
    recall = recall_at_k(hits, n_relevant, 50)
    return [
        Score(
            method=name,
            subscriber=s.name,
            kind=s.kind,
            category=s.category,
            day=task.day,
            precision=float(precision[i]),
            ndcg=float(ndcg[i]),
            recall=float(recall[i]),
        )
        for i, s in enumerate(task.subscribers)
        if n_relevant[i] > 0
    ]


@dataclass(frozen=True)
class _Run:
    """What every evaluation day needs; worker processes inherit it by fork."""

    methods: Mapping[str, Method]
    papers_by_day: Mapping[date, Sequence[Paper]]
    train: Sequence[Paper]
    subscribers: Sequence[Subscriber]

    def day(self, day: date) -> tuple[list[Score], dict[str, float]]:
        """Every method's scores on one day, and the seconds each spent ranking."""
        task = DayTask(day, self.train, self.papers_by_day[day], self.subscribers)
        relevance = relevance_matrix(self.subscribers, task.candidates)
        scores: list[Score] = []
        seconds: dict[str, float] = {}
        for name, method in self.methods.items():
            start = time.perf_counter()
            rankings = method(task)
            seconds[name] = time.perf_counter() - start
            scores.extend(_score_day(name, rankings, task, relevance))
        return scores, seconds


_worker_run: _Run | None = None


def _start_worker(run: _Run) -> None:
    global _worker_run  # one run per worker process, set once when it starts
    _worker_run = run


def _day_in_worker(day: date) -> tuple[list[Score], dict[str, float]]:
    if _worker_run is None:
        raise RuntimeError("worker process started without a run")
    return _worker_run.day(day)


def evaluate(
    methods: Mapping[str, Method],
    days: Sequence[date],
    *,
    papers_by_day: Mapping[date, Sequence[Paper]],
    train: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> Evaluation:
    """Rank each day's new papers with every method; score the pairs with a relevant paper.

    With ``jobs`` > 1 the days are spread over that many forked processes (each
    method still ranks all subscribers of a day at once).
    """
    run = _Run(methods, papers_by_day, train, subscribers)
    scores: list[Score] = []
    seconds = dict.fromkeys(methods, 0.0)
    with contextlib.ExitStack() as stack:
        results: Iterable[tuple[list[Score], dict[str, float]]]
        if jobs > 1 and len(days) > 1:
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    max_workers=min(jobs, len(days)),
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_start_worker,
                    initargs=(run,),
                )
            )
            results = pool.map(_day_in_worker, days)
        else:
            results = map(run.day, days)
        for day, (day_scores, day_seconds) in zip(days, results, strict=True):
            scores.extend(day_scores)
            for name, value in day_seconds.items():
                seconds[name] += value
            if log is not None:
                n = len(papers_by_day[day])
                log(f"{day}: {n} candidates ranked by {len(methods)} methods")
    return Evaluation(scores=scores, seconds=seconds)


def paired_difference(evaluation: Evaluation, method: str, baseline: str) -> tuple[float, float]:
    """Mean per-subscriber nDCG@10 difference, method minus baseline, and its 95% half-width."""
    ours, theirs = evaluation.per_subscriber(method), evaluation.per_subscriber(baseline)
    diffs = np.array([ours[name] - theirs[name] for name in ours])
    if len(diffs) < 2:
        return float(diffs.mean()) if len(diffs) else np.nan, np.nan
    return float(diffs.mean()), float(1.96 * diffs.std(ddof=1) / np.sqrt(len(diffs)))


# ------------------------------------------------------------------------- tuning


@dataclass(frozen=True)
class Grid:
    """The values tried for each of ours' parameters (feedback: interests vs liked=1)."""

    title_weight: tuple[int, ...]
    max_df: tuple[float, ...]
    min_df: tuple[int | None, ...]
    interests: tuple[float, ...]

    def points(self) -> list[tuple[ModelParams, FeedbackWeights]]:
        """Every combination, model parameters outermost so one fit serves its variants."""
        models = itertools.product(self.title_weight, self.max_df, self.min_df)
        return [
            (ModelParams(*model), FeedbackWeights(interests=interests, liked=1.0))
            for model in models
            for interests in self.interests
        ]


FULL_GRID = Grid(title_weight=(1, 2, 3), max_df=(0.2, 0.5), min_df=(1, 2, 3), interests=(0.5, 1, 2))
QUICK_GRID = Grid(title_weight=(1, 2), max_df=(0.5,), min_df=(2,), interests=(1.0,))


def variant_label(model: ModelParams, feedback: FeedbackWeights) -> str:
    """Ours' parameters in one line."""
    return f"{model.label()}, interests={feedback.interests:g} (liked={feedback.liked:g})"


@dataclass(frozen=True)
class Tuning:
    """The grid's results on the tuning days, best mean nDCG@10 first."""

    results: list[tuple[ModelParams, FeedbackWeights, float]]
    defaults: tuple[ModelParams, FeedbackWeights]  # the library's, always evaluated
    evaluation: Evaluation
    subscribers: int
    days: list[date]

    @property
    def pairs(self) -> int:
        """(subscriber, day) pairs scored per grid point."""
        return self.evaluation.mean(variant_label(*self.defaults)).pairs

    @property
    def best(self) -> tuple[ModelParams, FeedbackWeights]:
        """The chosen parameters."""
        model, feedback, _ = self.results[0]
        return model, feedback


def tune(
    grid: Grid,
    days: Sequence[date],
    *,
    papers_by_day: Mapping[date, Sequence[Paper]],
    train: Sequence[Paper],
    subscribers: Sequence[Subscriber],
    jobs: int = 1,
    log: Callable[[str], None] | None = None,
) -> Tuning:
    """Evaluate every grid point, and the library defaults, on the tuning days.

    The points are ranked by mean nDCG@10. The defaults join the grid when they
    are not already in it (min_df=None counts as the value it resolves to).
    """
    cache = FitCache()
    points = {variant_label(m, f): (m, f) for m, f in grid.points()}
    defaults = (ModelParams.library_defaults().resolved(len(train)), FeedbackWeights())
    points.setdefault(variant_label(*defaults), defaults)
    methods = {label: Ours(m, f, cache) for label, (m, f) in points.items()}
    evaluation = evaluate(
        methods,
        days,
        papers_by_day=papers_by_day,
        train=train,
        subscribers=subscribers,
        jobs=jobs,
        log=log,
    )
    means = {label: evaluation.mean(label) for label in points}
    order = sorted(points, key=lambda label: -means[label].ndcg)  # stable: grid order on ties
    results = [(*points[label], means[label].ndcg) for label in order]
    return Tuning(results, defaults, evaluation, len(subscribers), list(days))


# ------------------------------------------------------------------------- report

LIBRARY = "ours, library defaults"
TUNED = "ours, tuned"
PLAIN = "plain TfidfVectorizer() centroid"
SVM = "arxiv-sanity TF-IDF + LinearSVC"
DENSE = "MiniLM dense only (ours' profile rule)"
HYBRID = "hybrid: ours TF-IDF + MiniLM"
DENSE_LR = "MiniLM + per-subscriber logistic regression"
HYBRID_LR = "hybrid + per-subscriber logistic regression"


def report_methods(tuned: tuple[ModelParams, FeedbackWeights]) -> dict[str, Method]:
    """Baselines, then ours with the library defaults and with the tuned parameters."""
    cache = FitCache()
    return {
        "random": random_method(),
        "most recent": most_recent,
        PLAIN: plain_tfidf,
        SVM: arxiv_sanity_svm,
        LIBRARY: Ours(ModelParams.library_defaults(), FeedbackWeights(), cache),
        TUNED: Ours(tuned[0], tuned[1], cache),
    }


def metrics_table(evaluation: Evaluation, methods: Sequence[str]) -> str:
    """Markdown: every method's P@10, nDCG@10 and R@50, overall and per subscriber kind."""
    lines = [
        "| subscribers | method | P@10 | nDCG@10 | R@50 |",
        "|---|---|---|---|---|",
    ]
    for kind in (None, *KINDS):
        pairs = evaluation.mean(methods[0], kind=kind).pairs
        if pairs == 0:
            continue
        group = f"{kind or 'all'} ({pairs} pairs)"
        for method in methods:
            m = evaluation.mean(method, kind=kind)
            lines.append(
                f"| {group} | {method} | {m.precision:.3f} | {m.ndcg:.3f} | {m.recall:.3f} |"
            )
            group = ""
    return "\n".join(lines)


def category_table(
    evaluation: Evaluation, methods: Sequence[str], categories: Sequence[str]
) -> str:
    """Markdown: nDCG@10 per category (all kinds of subscriber pooled)."""
    lines = [
        "| category | pairs | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for category in categories:
        means = [evaluation.mean(method, category=category) for method in methods]
        cells = " | ".join(f"{m.ndcg:.3f}" for m in means)
        lines.append(f"| {category} | {means[0].pairs} | {cells} |")
    return "\n".join(lines)


def tuning_table(tuning: Tuning, *, top: int = 8) -> str:
    """Markdown: the best grid points and where the library defaults land."""
    lines = ["| rank | parameters | nDCG@10 |", "|---|---|---|"]
    for position, (model, feedback, ndcg) in enumerate(tuning.results, start=1):
        is_default = (model, feedback) == tuning.defaults
        if position <= top or is_default:
            note = " (library defaults)" if is_default else ""
            lines.append(f"| {position} | {variant_label(model, feedback)}{note} | {ndcg:.4f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class RunConfig:
    """What a run covers: the full evaluation, or a reduced one with --quick."""

    grid: Grid
    draws: int
    categories: tuple[str, ...] | None  # None: every eligible category
    max_tuning_days: int | None
    max_report_days: int | None


FULL = RunConfig(FULL_GRID, LIKED_DRAWS, None, None, None)
QUICK = RunConfig(QUICK_GRID, 1, ("cs.CV", "cs.CL", "cs.LG"), 2, 3)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _next_day(day: date) -> date:
    return date.fromordinal(day.toordinal() + 1)


@dataclass(frozen=True)
class Clock:
    """Wall and CPU time (this process and its finished workers) at one moment."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Clock:
        """Read both clocks."""
        t = os.times()
        return cls(time.perf_counter(), t.user + t.system + t.children_user + t.children_system)

    def since(self, start: Clock) -> str:
        """The time from ``start`` to this moment, wall and CPU."""
        return f"{self.wall - start.wall:.0f} s wall, {self.cpu - start.cpu:.0f} s CPU"


@dataclass(frozen=True)
class Setup:
    """The data and subscribers of a run's two phases."""

    papers_by_day: dict[date, list[Paper]]
    categories: list[str]
    tune_train: list[Paper]
    tune_days: list[date]
    tune_subscribers: list[Subscriber]
    train: list[Paper]
    report_days: list[date]
    subscribers: list[Subscriber]


def prepare(config: RunConfig, data_dir: Path = DATA_DIR) -> Setup:
    """Load the listings, pick the categories, draw the subscribers of both phases."""
    papers_by_day = load_days(data_dir)
    early = papers_between(papers_by_day, FIRST_DAY, TRAIN_LAST)
    late = papers_between(papers_by_day, _next_day(TRAIN_LAST), LAST_DAY)
    categories = eligible_categories(early, late, min_papers=MIN_CATEGORY_PAPERS)
    if config.categories is not None:
        categories = [c for c in categories if c in config.categories]
    topic_texts = catalogue_topic_texts()
    tune_train = papers_between(papers_by_day, FIRST_DAY, TUNE_TRAIN_LAST)
    tune_days = listing_days(papers_by_day, _next_day(TUNE_TRAIN_LAST), TRAIN_LAST)
    report_days = listing_days(papers_by_day, _next_day(TRAIN_LAST), LAST_DAY)
    return Setup(
        papers_by_day=papers_by_day,
        categories=categories,
        tune_train=tune_train,
        tune_days=tune_days[: config.max_tuning_days],
        tune_subscribers=make_subscribers(tune_train, categories, topic_texts, draws=config.draws),
        train=early,
        report_days=report_days[: config.max_report_days],
        subscribers=make_subscribers(early, categories, topic_texts, draws=config.draws),
    )


def run(
    config: RunConfig,
    data_dir: Path = DATA_DIR,
    *,
    jobs: int = 2,
    dense: bool = True,
    cache: Path = EMBEDDING_CACHE,
) -> str:
    """Tune on the early days, evaluate on the later days; return the Markdown report."""
    started = Clock.now()
    load_before = os.getloadavg()[0]
    setup = prepare(config, data_dir)
    tuning_started = Clock.now()
    tuning = tune(
        config.grid,
        setup.tune_days,
        papers_by_day=setup.papers_by_day,
        train=setup.tune_train,
        subscribers=setup.tune_subscribers,
        jobs=jobs,
        log=_log,
    )
    tuning_time = Clock.now().since(tuning_started)
    methods = report_methods(tuning.best)
    semantic_lines: list[str] = []
    if dense and semantic.available():
        semantic_started = Clock.now()
        topic_texts = [s.topic_text for s in setup.subscribers if s.topic_text is not None]
        all_papers = [p for day in sorted(setup.papers_by_day) for p in setup.papers_by_day[day]]
        embeddings = embed_corpus(all_papers, topic_texts, cache)
        weights, grid = tune_hybrid(
            embeddings,
            setup.tune_days,
            papers_by_day=setup.papers_by_day,
            train=setup.tune_train,
            subscribers=setup.tune_subscribers,
            jobs=jobs,
        )
        methods[DENSE] = Dense(embeddings)
        methods[DENSE_LR] = Dense(embeddings, LinearOptions())
        methods[HYBRID] = Hybrid(embeddings, weights)
        methods[HYBRID_LR] = Hybrid(embeddings, weights, linear=LinearOptions())
        semantic_lines = [
            "## Semantic (issue 8): hybrid weights",
            "",
            f"Model {semantic.MODEL_VERSION}. Dense weight (TF-IDF weight 1) chosen on the "
            "tuning days by mean nDCG@10: "
            + ", ".join(f"{w:g} → {ndcg:.3f}" for w, ndcg in grid)
            + f". Chosen: tfidf={weights.tfidf:g}, dense={weights.dense:g}. Embedding and "
            f"hybrid tuning: {Clock.now().since(semantic_started)}.",
            "",
        ]
    evaluation = evaluate(
        methods,
        setup.report_days,
        papers_by_day=setup.papers_by_day,
        train=setup.train,
        subscribers=setup.subscribers,
        jobs=jobs,
        log=_log,
    )
    timing = (
        f"Tuning ({len(tuning.results)} grid points): {tuning_time}. "
        "Ranking time on the later days, summed over days: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in evaluation.seconds.items())
        + f". Whole run: {Clock.now().since(started)} with {jobs} worker process(es); "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end."
    )
    return render_report(setup, tuning, evaluation, timing, semantic_lines)


def render_report(
    setup: Setup,
    tuning: Tuning,
    evaluation: Evaluation,
    timing: str,
    semantic_lines: Sequence[str] = (),
) -> str:
    """The Markdown report: the table, paired differences, per category, tuning, time."""
    methods = list(evaluation.seconds)
    days, kinds = setup.report_days, Counter(s.kind for s in setup.subscribers)
    chosen, defaults = variant_label(*tuning.best), variant_label(*tuning.defaults)
    gain, gain_half = paired_difference(tuning.evaluation, chosen, defaults)
    lines = [
        f"## Later days: {days[0]} to {days[-1]} ({len(days)} listing days), "
        f"training on the {len(setup.train)} papers of {FIRST_DAY} to {TRAIN_LAST}",
        "",
        f"{len(setup.subscribers)} subscribers over {len(setup.categories)} categories "
        f"({', '.join(setup.categories)}): "
        + ", ".join(f"{kinds[k]} {k}" for k in KINDS)
        + f"; {evaluation.mean(methods[0]).pairs} (subscriber, day) pairs with a relevant paper.",
        "",
        metrics_table(evaluation, methods),
        "",
        "Paired nDCG@10 difference, ours tuned minus each method "
        "(per-subscriber means over the days, 95% interval):",
        "",
    ]
    for baseline in methods:
        if baseline != TUNED:
            diff, half = paired_difference(evaluation, TUNED, baseline)
            lines.append(f"- vs {baseline}: {diff:+.3f} ± {half:.3f}")
    if HYBRID in methods:
        lines += ["", "Paired nDCG@10 difference, hybrid minus each method:", ""]
        for baseline in methods:
            if baseline != HYBRID:
                diff, half = paired_difference(evaluation, HYBRID, baseline)
                lines.append(f"- vs {baseline}: {diff:+.3f} ± {half:.3f}")
    lines += [
        "",
        "nDCG@10 per category (all subscriber kinds):",
        "",
        category_table(evaluation, methods, setup.categories),
        "",
        f"## Tuning: {tuning.days[0]} to {tuning.days[-1]}, training on {FIRST_DAY} to "
        f"{TUNE_TRAIN_LAST}; {tuning.subscribers} subscribers, {tuning.pairs} pairs",
        "",
        f"Chosen by mean nDCG@10: {chosen}. The disliked weight is "
        "not tuned: no dislikes are simulated. Chosen minus library defaults on the tuning "
        f"days: {gain:+.3f} ± {gain_half:.3f} nDCG@10 (paired, 95% interval).",
        "",
        tuning_table(tuning),
        "",
        *semantic_lines,
        "## Time",
        "",
        timing,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: the full evaluation, or a reduced one with --quick."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="three categories, fewer days")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="arxiv-daily directory")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (days in parallel)")
    parser.add_argument(
        "--no-semantic", action="store_true", help="skip the dense and hybrid rows (issue 8)"
    )
    parser.add_argument(
        "--cache", type=Path, default=EMBEDDING_CACHE, help="where paper embeddings are kept"
    )
    parser.add_argument(
        "--citeulike",
        action="store_true",
        help="real readers: recall@50/100/300 on CiteULike-a libraries (issue 16.3)",
    )
    parser.add_argument(
        "--no-sklearn-lr",
        action="store_true",
        help="with --citeulike: leave out MiniLM + sklearn's per-user logistic regression "
        "(the slowest baseline, ~15 min)",
    )
    args = parser.parse_args(argv)
    if args.citeulike:
        import eval_citeulike  # beside this script; it imports this module's baselines

        print(
            eval_citeulike.run(jobs=args.jobs, quick=args.quick, sklearn_lr=not args.no_sklearn_lr)
        )
        return
    config = QUICK if args.quick else FULL
    print(run(config, args.data, jobs=args.jobs, dense=not args.no_semantic, cache=args.cache))


if __name__ == "__main__":
    main()
