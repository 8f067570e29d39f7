"""Unsubscribe: RFC 8058 one-click POST, a harmless GET, and links that do not work."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Delivery, DeliveryStatus, Frequency, Subscriber, SubscriberStatus
from newsletter.tokens import Purpose, TokenData, Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber, csrf_from

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

TOKENS = Tokens(TEST_SECRET)


def unsubscribe_path(subscriber: Subscriber, purpose: Purpose = Purpose.UNSUBSCRIBE) -> str:
    return "/unsubscribe/" + TOKENS.make(
        purpose, TokenData(subscriber.id, subscriber.token_version)
    )


@pytest.fixture
def reader(sessions: SessionFactory) -> Subscriber:
    with sessions.begin() as session:
        subscriber = add_subscriber(session, "reader@example.org")
        add_delivery(session, subscriber, status=DeliveryStatus.SENT)
        for day, status in ((28, DeliveryStatus.PENDING), (29, DeliveryStatus.RETRY)):
            add_delivery(session, subscriber, day=date(2026, 5, day), status=status)
        return subscriber


def state_of(sessions: SessionFactory, subscriber_id: int) -> tuple[str, list[str]]:
    with sessions() as session:
        subscriber = session.get_one(Subscriber, subscriber_id)
        deliveries = session.scalars(
            select(Delivery.status)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.id)
        )
        return subscriber.status.value, [d.value for d in deliveries]


def test_get_shows_a_button_and_changes_nothing(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    response = client.get(unsubscribe_path(reader))
    assert response.status_code == 200
    assert 'name="List-Unsubscribe" value="One-Click"' in response.text
    assert "reader@example.org" in response.text
    assert state_of(sessions, reader.id) == ("active", ["sent", "pending", "retry"])


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_post_unsubscribes_without_cookies(
    client: TestClient, sessions: SessionFactory, reader: Subscriber, encoding: str
) -> None:
    bare = TestClient(client.app)  # a mail provider's server: no cookie, no CSRF token
    path = unsubscribe_path(reader)
    if encoding == "urlencoded":
        response = bare.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    else:
        response = bare.post(
            path, files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False
        )
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert state_of(sessions, reader.id) == ("unsubscribed", ["sent", "suppressed", "suppressed"])
    again = bare.post(path, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
    assert again.status_code == 200
    assert state_of(sessions, reader.id) == ("unsubscribed", ["sent", "suppressed", "suppressed"])
    assert "You are not subscribed" in bare.get(path).text


@pytest.mark.parametrize(
    "body",
    [{}, {"List-Unsubscribe": "one-click"}, {"List-Unsubscribe": "Yes"}, {"csrf_token": "x"}],
)
def test_other_bodies_change_nothing(
    client: TestClient, sessions: SessionFactory, reader: Subscriber, body: dict[str, str]
) -> None:
    response = client.post(unsubscribe_path(reader), data=body)
    assert response.status_code == 400
    assert state_of(sessions, reader.id) == ("active", ["sent", "pending", "retry"])


def test_bad_links_get_a_clear_4xx_page(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    good = unsubscribe_path(reader)
    token = good.rsplit("/", 1)[1]
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    other_secret = "/unsubscribe/" + Tokens("another-secret-" + "x" * 40).make(
        Purpose.UNSUBSCRIBE, TokenData(reader.id, reader.token_version)
    )
    wrong_purpose = unsubscribe_path(reader, Purpose.MANAGE)
    stranger = "/unsubscribe/" + TOKENS.make(Purpose.UNSUBSCRIBE, TokenData(reader.id + 999, 1))
    revoked = "/unsubscribe/" + TOKENS.make(
        Purpose.UNSUBSCRIBE, TokenData(reader.id, reader.token_version + 1)
    )
    cases = [tampered, other_secret, wrong_purpose, stranger, revoked, "/unsubscribe/" + "A" * 5000]
    cases.append(f"/unsubscribe/{token}%00")
    for path in cases:
        for response in (
            client.get(path),
            client.post(path, data={"List-Unsubscribe": "One-Click"}),
        ):
            assert response.status_code == 400, path
            assert "This link does not work" in response.text
            assert "reader@example.org" not in response.text
    # An unknown subscriber and a revoked link say exactly the same.
    assert client.get(stranger).text == client.get(revoked).text
    assert state_of(sessions, reader.id) == ("active", ["sent", "pending", "retry"])


def test_unsubscribing_leaves_a_bounced_subscriber_bounced(
    client: TestClient, sessions: SessionFactory
) -> None:
    with sessions.begin() as session:
        bounced = add_subscriber(session, "b@example.org", status=SubscriberStatus.BOUNCED)
    response = client.post(unsubscribe_path(bounced), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert state_of(sessions, bounced.id) == ("bounced", [])


def test_the_page_offers_weekly_or_a_pause_instead(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    path = unsubscribe_path(reader)
    page = client.get(path).text
    assert f'action="{path}/weekly"' in page
    assert f'action="{path}/pause"' in page
    assert "One issue a week, on Monday" in page

    token = csrf_from(client.get(path))
    weekly = client.post(path + "/weekly", data={"csrf_token": token}, follow_redirects=False)
    assert weekly.status_code == 200
    assert "You now get one issue a week" in weekly.text
    with sessions() as session:
        stored = session.get_one(Subscriber, reader.id)
        assert (stored.frequency, stored.status) == (Frequency.WEEKLY, SubscriberStatus.ACTIVE)
    assert f'action="{path}/weekly"' not in client.get(path).text  # weekly already

    paused = client.post(path + "/pause", data={"csrf_token": token}, follow_redirects=False)
    assert paused.status_code == 200
    assert "Issues are paused" in paused.text
    assert state_of(sessions, reader.id) == ("active", ["sent", "suppressed", "suppressed"])
    with sessions() as session:
        assert session.get_one(Subscriber, reader.id).paused_at is not None


def test_no_page_of_an_unsubscribe_link_hands_out_the_preferences_link(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    """The unsubscribe URL grants less mail only (README, security model); it travels in
    the List-Unsubscribe header. A manage token would grant export, delete and a new
    address, so none of its pages may carry one, whatever the reader does there."""
    path = unsubscribe_path(reader)
    token = csrf_from(client.get(path))
    pages = [client.get(path)]
    for action in ("/weekly", "/pause"):
        pages.append(client.post(path + action, data={"csrf_token": token}))
    bare = TestClient(client.app)  # the mail provider's one-click POST
    pages.append(bare.post(path, data={"List-Unsubscribe": "One-Click"}))
    pages.append(client.get(path))  # "You are not subscribed"
    pages.append(client.post(path + "/resubscribe", data={"csrf_token": token}))
    for page in pages:
        assert page.status_code == 200, page.text
        assert "/manage/" not in page.text, page.text
        assert "location" not in page.headers


def test_the_alternatives_need_the_forms_token(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    """Unlike RFC 8058's one-click, which a mail provider posts without a cookie."""
    path = unsubscribe_path(reader)
    assert client.post(path + "/pause").status_code == 403
    assert client.post(path + "/weekly").status_code == 403
    assert client.post(path + "/resubscribe").status_code == 403
    with sessions() as session:
        stored = session.get_one(Subscriber, reader.id)
        assert (stored.frequency, stored.paused_at) == (Frequency.DAILY, None)


def test_undo_right_after_unsubscribing(
    client: TestClient, sessions: SessionFactory, reader: Subscriber
) -> None:
    path = unsubscribe_path(reader)
    done = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert "You are unsubscribed" in done.text
    action = re.search(r'action="(/unsubscribe/[^"]+/resubscribe)"', done.text)
    assert action
    back = client.post(action.group(1), data={"csrf_token": csrf_from(done)})
    assert back.status_code == 200
    assert "You are subscribed again" in back.text
    assert state_of(sessions, reader.id)[0] == "active"
    # The page of the same link offers it too, later (a POST; the GET changes nothing).
    client.post(path, data={"List-Unsubscribe": "One-Click"})
    later = client.get(path)
    assert state_of(sessions, reader.id)[0] == "unsubscribed"
    assert f'action="{path}/resubscribe"' in later.text
    client.post(path + "/resubscribe", data={"csrf_token": csrf_from(later)})
    assert state_of(sessions, reader.id)[0] == "active"
