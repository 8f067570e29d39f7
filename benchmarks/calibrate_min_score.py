"""Calibrate the hybrid score's minimum (``min_score_semantic``) on the tuning days.

    .venv/bin/python benchmarks/calibrate_min_score.py [--cache DIR]

The planner drops picks scoring at or below a minimum, so a subscriber whose interests
match nothing gets no issue. TF-IDF's minimum (0.02) was chosen for TF-IDF cosines;
the hybrid adds 0.25 x a MiniLM cosine, which is rarely near 0 even for unrelated
texts, so it needs its own minimum.

Data and subscribers are those of ``eval_recommender.py``'s tuning phase only (training
May 1-10, tuning days May 11-15); the later, held-out days are not read. Every
(subscriber, candidate) pair of every tuning day is scored twice, as the newsletter
ranks: TF-IDF alone (library defaults) and the hybrid (default ``HybridWeights``, dense
profiles with the per-subscriber linear models, MiniLM whitened on each day's candidates,
the background penalty and density term of ``recommender.hybrid``). A pair is relevant
iff the candidate carries the subscriber's category (the evaluation's rule); every other pair is
unrelated.

Criterion: the hybrid minimum keeps the same share of relevant pairs as TF-IDF's 0.02
does (the same quantile of the hybrid's relevant-pair scores): the minimum may cost the
hybrid no more relevant papers than it costs TF-IDF, and the hybrid's better separation
goes into dropping more of the rest. The other criterion, dropping the same share of
unrelated pairs, is printed too but not used: "unrelated" by category still includes
close neighbours (cs.LG and cs.AI papers share most of their words), TF-IDF at 0.02 drops
only about a third of them, and the minimum it gives lets every off-topic interest
below through (it does not fix what the minimum is for). The relevant pairs are clean
labels; the unrelated ones are not.

Last, some interests that match nothing in the (computer-science heavy) listings are
embedded, and the best hybrid score each reaches over the tuning days' candidates is
printed (their TF-IDF part is about 0: their words barely occur), to check that the
chosen minimum gives such a subscriber no issue, or a near-empty one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# The evaluation's loaders, subscribers and scorers (it puts the repository on the path).
from eval_recommender import (  # noqa: E402
    EMBEDDING_CACHE,
    FULL,
    DayTask,
    Embeddings,
    FitCache,
    ModelParams,
    _dense_profiles,
    _like_rows,
    embed_corpus,
    prepare,
    relevance_matrix,
)

from recommender import apply_feedback, semantic  # noqa: E402
from recommender.hybrid import HybridWeights, background_penalty  # noqa: E402
from recommender.linear import LinearOptions  # noqa: E402
from recommender.whitening import fit_whitening, whiten  # noqa: E402

TFIDF_MIN_SCORE = 0.02  # newsletter.settings.Settings.min_score's default
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
# Interests that match none of the (computer-science heavy) listings.
OFF_TOPIC = (
    "sourdough bread baking hydration",
    "medieval pottery glazes",
    "knitting patterns for wool sweaters",
    "football transfer news",
    "wine tasting notes burgundy",
    "gardening tomatoes compost",
    "classical piano sonatas",
    "tax law for small businesses",
    "birdwatching migration warblers",
    "fashion trends handbags",
)


def day_scores(
    task: DayTask, embeddings: Embeddings, cache: FitCache, weights: HybridWeights
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(TF-IDF, hybrid) scores of every (subscriber, candidate) pair of one day, the hybrid
    as planning scores it: MiniLM whitened on the day's candidates, background and
    density penalties (``rank_hybrid``'s score, before any minimum)."""
    fit = cache.get(task, ModelParams.library_defaults())
    rows, cols, ages = _like_rows(task)
    profiles = apply_feedback(
        fit.interests,
        fit.papers,
        rows=np.asarray(rows, dtype=np.int64),
        cols=np.asarray(cols, dtype=np.int64),
        values=np.ones(len(rows), dtype=np.int64),
        ages_days=np.asarray(ages, dtype=np.float64),
    )
    candidates = fit.papers[len(task.train) :]
    tfidf = np.asarray((profiles @ candidates.T).toarray(), dtype=np.float32)
    whitening = fit_whitening(embeddings.of(task.candidates))
    vectors = whiten(whitening, embeddings.of(task.candidates))
    dense = _dense_profiles(task, embeddings, LinearOptions(), whitening) @ vectors.T
    hybrid = weights.tfidf * tfidf + weights.dense * dense.astype(np.float32)
    penalty = background_penalty(candidates, vectors, weights)
    if penalty is not None:
        hybrid += penalty
    return tfidf, hybrid


def share_above(scores: npt.NDArray[np.float32], threshold: float) -> float:
    """The share of scores above ``threshold`` (the pairs a minimum keeps)."""
    return float(np.mean(scores > threshold))


def quantile_row(name: str, scores: npt.NDArray[np.float32]) -> str:
    values = np.quantile(scores, QUANTILES)
    return f"| {name} | {len(scores):,} | " + " | ".join(f"{v:.4f}" for v in values) + " |"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=EMBEDDING_CACHE)
    args = parser.parse_args(argv)
    if not semantic.available():
        raise SystemExit("needs the semantic extra (pip install '.[semantic]')")

    setup = prepare(FULL)
    weights = HybridWeights()
    topic_texts = [s.topic_text for s in setup.tune_subscribers if s.topic_text is not None]
    papers = [p for day in setup.tune_days for p in setup.papers_by_day[day]]
    embeddings = embed_corpus([*setup.tune_train, *papers], topic_texts, args.cache)

    cache = FitCache()
    parts: dict[str, list[npt.NDArray[np.float32]]] = {
        "tfidf relevant": [],
        "tfidf unrelated": [],
        "hybrid relevant": [],
        "hybrid unrelated": [],
    }
    tasks = {}
    for day in setup.tune_days:
        task = DayTask(day, setup.tune_train, setup.papers_by_day[day], setup.tune_subscribers)
        tasks[day] = task
        relevant = relevance_matrix(task.subscribers, task.candidates)
        tfidf, hybrid = day_scores(task, embeddings, cache, weights)
        parts["tfidf relevant"].append(tfidf[relevant])
        parts["tfidf unrelated"].append(tfidf[~relevant])
        parts["hybrid relevant"].append(hybrid[relevant])
        parts["hybrid unrelated"].append(hybrid[~relevant])
    scores = {name: np.concatenate(chunks) for name, chunks in parts.items()}

    kept = share_above(scores["tfidf relevant"], TFIDF_MIN_SCORE)
    exact = float(np.quantile(scores["hybrid relevant"], 1.0 - kept))
    dropped = 1.0 - share_above(scores["tfidf unrelated"], TFIDF_MIN_SCORE)
    not_used = float(np.quantile(scores["hybrid unrelated"], dropped))
    # What a setting says: two decimals.
    threshold = round(exact, 2)

    print(
        f"Tuning days {setup.tune_days[0]} to {setup.tune_days[-1]} ({len(setup.tune_days)} "
        f"listing days), training {len(setup.tune_train)} papers, "
        f"{len(setup.tune_subscribers)} subscribers; hybrid tfidf={weights.tfidf:g}, "
        f"dense={weights.dense:g}."
    )
    print()
    print("| scores | pairs | " + " | ".join(f"q{q:g}" for q in QUANTILES) + " |")
    print("|---" * (len(QUANTILES) + 2) + "|")
    for name, values in scores.items():
        print(quantile_row(name, values))
    print()
    print(
        f"Criterion: keep the same share of relevant pairs as TF-IDF at {TFIDF_MIN_SCORE} "
        f"({kept:.1%}): hybrid minimum {exact:.4f}, rounded to {threshold:.2f} "
        "(min_score_semantic)."
    )
    print(
        f"Not used: dropping the same share of unrelated pairs ({dropped:.1%}) would give "
        f"{not_used:.4f}."
    )
    print()
    print("| ranking, minimum | unrelated pairs dropped | relevant pairs kept |")
    print("|---|---|---|")
    for label, kind, minimum in (
        (f"TF-IDF, {TFIDF_MIN_SCORE}", "tfidf", TFIDF_MIN_SCORE),
        (f"hybrid, {TFIDF_MIN_SCORE} (before)", "hybrid", TFIDF_MIN_SCORE),
        (f"hybrid, {not_used:.3f} (same unrelated dropped)", "hybrid", not_used),
        (f"hybrid, {threshold:.2f} (chosen)", "hybrid", threshold),
    ):
        unrelated = 1.0 - share_above(scores[f"{kind} unrelated"], minimum)
        kept = share_above(scores[f"{kind} relevant"], minimum)
        print(f"| {label} | {unrelated:.1%} | {kept:.1%} |")

    # Off-topic interests: the best score each reaches (dense part and penalties, whitened
    # on each day's candidates as planning does; TF-IDF's part is ~0).
    encoder = semantic.load_encoder()
    interests = encoder.encode_interests(list(OFF_TOPIC))
    off_topic = []
    for day in setup.tune_days:
        day_papers = embeddings.of(setup.papers_by_day[day])
        whitening = fit_whitening(day_papers)
        vectors = whiten(whitening, day_papers)
        score = weights.dense * (whiten(whitening, interests) @ vectors.T)
        fit = cache.get(tasks[day], ModelParams.library_defaults())
        penalty = background_penalty(fit.papers[len(setup.tune_train) :], vectors, weights)
        off_topic.append(score if penalty is None else score + penalty)
    dense = np.hstack(off_topic)
    best = dense.max(axis=1)
    passing = (dense > threshold).sum(axis=1)
    print()
    print(
        f"Off-topic interests against the {len(papers)} candidates of the tuning days: "
        f"best hybrid score (dense part), candidates above {threshold:.2f}"
    )
    print()
    print("| interest | best score | above minimum |")
    print("|---|---|---|")
    for text, score, count in zip(OFF_TOPIC, best, passing, strict=True):
        print(f"| {text} | {score:.3f} | {count} |")


if __name__ == "__main__":
    main()
