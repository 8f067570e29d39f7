"""The admin's topics catalogue page: real follower and paper counts, on both databases."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from newsletter.db import SessionFactory
from newsletter.models import Interest, Paper, SubscriberStatus, utcnow
from newsletter.papers.catalogue import CatalogueTopic, load_catalogue
from newsletter.web.admin import stats
from newsletter.web.admin.topics import arxiv_category
from tests.web.helpers import add_subscriber
from tests.web.test_admin import admin, operator  # noqa: F401 - fixtures

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

ROW = re.compile(
    r'<tr data-topic="([^"]+)">.*?<td class="num followers[^"]*">(\d+)</td>'
    r'\s*<td class="num papers[^"]*">([^<]+)</td>',
    re.S,
)


def rows(html: str) -> list[tuple[str, int, str]]:
    return [(code, int(followers), papers) for code, followers, papers in ROW.findall(html)]


def paper(number: int, categories: list[str], *, days_ago: float) -> Paper:
    seen = utcnow() - timedelta(days=days_ago)
    return Paper(
        external_id=f"2611.{number:05d}",
        title=f"Paper {number}",
        categories=categories,
        url=f"https://arxiv.org/abs/2611.{number:05d}",
        listed_on=date(2026, 11, 1),
        content_listed_on=date(2026, 11, 1),
        first_seen=seen,
        updated_at=seen,
    )


@pytest.fixture
def catalogue_data(sessions: SessionFactory) -> None:
    """cs.LG: 3 active followers (and a pending and a gone one); cs.CL: 2; cs.CV: 1.
    Papers of the last 7 days: cs.CL 3 (one cross-listed to cs.LG), cs.LG 2, cs.CV 0."""
    with sessions.begin() as session:
        add_subscriber(session, "a@example.org", topics=("cs.LG", "cs.CL"))
        add_subscriber(session, "b@example.org", topics=("cs.LG",))
        both = add_subscriber(session, "c@example.org", topics=("cs.LG", "cs.CL", "cs.CV"))
        both.interests.append(Interest(keywords="graph neural networks", weight=1.0))
        add_subscriber(session, "p@example.org", status=SubscriberStatus.PENDING, topics=("cs.LG",))
        add_subscriber(
            session, "u@example.org", status=SubscriberStatus.UNSUBSCRIBED, topics=("cs.CV",)
        )
        session.add_all(
            [
                paper(1, ["cs.CL"], days_ago=1),
                paper(2, ["cs.CL", "cs.LG"], days_ago=2),
                paper(3, ["cs.CL", "cs.AI"], days_ago=6.5),
                paper(4, ["cs.LG", "stat.ML"], days_ago=0.1),
                paper(5, ["cs.CV"], days_ago=8),  # older than a week
                paper(6, ["cs.CL"], days_ago=30),
            ]
        )


def test_every_topic_with_its_followers_and_recent_papers(
    admin: TestClient,
    catalogue_data: None,
) -> None:
    page = admin.get("/admin/topics")
    assert page.status_code == 200
    found = {code: (followers, papers) for code, followers, papers in rows(page.text)}
    catalogue = load_catalogue()
    assert set(found) == set(catalogue)
    assert found["cs.LG"] == (3, "2")
    assert found["cs.CL"] == (2, "3")
    assert found["cs.CV"] == (1, "0")
    assert found["cs.AI"] == (0, "1")
    assert found["stat.ML"] == (0, "1")
    assert "3 followed by at least one active subscriber" in page.text
    assert f"{len(catalogue)} topics in the catalogue" in page.text
    # The catalogue's own words: name and keywords.
    assert "Natural language processing" in page.text
    assert '<span class="pill pill-keyword">language models</span>' in page.text
    assert '<a href="/admin/topics" aria-current="page">Topics</a>' in page.text


def test_topics_sort_by_followers_and_papers(
    admin: TestClient,
    catalogue_data: None,
) -> None:
    by_followers = [code for code, _, _ in rows(admin.get("/admin/topics?sort=followers").text)]
    assert by_followers[:3] == ["cs.LG", "cs.CL", "cs.CV"]
    by_papers = [code for code, _, _ in rows(admin.get("/admin/topics?sort=papers").text)]
    assert by_papers[:2] == ["cs.CL", "cs.LG"]
    by_code = [code for code, _, _ in rows(admin.get("/admin/topics?sort=nonsense").text)]
    assert by_code == sorted(by_code, key=str.casefold)


def test_the_counts_are_one_grouped_query_each(
    sessions: SessionFactory, catalogue_data: None
) -> None:
    statements: list[str] = []
    with sessions() as session:
        engine = session.get_bind()

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            followers = stats.topic_followers(session)
            papers = stats.recent_papers_per_category(
                session, {"cs.CL", "cs.LG", "cs.CV", "cs.AI"}, since=utcnow() - timedelta(days=7)
            )
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2
    assert followers == {"cs.LG": 3, "cs.CL": 2, "cs.CV": 1}
    assert papers == {"cs.CL": 3, "cs.LG": 2, "cs.AI": 1}


def test_strangers_cannot_see_the_topics(client: TestClient) -> None:
    response = client.get("/admin/topics", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/topics"


@pytest.mark.parametrize(
    ("topic_id", "category"),
    [
        ("cs.CL", "cs.CL"),
        ("stat.ML", "stat.ML"),
        ("eess.AS", "eess.AS"),
        ("hep-th", "hep-th"),
        ("llm-eval", None),
        ("robots", None),
    ],
)
def test_which_topic_ids_are_arxiv_categories(topic_id: str, category: str | None) -> None:
    topic = CatalogueTopic(id=topic_id, name="X", description="x", keywords=())
    assert arxiv_category(topic) == category
