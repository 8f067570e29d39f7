"""The offline evaluation (benchmarks/eval_recommender.py): metrics, data handling, a small run."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_recommender as ev  # noqa: E402

CATEGORIES = ("cs.CV", "cs.CL", "cs.LG")
TRAIN = (date(2026, 5, 4), date(2026, 5, 7))
EVAL_DAYS = (date(2026, 5, 8), date(2026, 5, 11))


def test_precision_counts_relevant_slots_over_k() -> None:
    hits = np.array([[True, False, True, False, False, False, False, False, False, False, True]])
    assert ev.precision_at_k(hits, 10) == pytest.approx([0.2])
    assert ev.precision_at_k(hits, 3) == pytest.approx([2 / 3])
    # A list shorter than k: the empty slots are misses.
    assert ev.precision_at_k(np.array([[True, True]]), 10) == pytest.approx([0.2])


def test_ndcg_against_the_ideal_ordering() -> None:
    # Relevant at ranks 2 and 3 of two relevant papers; ideal puts them at ranks 1 and 2.
    hits = np.array([[False, True, True, False]])
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    ideal = 1 / np.log2(2) + 1 / np.log2(3)
    assert ev.ndcg_at_k(hits, [2], 10) == pytest.approx([dcg / ideal])
    assert ev.ndcg_at_k(np.array([[True, True, False]]), [2], 10) == pytest.approx([1.0])
    assert ev.ndcg_at_k(np.array([[False, False]]), [2], 10) == pytest.approx([0.0])


def test_ndcg_ideal_is_capped_at_k() -> None:
    # Five relevant papers but k=2: two hits in the first two slots are already perfect.
    assert ev.ndcg_at_k(np.array([[True, True, False]]), [5], 2) == pytest.approx([1.0])
    half = 1 / (1 + 1 / np.log2(3))
    assert ev.ndcg_at_k(np.array([[True, False]]), [5], 2) == pytest.approx([half])


def test_recall_counts_relevant_found_in_the_first_k() -> None:
    hits = np.zeros((2, 60), dtype=bool)
    hits[0, [0, 49, 55]] = True  # the hit at rank 56 lies beyond k=50
    hits[1, 3] = True
    assert ev.recall_at_k(hits, [4, 1], 50) == pytest.approx([0.5, 1.0])


def test_hits_treat_padding_as_a_miss() -> None:
    rankings = np.array([[2, 0, -1], [1, -1, -1]])
    relevance = np.array([[True, False, True], [False, False, True]])
    assert ev.hits_at(rankings, relevance).tolist() == [[True, True, False], [False, False, False]]


def test_a_paper_belongs_to_its_first_listing_day(tmp_path: Path) -> None:
    def record(paper_id: str, categories: list[str]) -> str:
        return json.dumps(
            {"id": paper_id, "categories": categories, "title": "T", "summary": "S", "authors": []}
        )

    (tmp_path / "2026-05-01.jsonl").write_text(record("2605.00001", ["cs.CL", "I.2.7", "68T50"]))
    (tmp_path / "2026-05-02.jsonl").write_text(
        record("2605.00001", ["cs.CL"]) + "\n" + record("2605.00002", ["cs.CV"]) + "\n"
    )
    (tmp_path / "2026-05-03.jsonl").write_text(record("2605.00002", ["cs.CV"]))
    days = ev.load_days(tmp_path)
    assert [[p.id for p in days[d]] for d in sorted(days)] == [["2605.00001"], ["2605.00002"], []]
    assert days[date(2026, 5, 1)][0].categories == frozenset({"cs.CL"})
    assert ev.listing_days(days, date(2026, 5, 1), date(2026, 5, 3)) == [
        date(2026, 5, 1),
        date(2026, 5, 2),
    ]


@pytest.fixture(scope="module")
def papers_by_day() -> dict[date, list[ev.Paper]]:
    return ev.load_days()


@pytest.fixture(scope="module")
def subscribers(papers_by_day: dict[date, list[ev.Paper]]) -> list[ev.Subscriber]:
    train = ev.papers_between(papers_by_day, *TRAIN)
    return ev.make_subscribers(train, CATEGORIES, ev.catalogue_topic_texts(), draws=3)


def test_subscribers_of_every_kind_like_papers_of_their_category(
    subscribers: list[ev.Subscriber], papers_by_day: dict[date, list[ev.Paper]]
) -> None:
    # The catalogue has a topic for each of the three categories.
    assert [s.kind for s in subscribers].count(ev.TOPIC) == 3
    assert [s.kind for s in subscribers].count(ev.LIKED) == 9
    assert [s.kind for s in subscribers].count(ev.BOTH) == 9
    for s in subscribers:
        assert len(s.liked) == (0 if s.kind == ev.TOPIC else ev.N_LIKED)
        assert all(s.category in p.categories and TRAIN[0] <= p.day <= TRAIN[1] for p in s.liked)
        assert (s.topic_text is None) == (s.kind == ev.LIKED)
    # Seeded: the same draws every time.
    train = ev.papers_between(papers_by_day, *TRAIN)
    again = ev.make_subscribers(train, CATEGORIES, ev.catalogue_topic_texts(), draws=3)
    assert again == subscribers


@pytest.fixture(scope="module")
def small_run(
    papers_by_day: dict[date, list[ev.Paper]], subscribers: list[ev.Subscriber]
) -> ev.Evaluation:
    methods: dict[str, ev.Method] = {
        "random": ev.random_method(),
        "most recent": ev.most_recent,
        "plain": ev.plain_tfidf,
        "ours": ev.Ours(ev.ModelParams.library_defaults()),
    }
    return ev.evaluate(
        methods,
        EVAL_DAYS,
        papers_by_day=papers_by_day,
        train=ev.papers_between(papers_by_day, *TRAIN),
        subscribers=subscribers,
    )


def test_every_score_is_a_fraction(small_run: ev.Evaluation) -> None:
    assert small_run.scores
    for score in small_run.scores:
        for value in (score.precision, score.ndcg, score.recall):
            assert 0.0 <= value <= 1.0
    pairs = {small_run.mean(method).pairs for method in small_run.seconds}
    assert pairs == {len(small_run.scores) // len(small_run.seconds)}


def test_ours_beats_the_trivial_baselines_clearly(small_run: ev.Evaluation) -> None:
    ours = small_run.mean("ours").ndcg
    assert ours > small_run.mean("random").ndcg + 0.15
    assert ours > small_run.mean("most recent").ndcg + 0.15


def test_ours_beats_the_plain_tfidf_centroid(small_run: ev.Evaluation) -> None:
    assert small_run.mean("ours").ndcg > small_run.mean("plain").ndcg


def test_the_svm_baseline_ranks_every_subscriber(papers_by_day: dict[date, list[ev.Paper]]) -> None:
    # arxiv-sanity's per-user SVM on a small task: one category, one draw, one day.
    train = ev.papers_between(papers_by_day, date(2026, 5, 4), date(2026, 5, 5))
    subscribers = ev.make_subscribers(train, ["cs.CV"], ev.catalogue_topic_texts(), draws=1)
    methods = {"random": ev.random_method(), "svm": ev.arxiv_sanity_svm}
    run = ev.evaluate(
        methods,
        [date(2026, 5, 6)],
        papers_by_day=papers_by_day,
        train=train,
        subscribers=subscribers,
    )
    assert run.mean("svm").pairs == len(subscribers) == 3
    assert all(0.0 <= s.ndcg <= 1.0 for s in run.scores)
    assert run.mean("svm").ndcg > run.mean("random").ndcg


def test_tuning_ranks_the_grid_and_counts_the_library_defaults_once(
    papers_by_day: dict[date, list[ev.Paper]],
) -> None:
    train = ev.papers_between(papers_by_day, date(2026, 5, 4), date(2026, 5, 5))
    subscribers = ev.make_subscribers(train, ["cs.CL"], ev.catalogue_topic_texts(), draws=1)
    # min_df=2 is what the default min_df=None resolves to on a corpus this size.
    grid = ev.Grid(title_weight=(2,), max_df=(0.5,), min_df=(2,), interests=(1.0, 2.0))
    tuning = ev.tune(
        grid, [date(2026, 5, 6)], papers_by_day=papers_by_day, train=train, subscribers=subscribers
    )
    assert len(tuning.results) == 2
    assert tuning.defaults in [(model, feedback) for model, feedback, _ in tuning.results]
    ndcgs = [ndcg for _, _, ndcg in tuning.results]
    assert ndcgs == sorted(ndcgs, reverse=True)
    assert tuning.pairs == len(subscribers) == 3
