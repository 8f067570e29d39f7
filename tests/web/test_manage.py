"""Preferences from a signed link: every change is a CSRF-checked POST."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Feedback,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.tokens import Purpose, TokenData, Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import Mail, add_delivery, add_subscriber, csrf_from, post_form

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

TOKENS = Tokens(TEST_SECRET)
Mails = Callable[[], list[Mail]]


def manage_path(subscriber_id: int, version: int = 1) -> str:
    return "/manage/" + TOKENS.make(Purpose.MANAGE, TokenData(subscriber_id, version))


@pytest.fixture
def reader(sessions: SessionFactory) -> int:
    with sessions.begin() as session:
        subscriber = add_subscriber(session, "reader@example.org", topics=("cs.CL", "cs.IR"))
        subscriber.interests.append(Interest(keywords="dense retrieval", weight=2.0))
        delivery = add_delivery(session, subscriber, title="Ranked paper")
        session.add(
            Feedback(subscriber_id=subscriber.id, paper_id=delivery.items[0].paper_id, value=1)
        )
        add_delivery(
            session,
            subscriber,
            day=delivery.edition.date.replace(day=28),
            status=DeliveryStatus.PENDING,
        )
        return subscriber.id


def preferences(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "topics": ["cs.CV"],
        "keyword": ["diffusion models", "", "video"],
        "weight": ["2", "1", "0.5"],
        "frequency": "weekly",
        "timezone": "America/Chicago",
        "send_hour": "18",
        "max_papers": "5",
        "always_send": "on",
    }
    values.update(overrides)
    return values


def load(sessions: SessionFactory, subscriber_id: int) -> Subscriber:
    with sessions() as session:
        subscriber = session.get_one(Subscriber, subscriber_id)
        _ = subscriber.interests
        return subscriber


def test_the_page_shows_the_current_choices(client: TestClient, reader: int) -> None:
    response = client.get(manage_path(reader))
    assert response.status_code == 200
    page = response.text
    assert "reader@example.org" in page
    assert 'value="cs.CL" checked' in page
    assert 'value="cs.IR" checked' in page
    assert 'value="cs.CV" checked' not in page
    assert 'value="dense retrieval"' in page
    assert "Ranked paper 1" in page
    assert "More like this" in page
    assert "Subscribed" in page


def test_saving_preferences(client: TestClient, sessions: SessionFactory, reader: int) -> None:
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/preferences", preferences())
    assert response.status_code == 303
    assert response.headers["location"] == f"{path}?done=saved"
    assert "Your preferences are saved" in client.get(response.headers["location"]).text
    saved = load(sessions, reader)
    assert [(i.topic_id, i.keywords, i.weight) for i in saved.interests] == [
        ("cs.CV", None, 1.0),
        (None, "diffusion models", 2.0),
        (None, "video", 0.5),
    ]
    assert saved.frequency == Frequency.WEEKLY
    assert (saved.timezone, saved.send_hour, saved.max_papers) == ("America/Chicago", 18, 5)
    assert saved.always_send is True


def test_saving_the_weekday(client: TestClient, sessions: SessionFactory, reader: int) -> None:
    path = manage_path(reader)
    assert '<option value="0" selected>Monday</option>' in client.get(path).text
    response = post_form(client, path, f"{path}/preferences", preferences(weekday="4"))
    assert response.status_code == 303
    assert load(sessions, reader).send_weekday == 4
    assert '<option value="4" selected>Friday</option>' in client.get(path).text
    # A form without the field (an old page) keeps it.
    post_form(client, path, f"{path}/preferences", preferences())
    assert load(sessions, reader).send_weekday == 4
    assert client.get(path + "/export").json()["send_weekday"] == 4


def test_saved_markup_is_shown_as_text(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    attack = "<script>alert(1)</script>"
    post_form(client, path, f"{path}/preferences", preferences(keyword=[attack], weight=["1"]))
    assert [i.keywords for i in load(sessions, reader).interests if i.keywords] == [attack]
    page = client.get(path).text
    assert attack not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"topics": [], "keyword": [""]}, "Pick at least one topic"),
        ({"weight": ["7", "1", "1"]}, "weight"),
        ({"max_papers": "500"}, "Papers per issue"),
        ({"keyword": ["k" * 250]}, "too long"),
        ({"timezone": "Nowhere/Else"}, "time zone"),
        ({"weekday": "8"}, "weekday"),
    ],
)
def test_invalid_preferences_change_nothing(
    client: TestClient,
    sessions: SessionFactory,
    reader: int,
    overrides: dict[str, object],
    message: str,
) -> None:
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/preferences", preferences(**overrides))
    assert response.status_code == 400
    assert message in response.text
    assert [i.topic_id for i in load(sessions, reader).interests if i.topic_id] == [
        "cs.CL",
        "cs.IR",
    ]


def test_every_change_needs_the_csrf_token(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    client.get(path)
    for action in ("preferences", "pause", "unsubscribe", "delete", "address", "feedback/1/undo"):
        response = client.post(f"{path}/{action}", data=preferences(email="x@example.org"))
        assert response.status_code == 403, action
    subscriber = load(sessions, reader)
    assert subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.paused_at is None
    assert subscriber.pending_email is None
    assert [i.topic_id for i in subscriber.interests if i.topic_id] == ["cs.CL", "cs.IR"]


def test_pause_and_resume(client: TestClient, sessions: SessionFactory, reader: int) -> None:
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/pause", {})
    assert response.headers["location"] == f"{path}?done=paused"
    assert load(sessions, reader).paused_at is not None
    with sessions() as session:
        statuses = session.scalars(
            select(Delivery.status).where(Delivery.subscriber_id == reader).order_by(Delivery.id)
        )
        assert list(statuses) == [DeliveryStatus.SENT, DeliveryStatus.SUPPRESSED]
    assert "Paused" in client.get(path).text
    post_form(client, path, f"{path}/resume", {})
    assert load(sessions, reader).paused_at is None


def test_undo_a_rating(client: TestClient, sessions: SessionFactory, reader: int) -> None:
    with sessions() as session:
        paper_id = session.scalars(select(Feedback.paper_id)).one()
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/feedback/{paper_id}/undo", {})
    assert response.status_code == 303
    with sessions() as session:
        assert session.scalar(select(func.count(Feedback.id))) == 0
    assert "No ratings yet" in client.get(path).text


def test_ratings_show_titles_without_latex(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    with sessions.begin() as session:
        paper = session.scalars(select(Paper).join(Feedback, Feedback.paper_id == Paper.id)).one()
        paper.title = r"Scaling $\alpha$-divergences to \textbf{large} models"
    page = client.get(manage_path(reader)).text
    assert "Scaling α-divergences to large models" in page
    assert "textbf" not in page


def test_export_holds_everything_stored(client: TestClient, reader: int) -> None:
    response = client.get(manage_path(reader) + "/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "attachment" in response.headers["content-disposition"]
    data = json.loads(response.text)
    assert data["email"] == "reader@example.org"
    assert {"topic": "cs.CL", "keywords": None, "weight": 1.0} in data["interests"]
    assert {"topic": None, "keywords": "dense retrieval", "weight": 2.0} in data["interests"]
    assert [f["value"] for f in data["feedback"]] == [1]
    assert [i["status"] for i in data["issues"]] == ["sent", "pending"]
    assert [p["rank"] for p in data["issues"][0]["papers"]] == [1, 2, 3]


def test_delete_asks_first_then_forgets_everything(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    page = client.get(f"{path}/delete")
    assert page.status_code == 200
    assert "Delete everything" in page.text
    assert load(sessions, reader).email == "reader@example.org"  # asking deleted nothing
    response = client.post(f"{path}/delete", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 200
    assert "Your data is deleted" in response.text
    with sessions() as session:
        assert session.get(Subscriber, reader) is None
        for model in (Interest, Feedback, Delivery, DeliveryItem):
            assert session.scalar(select(func.count()).select_from(model)) == 0
    assert client.get(path).status_code == 400


def test_unsubscribe_from_the_preferences(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/unsubscribe", {})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert load(sessions, reader).status == SubscriberStatus.UNSUBSCRIBED
    assert "Subscribe again" in client.get(path).text


def test_changing_the_address_needs_the_new_one_confirmed(
    client: TestClient, sessions: SessionFactory, reader: int, mails: Mails
) -> None:
    path = manage_path(reader)
    response = post_form(client, path, f"{path}/address", {"email": "New@Example.org"})
    assert response.headers["location"] == f"{path}?done=address"
    assert load(sessions, reader).email == "reader@example.org"
    [mail] = mails()
    assert mail.to == "new@example.org"
    assert "instead of reader@example.org" in mail.text
    link = mail.link("/address/")
    page = client.get(link)
    assert page.status_code == 200
    assert "Use this address" in page.text
    assert load(sessions, reader).email == "reader@example.org"
    done = client.post(link, data={"csrf_token": csrf_from(page)})
    assert done.status_code == 200
    assert "Address changed" in done.text
    changed = load(sessions, reader)
    assert (changed.email, changed.pending_email, changed.token_version) == (
        "new@example.org",
        None,
        2,
    )
    assert client.get(path).status_code == 400  # links sent to the old address are revoked
    assert client.get(manage_path(reader, 2)).status_code == 200
    assert client.post(link, data={"csrf_token": csrf_from(page)}).status_code == 400


def test_a_taken_address_gets_no_mail_and_the_same_answer(
    client: TestClient, sessions: SessionFactory, reader: int, mails: Mails
) -> None:
    with sessions.begin() as session:
        add_subscriber(session, "taken@example.org")
        session.add(Suppression(email="blocked@example.org", reason="complaint"))
    path = manage_path(reader)
    answers = {
        post_form(client, path, f"{path}/address", {"email": address}).headers["location"]
        for address in ("taken@example.org", "blocked@example.org", "free@example.org")
    }
    assert answers == {f"{path}?done=address"}
    assert [m.to for m in mails()] == ["free@example.org"]
    bad = post_form(client, path, f"{path}/address", {"email": "nonsense"})
    assert bad.status_code == 400
    assert "does not look like an email address" in bad.text


def test_only_the_newest_address_request_counts(
    client: TestClient, sessions: SessionFactory, reader: int, mails: Mails
) -> None:
    path = manage_path(reader)
    post_form(client, path, f"{path}/address", {"email": "first@example.org"})
    post_form(client, path, f"{path}/address", {"email": "second@example.org"})
    first, _second = (m.link("/address/") for m in mails())
    page = client.get(first)
    assert page.status_code == 409
    assert "This link no longer works" in page.text
    token = csrf_from(client.get("/"))
    assert client.post(first, data={"csrf_token": token}).status_code == 409
    assert load(sessions, reader).email == "reader@example.org"
    tampered = first[:-2] + ("xy" if not first.endswith("xy") else "zz")
    assert client.get(tampered).status_code == 400


def test_bad_manage_links(client: TestClient, reader: int) -> None:
    unsubscribe_token = TOKENS.make(Purpose.UNSUBSCRIBE, TokenData(reader, 1))
    for path in (
        f"/manage/{unsubscribe_token}",
        manage_path(reader, 7),
        manage_path(reader + 1),
        "/manage/x.y.z",
    ):
        response = client.get(path)
        assert response.status_code == 400
        assert "reader@example.org" not in response.text
        assert client.get(path + "/export").status_code == 400


def test_choosing_the_language_of_the_issues(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    assert '<option value="en" selected>English</option>' in client.get(path).text
    response = post_form(client, path, f"{path}/preferences", preferences(language="de"))
    assert response.status_code == 303
    assert load(sessions, reader).locale == "de"
    assert '<option value="de" selected>Deutsch</option>' in client.get(path).text
    refused = post_form(client, path, f"{path}/preferences", preferences(language="xx"))
    assert refused.status_code == 400
    assert "Please pick a language from the list." in refused.text
    assert load(sessions, reader).locale == "de"


def test_the_page_says_when_the_next_issue_comes(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    """From the scheduler's rules: a weekly reader in Tokyo at 18:00 on Fridays (the
    planned delivery of the fixture is cancelled first, so the rule decides)."""
    with sessions.begin() as session:
        subscriber = session.get_one(Subscriber, reader)
        subscriber.frequency = Frequency.WEEKLY
        subscriber.send_weekday = 4
        subscriber.send_hour = 18
        subscriber.timezone = "Asia/Tokyo"
        for delivery in session.scalars(select(Delivery).where(Delivery.subscriber_id == reader)):
            if delivery.status == DeliveryStatus.PENDING:
                delivery.status = DeliveryStatus.SUPPRESSED
    page = client.get(manage_path(reader)).text
    found = re.search(r"Your next issue: <strong>(\w+) (\d+) (\w+) at (\d\d:\d\d)</strong>", page)
    assert found, page
    assert (found.group(1), found.group(4)) == ("Friday", "18:00")
    assert "(Asia/Tokyo)" in page
    post_form(client, manage_path(reader), manage_path(reader) + "/pause", {})
    assert "Your next issue" not in client.get(manage_path(reader)).text


def test_a_zone_outside_the_list_stays_chosen(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    """An imported alias ("US/Pacific") is not offered to others, but saving the page
    must not change it."""
    with sessions.begin() as session:
        session.get_one(Subscriber, reader).timezone = "US/Pacific"
    page = client.get(manage_path(reader)).text
    assert '<option value="US/Pacific" selected>US/Pacific</option>' in page
    assert page.count('value="US/Pacific"') == 1


def test_an_unsubscribed_reader_comes_back_in_one_step(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    post_form(client, path, path + "/unsubscribe", {})
    before = load(sessions, reader)
    assert before.status == SubscriberStatus.UNSUBSCRIBED
    page = client.get(path).text
    assert f'action="{path}/resubscribe"' in page
    response = post_form(client, path, path + "/resubscribe", {})
    assert (response.status_code, response.headers["location"]) == (303, path + "?done=back")
    after = load(sessions, reader)
    assert after.status == SubscriberStatus.ACTIVE
    # A fresh consent, recorded; the old choices kept.
    assert after.confirmed_at is not None
    assert before.confirmed_at is not None
    assert after.confirmed_at > before.confirmed_at
    assert sorted((i.topic_id or i.keywords or "") for i in after.interests) == [
        "cs.CL",
        "cs.IR",
        "dense retrieval",
    ]
    assert "Welcome back" in client.get(response.headers["location"]).text


def test_a_suppressed_or_bounced_address_cannot_come_back_from_the_page(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    path = manage_path(reader)
    post_form(client, path, path + "/unsubscribe", {})
    with sessions.begin() as session:
        session.add(Suppression(email="reader@example.org", reason="hard bounce"))
    response = post_form(client, path, path + "/resubscribe", {})
    assert response.headers["location"] == path + "?done=not_back"
    assert load(sessions, reader).status == SubscriberStatus.UNSUBSCRIBED
    # Without the CSRF token nothing happens either.
    assert client.post(path + "/resubscribe").status_code == 403


def test_a_planned_issue_is_announced_at_its_send_time(
    client: TestClient, sessions: SessionFactory, reader: int
) -> None:
    with sessions.begin() as session:
        session.get_one(Subscriber, reader).timezone = "Europe/Berlin"
        planned = session.scalars(
            select(Delivery).where(
                Delivery.subscriber_id == reader, Delivery.status == DeliveryStatus.PENDING
            )
        ).one()
        planned.next_attempt_at = datetime(2099, 6, 3, 5, 30, tzinfo=UTC)  # 07:30 in Berlin
    page = client.get(manage_path(reader)).text
    assert "Your next issue: <strong>Wednesday 3 June at 07:30</strong>" in page
