"""The CiteULike-a evaluation (benchmarks/eval_citeulike.py): recall, the user split,
loading; a tiny library, no model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import eval_citeulike as ec  # noqa: E402


def test_recall_counts_held_out_papers_in_the_top_m() -> None:
    rankings = np.array([[5, 3, 9, 1], [2, -1, -1, -1]])
    tests = [np.array([3, 1, 7]), np.array([2])]
    recall = ec.recall_at(rankings, tests, (1, 2, 4))
    assert recall[1].tolist() == pytest.approx([0.0, 1.0])
    assert recall[2].tolist() == pytest.approx([1 / 3, 1.0])
    assert recall[4].tolist() == pytest.approx([2 / 3, 1.0])


def test_a_user_with_nothing_held_out_is_left_out_not_counted_as_zero() -> None:
    recall = ec.recall_at(np.array([[0, 1], [0, 1]]), [np.array([1]), np.array([], int)], (2,))
    assert recall[2][0] == 1.0
    assert np.isnan(recall[2][1])
    assert np.nanmean(recall[2]) == 1.0


def test_the_user_split_is_fixed_disjoint_and_complete() -> None:
    tune, report = ec.split_users(100)
    again = ec.split_users(100)
    assert len(tune) == 30
    assert len(report) == 70
    assert not set(tune.tolist()) & set(report.tolist())
    assert sorted([*tune.tolist(), *report.tolist()]) == list(range(100))
    np.testing.assert_array_equal(tune, again[0])


def test_a_library_loads_as_rows(tmp_path: Path) -> None:
    items = [
        {"id": "2001.00000", "citeulike_index": 0, "title": "Graphs", "summary": ""},
        {"id": "2001.00001", "citeulike_index": 1, "title": "Cells", "summary": "An abstract."},
        {"id": "2001.00002", "citeulike_index": 2, "title": "Genes", "summary": ""},
    ]
    (tmp_path / "items.jsonl").write_text("\n".join(json.dumps(i) for i in items) + "\n")
    user = {"user": 0, "train": ["2001.00002"], "test": ["2001.00000", "2001.00001"]}
    (tmp_path / "users-even.jsonl").write_text(json.dumps(user) + "\n")
    library = ec.load_library(tmp_path)
    assert library.n_users == 1
    assert library.docs[1].abstract == "An abstract."
    assert library.train[0].tolist() == [2]
    assert library.test[0].tolist() == [0, 1]
