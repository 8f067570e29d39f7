"""``newsletter recommend``: the batch JSONL contract, run as a real subprocess on real papers."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs newsletter recommend as subprocesses, loading the model

LISTING = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "2026-05-27.jsonl"
)
TOP = 10
NEAR_DUPLICATE_ID = "2605.99001"
UNKNOWN_ID = "2605.00000"


def _env() -> dict[str, str]:
    # No NEWSLETTER_* variables at all: in particular no secret key and no database.
    return {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}


def recommend(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``newsletter recommend ARGS`` in ``cwd`` and return its raw output."""
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "recommend", *args],
        capture_output=True,
        env={**_env(), **(env or {})},
        cwd=cwd,
        timeout=600,  # a hang guard, not a timing assertion (loaded CI machines)
        check=False,
    )


def write_jsonl(path: Path, rows: list[Any]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def _listing() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LISTING.read_text(encoding="utf-8").splitlines()]


def _about_languages(record: dict[str, Any]) -> bool:
    summary = record["summary"].lower()
    return bool(
        record["categories"][0] == "cs.CL" and ("multilingual" in summary or "languages" in summary)
    )


@dataclass(frozen=True)
class Run:
    """One successful run on the shared inputs, and what a test needs to check it."""

    stdout: bytes
    stderr: str
    returncode: int
    output: dict[str, list[dict[str, Any]]]
    order: list[str]
    paper_ids: set[str]
    corpus_only_ids: set[str]
    categories: dict[str, list[str]]
    profiles: dict[str, dict[str, Any]]
    cwd: Path
    args: tuple[str, ...]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, bytes]:
    """Run the command twice on real papers: the first run parsed, the second run's stdout."""
    tmp = tmp_path_factory.mktemp("recommend")
    raw = _listing()
    first_seen: dict[str, dict[str, Any]] = {}
    for record in raw:
        first_seen.setdefault(record["id"], record)
    distinct = list(first_seen.values())
    ranked_ids = {record["id"] for record in distinct[:200]}
    corpus_records = distinct[180:]  # 20 papers are in both files: ranked, once
    corpus_only = [record for record in corpus_records if record["id"] not in ranked_ids]

    # A near-duplicate (sentences reversed, new id) of a corpus-only computer vision paper.
    original = next(r for r in corpus_only if r["categories"][0] == "cs.CV")
    sentences = original["summary"].split(". ")
    near = {**original, "id": NEAR_DUPLICATE_ID, "summary": ". ".join(reversed(sentences))}
    # Every listing line of the ranked papers, repeats included: one paper per id.
    papers = [*(record for record in raw if record["id"] in ranked_ids), near]
    write_jsonl(tmp / "papers.jsonl", papers)
    write_jsonl(tmp / "corpus.jsonl.gz", corpus_records)

    # cs.CL papers about languages (most cs.CL papers of the day are about LLMs in general).
    cl_corpus = [r["id"] for r in corpus_only if _about_languages(r)][:2]
    cl_ranked = next(r["id"] for r in distinct[:200] if _about_languages(r))
    cv_ranked = [r["id"] for r in distinct[:200] if r["categories"][0] == "cs.CV"][:2]
    profiles: list[dict[str, Any]] = [
        {"id": "cv", "topics": ["CS.CV"]},
        {"id": "cl-liked", "liked": [*cl_corpus, cl_ranked + "v2"]},
        {"id": "near", "topics": ["cs.CV"], "keywords": [original["title"]]},
        {
            "id": "near-disliked",
            "topics": ["cs.CV"],
            "keywords": [original["title"]],
            "disliked": [original["id"] + "v3"],
        },
        {"id": "rated", "topics": ["cs.CV"], "liked": cv_ranked[:1], "disliked": cv_ranked[1:]},
        {"id": "unknown", "liked": [UNKNOWN_ID], "keywords": [], "disliked": None},
        {"id": "ünïcode", "keywords": ["retrieval augmented generation", "  "]},
    ]
    write_jsonl(tmp / "profiles.jsonl", profiles)

    args = ["--papers", "papers.jsonl", "--profiles", "profiles.jsonl", "--top", str(TOP)]
    args += ["--corpus", "corpus.jsonl.gz"]
    first, second = recommend(tmp, *args), recommend(tmp, *args)
    lines = [json.loads(line) for line in first.stdout.decode("utf-8").splitlines()]
    run = Run(
        stdout=first.stdout,
        stderr=first.stderr.decode("utf-8"),
        returncode=first.returncode,
        output={line["id"]: line["papers"] for line in lines},
        order=[line["id"] for line in lines],
        paper_ids={record["id"] for record in papers},
        corpus_only_ids={record["id"] for record in corpus_only},
        categories={record["id"]: record["categories"] for record in [*raw, near]},
        profiles={profile["id"]: profile for profile in profiles},
        cwd=tmp,
        args=tuple(args),
    )
    return run, second.stdout


@pytest.fixture(scope="module")
def run(runs: tuple[Run, bytes]) -> Run:
    """The first run of the shared inputs."""
    return runs[0]


def _ids(picks: list[dict[str, Any]]) -> list[str]:
    return [pick["id"] for pick in picks]


def test_one_line_per_profile_in_input_order(run: Run) -> None:
    assert run.returncode == 0, run.stderr
    assert run.order == list(run.profiles)
    assert run.stdout.endswith(b"\n")
    assert all(b": " not in line for line in run.stdout.splitlines())  # compact JSON
    assert "ünïcode".encode() in run.stdout  # ensure_ascii=False


def test_picks_are_at_most_k_best_first_and_only_from_papers(run: Run) -> None:
    for picks in run.output.values():
        assert len(picks) <= TOP
        scores = [pick["score"] for pick in picks]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(s, float) and s > 0 and round(s, 4) == s for s in scores)
        assert len(set(_ids(picks))) == len(picks)
        assert set(_ids(picks)) <= run.paper_ids
        assert not set(_ids(picks)) & run.corpus_only_ids
        for pick in picks:
            assert set(pick) == {"id", "score", "why"}
            why = pick["why"]
            assert isinstance(why, list)
            assert len(why) <= 3
            assert all(isinstance(term, str) and term for term in why)
    # The default run is the hybrid: a pick may share no TF-IDF term with the profile (it
    # matched by meaning alone: the dense part, whose density term lifts isolated papers),
    # and then has no terms to show. Nearly every pick has some.
    picks = [pick for picks in run.output.values() for pick in picks]
    assert sum(len(pick["why"]) >= 1 for pick in picks) >= 0.9 * len(picks)
    assert len(run.output["cv"]) == TOP


def test_rated_papers_are_never_returned(run: Run) -> None:
    for profile_id, profile in run.profiles.items():
        given = [*(profile.get("liked") or []), *(profile.get("disliked") or [])]
        rated = {paper.split("v")[0] for paper in given}
        assert not rated & set(_ids(run.output[profile_id])), profile_id


def test_a_topic_profile_gets_papers_of_its_topic(run: Run) -> None:
    top = _ids(run.output["cv"])
    assert sum("cs.CV" in run.categories[paper] for paper in top) >= 7


def test_a_liked_only_profile_gets_papers_like_the_liked_ones(run: Run) -> None:
    top = _ids(run.output["cl-liked"])
    assert len(top) == TOP
    assert sum("cs.CL" in run.categories[paper] for paper in top) >= 6


def test_a_disliked_papers_near_duplicate_ranks_lower(run: Run) -> None:
    without = _ids(run.output["near"])
    with_dislike = _ids(run.output["near-disliked"])
    assert without[0] == NEAR_DUPLICATE_ID
    position = with_dislike.index(NEAR_DUPLICATE_ID) if NEAR_DUPLICATE_ID in with_dislike else TOP
    assert position > 0


def test_unknown_feedback_is_a_warning_and_nothing_to_rank_is_an_empty_line(run: Run) -> None:
    assert f"profiles.jsonl:6: warning: liked paper '{UNKNOWN_ID}'" in run.stderr
    assert run.stderr.count("warning") == 1
    assert run.output["unknown"] == []


def test_output_is_deterministic(runs: tuple[Run, bytes]) -> None:
    first, second = runs
    assert first.stdout == second


def test_semantic_ranking_is_the_default_and_can_be_turned_off(run: Run) -> None:
    # The semantic extra is installed for the tests: the default run is the hybrid.
    tfidf = recommend(run.cwd, *run.args, "--no-semantic")
    assert tfidf.returncode == 0, tfidf.stderr
    lines = [json.loads(line) for line in tfidf.stdout.decode("utf-8").splitlines()]
    assert [line["id"] for line in lines] == run.order  # the same contract and format
    assert {k for line in lines for pick in line["papers"] for k in pick} == {
        k for picks in run.output.values() for pick in picks for k in pick
    }
    scores = {line["id"]: [p["score"] for p in line["papers"]] for line in lines}
    hybrid = {key: [p["score"] for p in picks] for key, picks in run.output.items()}
    # Ranked by TF-IDF alone, every pick shares terms with its profile: one to three shown.
    assert all(1 <= len(p["why"]) <= 3 for line in lines for p in line["papers"])
    assert scores != hybrid  # the embeddings changed the scores
    # The setting does the same as the flag; the flag wins over the setting.
    off = recommend(run.cwd, *run.args, env={"NEWSLETTER_SEMANTIC": "false"})
    assert off.stdout == tfidf.stdout
    on = recommend(run.cwd, *run.args, "--semantic", env={"NEWSLETTER_SEMANTIC": "false"})
    assert on.stdout == run.stdout


def _write_inputs(tmp_path: Path, profiles: list[Any], *, bad_record: int | None) -> None:
    papers: list[Any] = _listing()[:5]
    if bad_record is not None:
        papers[bad_record - 1] = {k: v for k, v in papers[bad_record - 1].items() if k != "title"}
    write_jsonl(tmp_path / "papers.jsonl", papers)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in profiles]
    (tmp_path / "profiles.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fails(tmp_path: Path) -> str:
    """Run on the files in tmp_path, check it failed as bad input, and return stderr."""
    result = recommend(
        tmp_path, "--papers", "papers.jsonl", "--profiles", "profiles.jsonl", "--top", "3"
    )
    stderr = result.stderr.decode("utf-8")
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr
    return stderr


def test_every_bad_line_is_reported_with_file_and_line_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    good = {"id": "a", "topics": ["cs.CL"]}
    profiles: list[Any] = [
        good,
        '{"id": "b",',
        {"id": "c", "topics": ["cs.NOPE"]},
        {"topics": ["cs.CL"]},
        {"id": ""},
        good,
        {"id": "d", "liked": "2605.26656"},
        ["not", "an", "object"],
    ]
    _write_inputs(tmp_path, profiles, bad_record=4)
    problems = dict(line.split(": ", 1) for line in _fails(tmp_path).splitlines())
    assert problems.keys() == {
        "papers.jsonl:4",
        *(f"profiles.jsonl:{line}" for line in range(2, 9)),
    }
    assert problems["papers.jsonl:4"] == "missing 'title'"
    assert problems["profiles.jsonl:2"].startswith("not JSON")
    assert problems["profiles.jsonl:3"].startswith("unknown topic 'cs.NOPE'")
    assert problems["profiles.jsonl:4"] == "missing profile 'id'"
    assert problems["profiles.jsonl:5"] == "empty profile 'id'"
    assert problems["profiles.jsonl:6"] == "duplicate profile id 'a' (first at profiles.jsonl:1)"
    assert problems["profiles.jsonl:7"] == "'liked' must be a list of strings"
    assert problems["profiles.jsonl:8"] == "expected a JSON object, got list"


def test_one_unknown_topic_is_enough_to_stop_the_run(tmp_path: Path) -> None:
    _write_inputs(tmp_path, [{"id": "a", "topics": ["cs.CL", "cs.nope"]}], bad_record=None)
    assert _fails(tmp_path).startswith("profiles.jsonl:1: unknown topic 'cs.nope'")


def test_a_line_that_is_not_utf8_is_one_problem_and_the_lines_after_it_are_read(
    tmp_path: Path,
) -> None:
    _write_inputs(tmp_path, [{"id": "a", "topics": ["cs.CL"]}], bad_record=None)
    with (tmp_path / "profiles.jsonl").open("ab") as handle:
        handle.write(b'{"id": "b\xff", "topics": ["cs.CL"]}\n')
        handle.write(b'{"id": "c", "topics": ["cs.NOPE"]}\n')  # still read and checked
    problems = dict(line.split(": ", 1) for line in _fails(tmp_path).splitlines())
    assert problems.keys() == {"profiles.jsonl:2", "profiles.jsonl:3"}
    assert problems["profiles.jsonl:2"].startswith("not UTF-8")
    assert problems["profiles.jsonl:3"].startswith("unknown topic 'cs.NOPE'")
