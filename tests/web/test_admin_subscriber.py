"""The admin subscriber page and its actions, and the dashboard's alerts, through the
real app (TestClient) with a real SMTP server taking the mails."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.delivery.relay_errors import UNREACHABLE, record_relay_error
from newsletter.models import (
    AdminAction,
    Bounce,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Feedback,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from tests.web.helpers import Mail, add_delivery, add_subscriber, csrf_from
from tests.web.test_admin import admin, operator  # noqa: F401  (fixtures)

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def ada(sessions: SessionFactory) -> int:
    with sessions.begin() as session:
        ada = add_subscriber(session, "ada@example.org", topics=("cs.CL",))
        sent = add_delivery(session, ada, day=date(2026, 5, 26), papers=2, title="Sparse attention")
        retry = add_delivery(session, ada, day=date(2026, 5, 27), status=DeliveryStatus.RETRY)
        retry.last_smtp_code, retry.last_smtp_reply = 451, "4.7.1 greylisted, try later"
        session.add(Feedback(subscriber_id=ada.id, paper_id=sent.items[0].paper_id, value=-1))
        session.add(
            Bounce(email="ada@example.org", kind=BounceKind.HARD, source="smtp", code=550, reply="")
        )
        return ada.id


def post(admin: TestClient, subscriber_id: int, action: str, **data: str) -> Any:
    token = csrf_from(admin.get(f"/admin/subscribers/{subscriber_id}"))
    return admin.post(
        f"/admin/subscribers/{subscriber_id}/{action}",
        data={**data, "csrf_token": token},
        follow_redirects=False,
    )


def test_the_page_shows_everything_about_one_subscriber(admin: TestClient, ada: int) -> None:
    listing = admin.get("/admin/subscribers").text
    assert f'href="/admin/subscribers/{ada}"' in listing
    page = admin.get(f"/admin/subscribers/{ada}")
    assert page.status_code == 200
    text = page.text
    assert 'id="status">active<' in text
    assert "Computation and Language" in text or "cs.CL" in text
    assert "4.7.1 greylisted, try later" in text  # the retry's last reply
    assert "Sparse attention 1" in text  # rated "less"
    assert "<code>550</code>" in text  # the bounce
    assert admin.get("/admin/subscribers/999999").status_code == 404


def test_unsubscribe_is_recorded_with_the_operator(
    admin: TestClient, ada: int, sessions: SessionFactory
) -> None:
    answer = post(admin, ada, "unsubscribe", reason="asked on the phone")
    assert answer.status_code == 303
    page = admin.get(answer.headers["location"]).text
    assert "Unsubscribed. Issues not sent yet are cancelled." in page
    assert "unsubscribe</strong> by grace: “asked on the phone”" in page
    with sessions() as session:
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        assert subscriber.status == SubscriberStatus.UNSUBSCRIBED


def test_a_post_without_the_csrf_token_changes_nothing(
    admin: TestClient, ada: int, sessions: SessionFactory
) -> None:
    answer = admin.post(f"/admin/subscribers/{ada}/delete", data={"confirm": "yes"})
    assert answer.status_code == 403
    with sessions() as session:
        assert session.get(Subscriber, ada) is not None


def test_delete_needs_the_box_ticked_then_forgets_them(
    admin: TestClient, ada: int, sessions: SessionFactory
) -> None:
    refused = post(admin, ada, "delete")
    assert refused.status_code == 400
    answer = post(admin, ada, "delete", confirm="yes", reason="GDPR request")
    assert answer.status_code == 303
    # The redirect's URL goes to the access log: the erased address must not be in it.
    assert "ada" not in answer.headers["location"]
    assert f"Deleted subscriber {ada} and everything" in admin.get(answer.headers["location"]).text
    with sessions() as session:
        assert session.get(Subscriber, ada) is None
        action = session.scalars(select(AdminAction)).one()
    assert (action.action, action.email, action.operator, action.reason) == (
        "delete",
        "ada@example.org",
        "grace",
        "GDPR request",
    )


def test_lifting_a_suppression_needs_a_reason_and_reactivates(
    admin: TestClient, ada: int, sessions: SessionFactory
) -> None:
    with sessions.begin() as session:
        session.add(Suppression(email="ada@example.org", reason="550 hard bounce"))
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        subscriber.status = SubscriberStatus.BOUNCED
    page = admin.get(f"/admin/subscribers/{ada}").text
    assert "On the suppression list since" in page
    assert post(admin, ada, "lift-suppression", reason="  ").status_code == 400
    answer = post(admin, ada, "lift-suppression", reason="mailbox fixed, they wrote to us")
    assert "suppression is lifted" in admin.get(answer.headers["location"]).text
    with sessions() as session:
        assert session.get(Suppression, "ada@example.org") is None
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        assert subscriber.status == SubscriberStatus.ACTIVE
        assert (
            session.scalars(select(AdminAction.reason)).one() == "mailbox fixed, they wrote to us"
        )


def test_resend_confirmation_mails_a_fresh_link(
    admin: TestClient, sessions: SessionFactory, mails: Callable[[], list[Mail]]
) -> None:
    with sessions.begin() as session:
        waiting = add_subscriber(session, "new@example.org", status=SubscriberStatus.PENDING)
        waiting.signup_at = utcnow() - timedelta(days=30)  # its link lapsed long ago
        waiting_id = waiting.id
    answer = post(admin, waiting_id, "resend-confirmation")
    assert answer.status_code == 303
    assert "confirmation mail is on its way" in admin.get(answer.headers["location"]).text
    [mail] = mails()
    assert mail.to == "new@example.org"
    confirmed = admin.get(mail.link("/confirm/").replace("http://testserver", ""))
    assert confirmed.status_code == 200  # the fresh link works


def test_the_dashboard_puts_a_failing_relay_and_stuck_editions_first(
    admin: TestClient, ada: int, sessions: SessionFactory
) -> None:
    assert 'id="problems"' not in admin.get("/admin").text
    with sessions.begin() as session:
        record_relay_error(
            session,
            kind=UNREACHABLE,
            reply="SMTP server smtp.example.org:587 unavailable: Connection refused",
            now=utcnow(),
        )
        for delivery in session.scalars(select(Delivery)):
            if delivery.status == DeliveryStatus.RETRY:
                delivery.next_attempt_at = utcnow() - timedelta(hours=2)
    page = admin.get("/admin").text
    assert 'id="relay-failing"' in page
    assert "Connection refused" in page
    assert 'data-edition="2026-05-27"' in page  # stuck in sending
    assert "is stuck in sending" in page
