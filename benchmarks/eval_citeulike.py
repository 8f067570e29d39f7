"""Quality on real readers: CiteULike-a libraries (issue 16.3), for eval_recommender.py.

    .venv/bin/python benchmarks/eval_recommender.py --citeulike [--quick]

Data: ``../shared/data/citeulike-a`` (16,980 papers, titles for all, abstracts for
1,903; 2,776 researchers with 10 liked training papers each, the rest of their library
held out). For every user, every method scores all papers outside the user's training
set; recall@M = |test ∩ top-M| / |test|, averaged over users, M = 50, 100, 300.

Users are split once by a fixed seed: 30% tune (weights are chosen on them), 70%
report (the table). MiniLM vectors of the papers are computed once and cached on disk
(``~/.cache/newsletter-eval/``). Ours ranks with them whitened on all the papers (the
papers being ranked, as planning whitens on an edition's candidates); the MiniLM
baselines use them as they are.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse
from eval_recommender import ARXIV_SANITY_SVM, ARXIV_SANITY_TFIDF
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from recommender import Document, apply_feedback, fit_transform, rank, semantic
from recommender.hybrid import HybridWeights, rank_hybrid
from recommender.linear import LinearOptions, personalise
from recommender.whitening import fit_whitening, whiten

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-a"
CACHE = Path.home() / ".cache" / "newsletter-eval"
SPLIT_SEED = 20261206
TUNE_SHARE = 0.3
CUTS = (50, 100, 300)
DEPTH = max(CUTS)


@dataclass(frozen=True)
class Library:
    """Papers (row order of every matrix) and users' training and held-out rows."""

    ids: list[str]
    docs: list[Document]
    train: list[npt.NDArray[np.int64]]
    test: list[npt.NDArray[np.int64]]

    @property
    def n_users(self) -> int:
        """How many users the libraries hold."""
        return len(self.train)


def load_library(directory: Path = DATA_DIR) -> Library:
    """The papers and every user's training and held-out papers as row numbers."""
    ids: list[str] = []
    docs: list[Document] = []
    with (directory / "items.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                item = json.loads(line)
                ids.append(item["id"])
                docs.append(Document(title=item["title"], abstract=item["summary"] or ""))
    row = {paper: i for i, paper in enumerate(ids)}
    train: list[npt.NDArray[np.int64]] = []
    test: list[npt.NDArray[np.int64]] = []
    with (directory / "users-even.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                user = json.loads(line)
                train.append(np.array([row[p] for p in user["train"]], dtype=np.int64))
                test.append(np.array([row[p] for p in user["test"]], dtype=np.int64))
    return Library(ids=ids, docs=docs, train=train, test=test)


def split_users(
    n_users: int, *, seed: int = SPLIT_SEED, share: float = TUNE_SHARE
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A fixed random (tune, report) split of the users, each sorted."""
    order = np.random.default_rng(seed).permutation(n_users)
    cut = round(share * n_users)
    return np.sort(order[:cut]), np.sort(order[cut:])


def embed_papers(
    library: Library, cache: Path = CACHE, log: Callable[[str], None] = print
) -> npt.NDArray[np.float32]:
    """MiniLM vectors of every paper (title. abstract), cached on disk by model version."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", semantic.MODEL_VERSION)
    path = cache / f"citeulike-a-{slug}.npz"
    if path.exists():
        with np.load(path) as data:
            if data["ids"].tolist() == library.ids:
                return np.asarray(data["vectors"], dtype=np.float32)
    log(f"embedding {len(library.docs)} papers with {semantic.MODEL_VERSION} (cached in {path})")
    started = time.perf_counter()
    vectors = semantic.load_encoder().encode_documents(
        library.docs, progress=lambda done, total: log(f"  {done}/{total} papers embedded")
    )
    log(f"  {len(library.docs) / (time.perf_counter() - started):.1f} papers/s")
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, ids=np.array(library.ids), vectors=vectors)
    return vectors


def recall_at(
    rankings: npt.NDArray[np.int64], tests: Sequence[npt.NDArray[np.int64]], cuts: Sequence[int]
) -> dict[int, npt.NDArray[np.float64]]:
    """Per-user recall at each cut: the share of a user's held-out papers in their top M
    (NaN for a user with nothing held out: such users are left out of the means)."""
    out = {m: np.full(len(tests), np.nan) for m in cuts}
    for user, test in enumerate(tests):
        if len(test) == 0:
            continue
        row = rankings[user]
        valid = row >= 0
        position = dict(zip(row[valid].tolist(), np.flatnonzero(valid).tolist(), strict=True))
        ranks = np.array([position.get(int(paper), len(row)) for paper in test])
        for m in cuts:
            out[m][user] = np.count_nonzero(ranks < m) / len(test)
    return out


# ------------------------------------------------------------------------ methods


@dataclass
class Spaces:
    """The corpus in every space the methods use, computed once per run."""

    library: Library
    tfidf: scipy.sparse.csr_matrix  # ours (fit_transform, library defaults)
    sanity: scipy.sparse.csr_matrix  # arxiv-sanity-lite's TfidfVectorizer
    dense: npt.NDArray[np.float32]  # MiniLM
    # MiniLM whitened on the papers being ranked (all of them here), as planning does
    # (recommender.whitening): what ours ranks with; the baselines use ``dense``.
    whitened: npt.NDArray[np.float32]


def _liked(spaces: Spaces, users: npt.NDArray[np.int64]) -> scipy.sparse.csr_matrix:
    """(users x papers) ones at every training paper."""
    train = [spaces.library.train[u] for u in users]
    rows = np.repeat(np.arange(len(users)), [len(t) for t in train])
    cols = np.concatenate(train) if train else np.zeros(0, dtype=np.int64)
    return scipy.sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(users), len(spaces.library.ids)),
    )


def _events(liked: scipy.sparse.csr_matrix) -> semantic.FeedbackEvents:
    coo = liked.tocoo()
    return semantic.FeedbackEvents(
        rows=coo.row.astype(np.int64),
        cols=coo.col.astype(np.int64),
        values=np.ones(coo.nnz),
        ages_days=np.zeros(coo.nnz),
    )


def ours_tfidf(
    spaces: Spaces, users: npt.NDArray[np.int64], *, background: float | None = None
) -> npt.NDArray[np.int64]:
    """The newsletter's TF-IDF ranking: liked papers as "more like this", ``rank``."""
    liked = _liked(spaces, users)
    events = _events(liked)
    profiles = apply_feedback(
        scipy.sparse.csr_matrix((len(users), spaces.tfidf.shape[1]), dtype=np.float32),
        spaces.tfidf,
        rows=events.rows,
        cols=events.cols,
        values=np.ones(len(events.rows), dtype=np.int64),
        ages_days=events.ages_days,
    )
    extra = {} if background is None else {"background": background}
    return rank(profiles, spaces.tfidf, k=DEPTH, exclude=liked, **extra).indices  # type: ignore[arg-type]


def _dense_profiles(
    vectors: npt.NDArray[np.float32],
    liked: scipy.sparse.csr_matrix,
    linear: LinearOptions | None,
) -> npt.NDArray[np.float32]:
    """The newsletter's dense profiles: Rocchio of the liked papers, then ``personalise``
    (``vectors``: the papers' dense rows, whitened or not)."""
    events = _events(liked)
    profiles = semantic.dense_profiles(
        np.zeros((0, semantic.DIMENSIONS), dtype=np.float32),
        rows=[],
        cols=[],
        weights=[],
        n_profiles=liked.shape[0],
        paper_vectors=vectors,
        feedback=events,
    )
    if linear is None:
        return profiles
    return personalise(
        profiles,
        events,
        event_weights=np.ones(len(events.rows)),
        rated_vectors=vectors,
        candidates=vectors,
        options=linear,
    )


def ours_hybrid(
    spaces: Spaces,
    users: npt.NDArray[np.int64],
    *,
    weights: HybridWeights | None = None,
    linear: LinearOptions | None = LinearOptions(),  # noqa: B008 - frozen dataclass
    whitened: bool = True,
) -> npt.NDArray[np.int64]:
    """The newsletter's hybrid ranking (TF-IDF + MiniLM profiles, per-user model);
    ``whitened`` False: raw MiniLM vectors, as before issue 16's whitening."""
    vectors = spaces.whitened if whitened else spaces.dense
    liked = _liked(spaces, users)
    events = _events(liked)
    profiles = apply_feedback(
        scipy.sparse.csr_matrix((len(users), spaces.tfidf.shape[1]), dtype=np.float32),
        spaces.tfidf,
        rows=events.rows,
        cols=events.cols,
        values=np.ones(len(events.rows), dtype=np.int64),
        ages_days=events.ages_days,
    )
    return rank_hybrid(
        profiles,
        spaces.tfidf,
        _dense_profiles(vectors, liked, linear),
        vectors,
        k=DEPTH,
        weights=weights,
        exclude=liked,
    ).indices


def _top(scores: npt.NDArray[np.floating], liked: scipy.sparse.csr_matrix) -> npt.NDArray[np.int64]:
    """Each row's DEPTH best columns, best first, training papers left out."""
    scores = np.array(scores, dtype=np.float32)
    coo = liked.tocoo()
    scores[coo.row, coo.col] = -np.inf
    part = np.argpartition(-scores, DEPTH, axis=1)[:, :DEPTH]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def sanity_svm(spaces: Spaces, users: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """arxiv-sanity-lite: its TF-IDF, one LinearSVC per user over all papers (liked = 1)."""
    liked = _liked(spaces, users)
    scores = np.zeros((len(users), spaces.sanity.shape[0]), dtype=np.float32)
    for row, user in enumerate(users):
        labels = np.zeros(spaces.sanity.shape[0])
        labels[spaces.library.train[user]] = 1
        svm = LinearSVC(**ARXIV_SANITY_SVM)  # type: ignore[arg-type]
        svm.fit(spaces.sanity, labels)
        scores[row] = svm.decision_function(spaces.sanity)
    return _top(scores, liked)


def dense_centroid(spaces: Spaces, users: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """MiniLM only: the normalised mean of the liked papers' vectors, cosine."""
    liked = _liked(spaces, users)
    profiles = semantic.normalise(np.asarray(liked @ spaces.dense))
    return _top(profiles @ spaces.dense.T, liked)


def dense_logistic(spaces: Spaces, users: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """MiniLM + one sklearn LogisticRegression per user (liked vs every other paper)."""
    liked = _liked(spaces, users)
    scores = np.zeros((len(users), spaces.dense.shape[0]), dtype=np.float32)
    for row, user in enumerate(users):
        labels = np.zeros(spaces.dense.shape[0])
        labels[spaces.library.train[user]] = 1
        model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=200)
        model.fit(spaces.dense, labels)
        scores[row] = model.decision_function(spaces.dense)
    return _top(scores, liked)


# ---------------------------------------------------------------------------- run

Method = Callable[[Spaces, npt.NDArray[np.int64]], npt.NDArray[np.int64]]
_BLOCK = 256  # users ranked together (bounds the users x papers score blocks)
_SPACES: Spaces | None = None  # the forked workers' copy


def _in_worker(job: tuple[Method, npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    method, users = job
    assert _SPACES is not None
    return method(_SPACES, users)


def measure(
    spaces: Spaces, method: Method, users: npt.NDArray[np.int64], *, jobs: int = 1
) -> tuple[dict[int, float], float]:
    """Mean recall at each cut over ``users`` (those with held-out papers), and seconds."""
    global _SPACES
    started = time.perf_counter()
    blocks = [users[i : i + _BLOCK] for i in range(0, len(users), _BLOCK)]
    if jobs > 1 and len(blocks) > 1:
        _SPACES = spaces
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            parts = pool.map(_in_worker, [(method, b) for b in blocks])
    else:
        parts = [method(spaces, b) for b in blocks]
    recall = recall_at(np.concatenate(parts), [spaces.library.test[u] for u in users], CUTS)
    return {m: float(np.nanmean(v)) for m, v in recall.items()}, time.perf_counter() - started


def build_spaces(library: Library, *, cache: Path = CACHE, log: Callable[[str], None]) -> Spaces:
    """Fit ours' TF-IDF and arxiv-sanity's on every paper, and load or compute MiniLM."""
    _, tfidf = fit_transform(library.docs)
    sanity = TfidfVectorizer(**ARXIV_SANITY_TFIDF).fit_transform(  # type: ignore[arg-type]
        [f"{d.title} {d.abstract}" for d in library.docs]
    )
    dense = embed_papers(library, cache, log)
    whitened = whiten(fit_whitening(dense), dense)
    sanity_matrix = scipy.sparse.csr_matrix(sanity, dtype=np.float32)
    return Spaces(library, tfidf, sanity_matrix, dense, whitened)


# ------------------------------------------------------------------ tune, report

SVM = "arxiv-sanity TF-IDF + per-user LinearSVC"
DENSE = "MiniLM centroid (dense only)"
DENSE_LR = "MiniLM + per-user logistic regression (sklearn, dense only)"
TFIDF_BEFORE = "ours TF-IDF, before issue 16"
TFIDF = "ours TF-IDF (library defaults)"
HYBRID_BEFORE = "ours hybrid, before issue 16 (dense 0.25, LR from 5 likes, blend 0.5)"
HYBRID_RAW = (
    "ours hybrid, before whitening (raw MiniLM, dense 1 : 1, background 0.4 / 0.5, blend 0.5)"
)
HYBRID_SECOND = "ours hybrid, second pass (whitened, no density penalty)"
HYBRID = "ours hybrid (library defaults)"
DENSE_OURS = "ours dense only (whitened MiniLM, per-user model)"

# The hybrid before issue 16: what HybridWeights() and LinearOptions() were.
BEFORE_WEIGHTS = HybridWeights(
    tfidf=1.0, dense=0.25, tfidf_background=0.0, dense_background=0.0, dense_density=0.0
)
BEFORE_LINEAR = LinearOptions(min_liked=5, blend=0.5)
# The hybrid at the start of the whitening work (issue 16's first defaults).
RAW_WEIGHTS = HybridWeights(
    tfidf=1.0, dense=1.0, tfidf_background=0.4, dense_background=0.5, dense_density=0.0
)
RAW_LINEAR = LinearOptions(blend=0.5)
# The second pass's defaults (whitened MiniLM, before the density penalty).
SECOND_WEIGHTS = HybridWeights(dense_density=0.0)


def _hybrid(weights: HybridWeights, linear: LinearOptions, *, whitened: bool = True) -> Method:
    return partial(ours_hybrid, weights=weights, linear=linear, whitened=whitened)


def ours_dense(spaces: Spaces, users: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The newsletter's dense half alone: whitened MiniLM, Rocchio + ``personalise``."""
    liked = _liked(spaces, users)
    profiles = _dense_profiles(spaces.whitened, liked, LinearOptions())
    return _top(profiles @ spaces.whitened.T, liked)


# The density penalty's weight, as a share of the dense weight (the third pass; the other
# weights are the library defaults, LinearOptions(), whitened MiniLM).
TUNE_GRID = (0.0, 0.25, 0.5, 0.75)
# The per-user sklearn baselines cost ~1 s a user: they run on this many report users
# (a fixed sample), and ours is measured on the same ones beside them.
BASELINE_USERS = 400


def tuning_grid() -> dict[str, HybridWeights]:
    """The hybrid's weights tried on the tuning users."""
    defaults = HybridWeights()
    return {
        f"density penalty {share:g} x the dense weight": replace(
            defaults, dense_density=share * defaults.dense
        )
        for share in TUNE_GRID
    }


def _row(name: str, recall: dict[int, float], seconds: float) -> str:
    cells = " | ".join(f"{recall[m]:.3f}" for m in CUTS)
    return f"| {name} | {cells} | {seconds:.0f} s |"


def run(
    *,
    data_dir: Path = DATA_DIR,
    cache: Path = CACHE,
    jobs: int = 2,
    quick: bool = False,
    sklearn_lr: bool = True,
) -> str:
    """Tune the hybrid on 30% of the users, measure every method on the other 70%;
    return the Markdown report. ``sklearn_lr`` False leaves out the slowest baseline
    (MiniLM + sklearn's per-user logistic regression, ~2 s a user under load)."""
    started = time.perf_counter()
    library = load_library(data_dir)
    tune, report = split_users(library.n_users)
    if quick:
        tune, report = tune[:100], report[:200]
    spaces = build_spaces(library, cache=cache, log=_log)
    prepared = time.perf_counter() - started
    counted = [int(sum(len(library.test[u]) > 0 for u in users)) for users in (tune, report)]

    tuning_lines = []
    best: tuple[float, str] | None = None
    grid = {
        f"whitened, {label}": _hybrid(weights, LinearOptions())
        for label, weights in tuning_grid().items()
    }
    for label, method in grid.items():
        recall, seconds = measure(spaces, method, tune)
        _log(f"tune {label}: {recall}")
        tuning_lines.append(_row(label, recall, seconds))
        if best is None or recall[DEPTH] > best[0]:
            best = (recall[DEPTH], label)

    sample = np.sort(
        np.random.default_rng(SPLIT_SEED).permutation(report)[: 50 if quick else BASELINE_USERS]
    )
    methods: dict[str, Method] = {
        DENSE: dense_centroid,
        TFIDF: ours_tfidf,
        HYBRID_BEFORE: _hybrid(BEFORE_WEIGHTS, BEFORE_LINEAR, whitened=False),
        HYBRID_RAW: _hybrid(RAW_WEIGHTS, RAW_LINEAR, whitened=False),
        HYBRID_SECOND: _hybrid(SECOND_WEIGHTS, LinearOptions()),
        DENSE_OURS: ours_dense,
        HYBRID: ours_hybrid,
    }
    rows = []
    for name, method in methods.items():
        recall, seconds = measure(spaces, method, report)
        _log(f"{name}: {recall} in {seconds:.0f} s")
        rows.append(_row(name, recall, seconds))
    sample_rows = []
    sample_methods: list[tuple[str, Method, int]] = [
        (SVM, sanity_svm, jobs),
        (DENSE_LR, dense_logistic, jobs),
        (TFIDF, ours_tfidf, 1),
        (DENSE_OURS, ours_dense, 1),
        (HYBRID_SECOND, _hybrid(SECOND_WEIGHTS, LinearOptions()), 1),
        (HYBRID, ours_hybrid, 1),
    ]
    if not sklearn_lr:
        sample_methods = [m for m in sample_methods if m[0] != DENSE_LR]
    for name, method, method_jobs in sample_methods:
        recall, seconds = measure(spaces, method, sample, jobs=method_jobs)
        _log(f"{name} (sample): {recall} in {seconds:.0f} s")
        sample_rows.append(_row(name, recall, seconds))
    header = "| method | R@50 | R@100 | R@300 | time |\n|---|---|---|---|---|"
    return "\n".join(
        [
            f"# CiteULike-a: {library.n_users} users, {len(library.ids)} papers",
            "",
            f"Users split by seed {SPLIT_SEED}: tuning {len(tune)} ({counted[0]} with held-out "
            f"papers), report {len(report)} ({counted[1]} with held-out papers; users whose "
            "whole library is their 10 training papers are left out of the means).",
            "",
            "## Report users",
            "",
            header,
            *rows,
            "",
            f"## The per-user sklearn baselines, on {len(sample)} of the report users "
            "(a fixed sample; ours beside them on the same users)",
            "",
            header,
            *sample_rows,
            "",
            f"## Tuning users (the hybrid's settings; best R@300: {best[1] if best else '-'})",
            "",
            header,
            *tuning_lines,
            "",
            f"Time: {time.perf_counter() - started:.0f} s in all, {prepared:.0f} s of it "
            "fitting TF-IDF and loading (or computing) the MiniLM vectors.",
        ]
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
