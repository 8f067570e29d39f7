"""The issue online and rating its papers there (GET never records, POST does, undo)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Delivery, DeliveryItem, Feedback, Paper, Subscriber, utcnow
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


def rate(view: str, rank: int | str, choice: str) -> str:
    return f"{view}/rate/{rank}/{choice}"


def page_of(location: str, issue: Issue) -> str:
    """The issue page a redirect points at (its token is made anew, so it is read back)."""
    match = re.fullmatch(r"/view/([^?#/]+)(\?.*)", location)
    assert match, location
    data = TOKENS.read(Purpose.VIEW, match.group(1))
    assert (data.subscriber_id, data.subject) == (issue.subscriber_id, issue.delivery_id)
    return match.group(2)


def test_opening_the_issue_records_nothing_and_readies_the_choice(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    view = issue.view()
    page = client.get(f"{view}?rate=2&choice=more")
    assert page.status_code == 200
    assert 'id="paper-2" class="issue-paper is-ready"' in page.text
    assert "More papers like this?" in page.text
    assert f'action="{rate(view, 2, "more")}"' in page.text
    assert "Yes, more like this" in page.text
    # Every paper of the issue can be rated from the page.
    for rank in (1, 3):
        assert f'action="{rate(view, rank, "more")}"' in page.text
        assert f'action="{rate(view, rank, "less")}"' in page.text
    assert ratings(sessions) == []


def test_an_older_mails_link_redirects_to_the_page_and_records_nothing(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    response = client.get(issue.feedback(2, "less"), follow_redirects=False)
    assert response.status_code == 303
    assert page_of(response.headers["location"], issue) == "?rate=2&choice=less#paper-2"
    page = client.get(issue.feedback(2, "less"))
    assert "Fewer papers like this?" in page.text
    assert ratings(sessions) == []


def test_link_scanners_never_record(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    """A mail scanner follows every link of the mail, with GET and HEAD."""
    view = issue.view()
    for url in (
        issue.feedback(1, "more"),
        f"{view}?rate=1&choice=more",
        rate(view, 1, "more"),
        rate(view, 1, "undo"),
    ):
        client.get(url)
        client.head(url)
    assert ratings(sessions) == []


def test_post_records_the_last_choice_wins_and_undo_removes_it(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    view = issue.view()
    token = csrf_from(client.get(view))
    first = client.post(rate(view, 2, "more"), data={"csrf_token": token}, follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == f"{view}?rated=2#paper-2"
    title = XSS_TITLE + " 2"
    assert ratings(sessions) == [(title, 1)]
    page = client.get(first.headers["location"])
    assert "Noted: more like this" in page.text
    assert "You asked for <strong>more</strong> like this." in page.text
    assert f'action="{rate(view, 2, "undo")}"' in page.text
    # Again is harmless; a mail link for the choice already made offers no second button.
    client.post(rate(view, 2, "more"), data={"csrf_token": token})
    assert ratings(sessions) == [(title, 1)]
    ready = client.get(f"{view}?rate=2&choice=more").text
    assert "Yes, more like this" not in ready
    with sessions() as session:
        liked_at = session.scalars(select(Feedback.created_at)).one()
    client.post(rate(view, 2, "less"), data={"csrf_token": token})
    assert ratings(sessions) == [(title, -1)]
    with sessions() as session:
        assert session.scalars(select(Feedback.created_at)).one() >= liked_at
    client.post(rate(view, 1, "less"), data={"csrf_token": token})
    assert sorted(ratings(sessions)) == sorted([(title, -1), (XSS_TITLE + " 1", -1)])
    undone = client.post(rate(view, 2, "undo"), data={"csrf_token": token})
    assert "Undone: this paper no longer counts either way." in undone.text
    assert ratings(sessions) == [(XSS_TITLE + " 1", -1)]


def test_the_older_feedback_pages_post_still_records(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    view = issue.view()
    token = csrf_from(client.get(view))
    response = client.post(
        issue.feedback(3, "more"), data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert page_of(response.headers["location"], issue) == "?rated=3#paper-3"
    assert ratings(sessions) == [(XSS_TITLE + " 3", 1)]


def test_titles_are_escaped(client: TestClient, issue: Issue) -> None:
    view = issue.view()
    online = client.get(f"{view}?rate=1&choice=more").text
    assert "<script>alert" not in online
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in online


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
    url, view = issue.feedback(rank, choice), issue.view()
    assert client.get(url).status_code == 404
    csrf = csrf_from(client.get("/"))
    response = client.post(url, data={"csrf_token": csrf})
    assert response.status_code == 404
    assert "This issue has no such paper" in response.text
    if choice != "undo":
        assert client.post(rate(view, rank, choice), data={"csrf_token": csrf}).status_code == 404
    # Asked for on the page, such a paper readies nothing.
    assert "is-ready" not in client.get(f"{view}?rate={quote(str(rank))}&choice={choice}").text
    assert ratings(sessions) == []


def test_another_subscribers_issue_is_not_found(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    url = issue.feedback(1, "more", delivery_id=issue.other_delivery_id)
    response = client.get(url)
    assert response.status_code == 404
    assert "Someone else" not in response.text
    theirs = issue.view(delivery_id=issue.other_delivery_id)
    assert client.get(theirs).status_code == 404
    csrf = csrf_from(client.get(issue.view()))
    assert client.post(rate(theirs, 1, "more"), data={"csrf_token": csrf}).status_code == 404
    assert ratings(sessions) == []


def test_feedback_needs_csrf_and_the_right_token(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    view = issue.view()
    url = issue.feedback(1, "more")
    client.get(issue.view())
    assert client.post(url, data={}).status_code == 403
    assert client.post(rate(view, 1, "more"), data={}).status_code == 403
    feedback_token = url.split("/")[2]
    csrf = csrf_from(client.get(issue.view()))
    assert (
        client.post(f"/view/{feedback_token}/rate/1/more", data={"csrf_token": csrf}).status_code
        == 400
    )
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
    assert 'href="https://arxiv.org/pdf/' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert client.get(issue.view(purpose=Purpose.MANAGE)).status_code == 400
    manage_style = TOKENS.make(Purpose.VIEW, TokenData(issue.subscriber_id, 1))
    assert client.get(f"/view/{manage_style}").status_code == 400


def test_a_rated_paper_is_not_its_own_reason_nor_a_later_like_an_old_issues(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    """Rating paper 2 "more like this" on the page explains the others by it, never
    itself; and an issue read online later keeps the reasons it was sent with."""
    with sessions.begin() as session:
        for item in session.scalars(
            select(DeliveryItem).where(DeliveryItem.delivery_id == issue.delivery_id)
        ):
            item.terms = ["evaluation"]  # a word of every paper's abstract
    view = issue.view()
    token = csrf_from(client.get(view))
    client.post(rate(view, 2, "more"), data={"csrf_token": token})

    def cards() -> dict[int, str]:
        page = client.get(view).text
        parts = re.split(r'<li id="paper-(\d+)"', page)[1:]
        return {
            int(rank): text.split("</li>")[0]
            for rank, text in zip(parts[::2], parts[1::2], strict=True)
        }

    reason = "which you marked more like this"
    now = cards()
    assert reason in now[1]
    assert "is all you need 2" in now[1]
    assert reason not in now[2]
    with sessions.begin() as session:
        session.get_one(Delivery, issue.delivery_id).sent_at = utcnow() - timedelta(days=1)
    assert not any(reason in card for card in cards().values())


def test_a_german_readers_page_labels_the_reasons_in_german(
    client: TestClient, sessions: SessionFactory, issue: Issue
) -> None:
    with sessions.begin() as session:
        session.get_one(Subscriber, issue.subscriber_id).locale = "de"
    page = client.get(issue.view()).text
    assert "Warum:" in page
    assert "passende Begriffe: model" in page
    assert "Why:" not in page
    assert "matched terms:" not in page
