"""The shipped topic catalogue: coverage, validation, lookup, and ranking quality."""

from __future__ import annotations

import json
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from newsletter.errors import ConfigError, UnknownTopic
from newsletter.papers.catalogue import (
    CatalogueTopic,
    default_topics_file,
    load_catalogue,
    resolve_topic,
    topic_groups,
)
from recommender import Document, build_profiles, fit_model, rank

ARXIV_CODES = (
    "cs.AI",
    "cs.AR",
    "cs.CC",
    "cs.CE",
    "cs.CG",
    "cs.CL",
    "cs.CR",
    "cs.CV",
    "cs.CY",
    "cs.DB",
    "cs.DC",
    "cs.DL",
    "cs.DM",
    "cs.DS",
    "cs.ET",
    "cs.FL",
    "cs.GL",
    "cs.GR",
    "cs.GT",
    "cs.HC",
    "cs.IR",
    "cs.IT",
    "cs.LG",
    "cs.LO",
    "cs.MA",
    "cs.MM",
    "cs.MS",
    "cs.NA",
    "cs.NE",
    "cs.NI",
    "cs.OH",
    "cs.OS",
    "cs.PF",
    "cs.PL",
    "cs.RO",
    "cs.SC",
    "cs.SD",
    "cs.SE",
    "cs.SI",
    "cs.SY",
    "stat.ML",
    "eess.AS",
    "eess.IV",
    "eess.SP",
    "eess.SY",
)

DAY_FILE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "2026-05-26.jsonl"
)
# Categories big enough on a day for a topic's top 10 to be judged by majority.
QUALITY_CANDIDATES = ("cs.CV", "cs.CL", "cs.LG", "cs.AI", "cs.RO", "cs.CR")
MIN_PAPERS = 25
TOP_K = 10
MIN_ON_TOPIC = 6
# cs.LG in these listings is a cross-list label on cs.CV/CL/AI papers (14% of
# the day), given to papers that read much like their unlabelled neighbours:
# a logistic regression trained on the rest of the month gets only 4 of its top
# 10 right on this day. The description gets 5; hold it there.
MIN_ON_TOPIC_EXCEPTIONS = {"cs.LG": 5}

VALID_TOPIC = """
[[topics]]
id = "cs.XX"
name = "Example"
description = "An example topic."
keywords = ["example"]
"""


@pytest.fixture(scope="module")
def catalogue() -> dict[str, CatalogueTopic]:
    return load_catalogue()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topics.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped catalogue ---------------------------------------------------


def test_shipped_catalogue_covers_every_category(catalogue: dict[str, CatalogueTopic]) -> None:
    assert len(set(ARXIV_CODES)) == len(ARXIV_CODES) == 45
    missing = sorted(set(ARXIV_CODES) - set(catalogue))
    assert not missing, f"catalogue lacks {missing}"


def test_shipped_ids_are_unique_and_keyed_by_id(catalogue: dict[str, CatalogueTopic]) -> None:
    # load_catalogue rejects exact duplicates; also rule out ids that differ only
    # in case, which resolve_topic would fold together.
    raw = tomllib.loads(default_topics_file().read_text(encoding="utf-8"))
    ids = [table["id"] for table in raw["topics"]]
    assert len(ids) == len(catalogue)
    folded = Counter(topic_id.casefold() for topic_id in ids)
    assert [topic_id for topic_id, count in folded.items() if count > 1] == []
    assert all(key == topic.id for key, topic in catalogue.items())


def test_shipped_topics_are_well_described(catalogue: dict[str, CatalogueTopic]) -> None:
    for topic in catalogue.values():
        words = len(topic.description.split())
        assert words >= 20, f"{topic.id}: description has only {words} words"
        assert topic.keywords, f"{topic.id}: no keywords"
        assert topic.name, topic.id
        assert topic.name in topic.interest_text
        assert all(keyword in topic.interest_text for keyword in topic.keywords)


# --- validation --------------------------------------------------------------


def test_a_valid_file_loads(tmp_path: Path) -> None:
    loaded = load_catalogue(_write(tmp_path, VALID_TOPIC))
    assert list(loaded) == ["cs.XX"]
    assert loaded["cs.XX"].keywords == ("example",)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param(
            '[[topics]]\nid = "cs.XX"\nname = "Example"\nkeywords = ["x"]\n',
            "'description' must be a non-empty string",
            id="missing-description",
        ),
        pytest.param(
            '[[topics]]\nid = "cs.XX"\nname = "Example"\ndescription = "  "\n',
            "'description' must be a non-empty string",
            id="blank-description",
        ),
        pytest.param(
            VALID_TOPIC + VALID_TOPIC,
            "duplicate topic id 'cs.XX'",
            id="duplicate-id",
        ),
        pytest.param(
            VALID_TOPIC.replace('["example"]', '"example"'),
            "'keywords' must be a list of strings",
            id="keywords-not-a-list",
        ),
        pytest.param(
            VALID_TOPIC.replace('["example"]', '["example", 3]'),
            "'keywords' must be a list of strings",
            id="keyword-not-a-string",
        ),
        pytest.param(
            '[[topics]]\nname = "Example"\ndescription = "An example."\n',
            "'id' must be a non-empty string",
            id="missing-id",
        ),
        pytest.param(
            VALID_TOPIC + "field = 3\n",
            "'field' must be a string",
            id="field-not-a-string",
        ),
        pytest.param("[[topics]\nid = cs.XX\n", "cannot read topic catalogue", id="not-toml"),
        pytest.param("# nothing here\n", "defines no topics", id="no-topics"),
        pytest.param("topics = []\n", "defines no topics", id="empty-topics"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_catalogue(path)
    assert problem in str(error.value)
    assert str(path) in str(error.value)


def test_the_failing_topic_is_named(tmp_path: Path) -> None:
    second = VALID_TOPIC.replace("cs.XX", "cs.YY").replace('["example"]', "{}")
    with pytest.raises(ConfigError) as error:
        load_catalogue(_write(tmp_path, VALID_TOPIC + second))
    assert "topic #2 (cs.YY)" in str(error.value)


def test_topics_are_grouped_by_field(tmp_path: Path) -> None:
    """The pickers' groups: the ``field`` given, else the arXiv archive, "Other topics" last."""
    text = (
        VALID_TOPIC.replace("cs.XX", "llm-eval")
        + VALID_TOPIC.replace("cs.XX", "cs.ZZ").replace('name = "Example"', 'name = "Zeta"')
        + VALID_TOPIC.replace("cs.XX", "cs.AA")
        + 'field = "Machines"\n'
        + VALID_TOPIC.replace("cs.XX", "cs.BB").replace('name = "Example"', 'name = "Alpha"')
    )
    groups = topic_groups(load_catalogue(_write(tmp_path, text)))
    assert [(name, [t.id for t in topics]) for name, topics in groups] == [
        ("Computer science", ["cs.BB", "cs.ZZ"]),
        ("Machines", ["cs.AA"]),
        ("Other topics", ["llm-eval"]),
    ]


def test_every_shipped_topic_has_a_field(catalogue: dict[str, CatalogueTopic]) -> None:
    assert all(topic.field for topic in catalogue.values())
    assert 4 <= len(topic_groups(catalogue)) <= 8


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read topic catalogue"):
        load_catalogue(tmp_path / "absent.toml")


# --- lookup ------------------------------------------------------------------


def test_resolve_topic_ignores_case(catalogue: dict[str, CatalogueTopic]) -> None:
    assert resolve_topic(catalogue, "cs.CL") is catalogue["cs.CL"]
    assert resolve_topic(catalogue, "CS.cl") is catalogue["cs.CL"]
    assert resolve_topic(catalogue, "STAT.ml") is catalogue["stat.ML"]
    assert resolve_topic(catalogue, "eess.as") is catalogue["eess.AS"]


def test_resolve_topic_lists_the_known_topics(catalogue: dict[str, CatalogueTopic]) -> None:
    with pytest.raises(UnknownTopic) as error:
        resolve_topic(catalogue, "cs.NOPE")
    message = str(error.value)
    assert "unknown topic 'cs.NOPE'" in message
    known = message.split("known topics: ", 1)[1].split(", ")
    assert known == sorted(catalogue)


# --- ranking quality on a real day -------------------------------------------


def _load_day(path: Path) -> list[dict[str, Any]]:
    papers: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                paper = json.loads(line)
                papers[str(paper["id"])] = paper
    return list(papers.values())


def test_topics_rank_their_own_papers_first(catalogue: dict[str, CatalogueTopic]) -> None:
    papers = _load_day(DAY_FILE)
    categories = [set(paper["categories"]) for paper in papers]
    counts = Counter(code for cats in categories for code in cats)
    judged = [code for code in QUALITY_CANDIDATES if counts[code] >= MIN_PAPERS]
    # Guard against the check silently shrinking: these four are big that day.
    assert set(judged) >= {"cs.AI", "cs.CV", "cs.CL", "cs.LG"}, counts

    docs = [Document(title=str(p["title"]), abstract=str(p["summary"])) for p in papers]
    model = fit_model(docs)
    topics = [catalogue[code] for code in judged]
    profiles = build_profiles(
        model,
        texts=[topic.interest_text for topic in topics],
        rows=list(range(len(topics))),
        cols=list(range(len(topics))),
        weights=[1.0] * len(topics),
        n_profiles=len(topics),
    )
    result = rank(profiles, model.transform_documents(docs), k=TOP_K)

    hits = {
        topic.id: sum(topic.id in categories[index] for index, _ in result.picks(row))
        for row, topic in enumerate(topics)
    }
    assert all(len(result.picks(row)) == TOP_K for row in range(len(topics)))
    short = {
        code: count
        for code, count in hits.items()
        if count < MIN_ON_TOPIC_EXCEPTIONS.get(code, MIN_ON_TOPIC)
    }
    assert not short, f"too few on-topic papers in the top {TOP_K}: {short} (all: {hits})"
