"""A link names one subscriber for ever: a deleted subscriber's links never reach the
next person who gets their id (SQLite reuses the highest id after a delete)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import (
    LINK_KEY_LIMIT,
    Subscriber,
    SubscriberStatus,
    new_link_key,
)
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web.links import Links
from tests.conftest import TEST_SECRET
from tests.web.helpers import (
    Mail,
    add_delivery,
    csrf_from,
    post_form,
    subscribe_form,
    subscriber_by_email,
)

Mails = Callable[[], list[Mail]]
TOKENS = Tokens(TEST_SECRET)
POSTED = {"delete", "feedback", "address", "confirm"}  # links with a form POST too


def _sign_up(client: TestClient, mails: Mails, address: str) -> str:
    """Sign up and confirm through the pages; the confirmation link."""
    response = post_form(client, "/", "/subscribe", subscribe_form(address))
    assert response.status_code == 200
    [link] = [m.link("/confirm/") for m in mails() if m.to == address]
    done = client.post(link, data={"csrf_token": csrf_from(client.get(link))})
    assert "You are subscribed" in done.text
    return link


def _tampered(url: str) -> str:
    """``url`` with the last characters of its token (its longest segment) changed."""
    token = max(url.split("/"), key=len)
    return url.replace(token, token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB"))


def test_a_deleted_subscribers_links_fail_like_tampered_ones_for_whoever_gets_the_id(
    client: TestClient,
    sessions: SessionFactory,
    web_settings: Settings,
    mails: Mails,
    database_url: str,
) -> None:
    links = Links(web_settings, TOKENS)
    confirm = _sign_up(client, mails, "first@example.org")
    with sessions.begin() as session:
        first = session.scalars(
            select(Subscriber).where(Subscriber.email == "first@example.org")
        ).one()
        delivery = add_delivery(session, first)
        first.pending_email = "elsewhere@example.org"  # an address change waiting
        old_id = first.id
        base = web_settings.public_url
        manage = links.manage_url(first)
        old = {
            "manage": manage,
            "export": manage + "/export",
            "delete": manage + "/delete",
            "unsubscribe": links.unsubscribe_url(first),
            "feedback": links.feedback_url(first, delivery.id, 1, "more"),
            "view": f"{base}/view/"
            + TOKENS.make(Purpose.VIEW, TokenData(first.id, first.token_version, delivery.id)),
            "address": links.address_url(first, "elsewhere@example.org"),
            "confirm": confirm,
        }
    for url in old.values():
        assert client.get(url).status_code == 200, url  # every link works while it is theirs

    # "Delete my data", from the preferences page.
    page = client.get(old["delete"])
    assert client.post(old["delete"], data={"csrf_token": csrf_from(page)}).status_code == 200

    if database_url.startswith("sqlite"):
        # The hazard is real: the next sign-up gets the deleted subscriber's id.
        _sign_up(client, mails, "next@example.org")
        successor = subscriber_by_email(sessions, "next@example.org")
        assert successor is not None
        assert successor.id == old_id
    else:
        # PostgreSQL's sequences do not reuse ids; a restored backup or a reset
        # sequence can: give the next subscriber the old id directly.
        with sessions.begin() as session:
            session.add(
                Subscriber(id=old_id, email="next@example.org", status=SubscriberStatus.ACTIVE)
            )

    token = csrf_from(client.get("/"))
    for kind, url in old.items():
        requests: list[tuple[str, dict[str, str] | None]] = [("GET", None)]
        if kind in POSTED:
            requests.append(("POST", {"csrf_token": token}))
        if kind == "unsubscribe":  # RFC 8058 one-click, as a mail provider posts it
            requests.append(("POST", {"List-Unsubscribe": "One-Click"}))
        for method, data in requests:
            response = client.request(method, url, data=data)
            tampered = client.request(method, _tampered(url), data=data)
            assert response.status_code == 400, (kind, method, data)
            assert response.text == tampered.text, (kind, method, data)
            assert "next@example.org" not in response.text
    successor = subscriber_by_email(sessions, "next@example.org")
    assert successor is not None
    assert successor.status == SubscriberStatus.ACTIVE  # not unsubscribed, not deleted
    assert successor.email == "next@example.org"  # not re-addressed


def test_new_subscribers_get_random_link_keys(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        people = [Subscriber(email=f"p{i}@example.org") for i in range(20)]
        session.add_all(people)
        session.flush()
        keys = [p.token_version for p in people]
    assert len(set(keys)) == len(keys)
    assert all(1 <= key <= LINK_KEY_LIMIT for key in keys)
    assert all(1 <= new_link_key() <= LINK_KEY_LIMIT for _ in range(1000))
