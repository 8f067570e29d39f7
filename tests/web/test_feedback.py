"""Feedback per paper (GET asks, POST records) and the issue online."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Feedback, Paper
from newsletter.tokens import Purpose, TokenData, Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber, csrf_from

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

TOKENS = Tokens(TEST_SECRET)
XSS_TITLE = "Attention <script>alert('pwned')</script> is all you need"


@dataclass(frozen=True)
class Issue:
    subscriber_id: int
    delivery_id: int
    other_delivery_id: int

    def feedback(self, rank: int | str, choice: str, *, delivery_id: int | None = None) -> str:
        token = TOKENS.make(
            Purpose.FEEDBACK, TokenData(self.subscriber_id, 1, delivery_id or self.delivery_id)
        )
        return f"/feedback/{token}/{rank}/{choice}"

    def view(self, *, delivery_id: int | None = None, purpose: Purpose = Purpose.VIEW) -> str:
        token = TOKENS.make(
            purpose, TokenData(self.subscriber_id, 1, delivery_id or self.delivery_id)
        )
        return f"/view/{token}"


@pytest.fixture
def issue(sessions: SessionFactory) -> Issue:
    with sessions.begin() as session:
        reader = add_subscriber(session, "reader@example.org")
        other = add_subscriber(session, "other@example.org")
        delivery = add_delivery(session, reader, title=XSS_TITLE)
        theirs = add_delivery(session, other, title="Someone else's paper")
        return Issue(reader.id, delivery.id, theirs.id)


def ratings(sessions: SessionFactory) -> list[tuple[str, int]]:
    with sessions() as session:
        rows = session.execute(
            select(Paper.title, Feedback.value).join(Paper, Paper.id == Feedback.paper_id)
        )
        return [(title, value) for title, value in rows]


def test_get_asks_and_records_nothing(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    response = client.get(issue.feedback(2, "more"))
    assert response.status_code == 200
    assert "More papers like this?" in response.text
    assert "Yes, more like this" in response.text
    assert ratings(sessions) == []


def test_post_records_and_the_last_choice_wins(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    more, less = issue.feedback(2, "more"), issue.feedback(2, "less")
    token = csrf_from(client.get(more))
    first = client.post(more, data={"csrf_token": token})
    assert first.status_code == 200
    assert "Noted: more like this" in first.text
    assert client.post(more, data={"csrf_token": token}).status_code == 200
    title = XSS_TITLE + " 2"
    assert ratings(sessions) == [(title, 1)]
    assert "confirming again changes nothing" in client.get(more).text
    with sessions() as session:
        liked_at = session.scalars(select(Feedback.created_at)).one()
    assert client.post(less, data={"csrf_token": token}).status_code == 200
    assert ratings(sessions) == [(title, -1)]
    with sessions() as session:
        assert session.scalars(select(Feedback.created_at)).one() >= liked_at
    client.post(issue.feedback(1, "less"), data={"csrf_token": token})
    assert sorted(ratings(sessions)) == sorted([(title, -1), (XSS_TITLE + " 1", -1)])


def test_titles_are_escaped(client: TestClient, issue: Issue) -> None:
    page = client.get(issue.feedback(1, "more")).text
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in page
    online = client.get(issue.view()).text
    assert "<script>alert" not in online
    assert "&lt;script&gt;" in online


@pytest.mark.parametrize(
    ("rank", "choice"),
    [
        (4, "more"),
        (0, "less"),
        ("abc", "more"),
        ("99999999", "more"),
        (1, "maybe"),
        # Digits of other scripts (issue 12, item 7: "²" was a 500, "٣" was read as 3).
        ("²", "more"),
        ("٣", "less"),
        ("１", "more"),
        ("1_0", "more"),
        ("+1", "more"),
    ],
)
def test_no_such_paper_is_a_404_page(
    client: TestClient, sessions: SessionFactory, issue: Issue, rank: int | str, choice: str
) -> None:
    url = issue.feedback(rank, choice)
    assert client.get(url).status_code == 404
    response = client.post(url, data={"csrf_token": csrf_from(client.get("/"))})
    assert response.status_code == 404
    assert "This issue has no such paper" in response.text
    assert ratings(sessions) == []


def test_another_subscribers_issue_is_not_found(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    url = issue.feedback(1, "more", delivery_id=issue.other_delivery_id)
    response = client.get(url)
    assert response.status_code == 404
    assert "Someone else" not in response.text
    assert client.get(issue.view(delivery_id=issue.other_delivery_id)).status_code == 404


def test_feedback_needs_csrf_and_the_right_token(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    url = issue.feedback(1, "more")
    client.get(url)
    assert client.post(url, data={}).status_code == 403
    view_token = TOKENS.make(Purpose.VIEW, TokenData(issue.subscriber_id, 1, issue.delivery_id))
    no_subject = TOKENS.make(Purpose.FEEDBACK, TokenData(issue.subscriber_id, 1))
    for token in (view_token, no_subject, "garbage"):
        assert client.get(f"/feedback/{token}/1/more").status_code == 400
    assert ratings(sessions) == []


def test_the_issue_online(client: TestClient, issue: Issue) -> None:
    response = client.get(issue.view())
    assert response.status_code == 200
    assert "3 new papers for you" in response.text
    assert "https://arxiv.org/abs/" in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert client.get(issue.view(purpose=Purpose.MANAGE)).status_code == 400
    manage_style = TOKENS.make(Purpose.VIEW, TokenData(issue.subscriber_id, 1))
    assert client.get(f"/view/{manage_style}").status_code == 400
