"""The admin preview inside the admin frame, the edition picker with the real days, and
test sends whose links open a page saying they came from a test (real app, real SMTP)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Feedback, Subscriber, SubscriberStatus, utcnow
from tests.web.helpers import Mail, add_delivery, add_subscriber, csrf_from
from tests.web.test_admin import admin, operator  # noqa: F401  (fixtures)

pytestmark = pytest.mark.sqlite_only

LINK = re.compile(r"http://testserver(/(?:view|feedback|manage|unsubscribe)/[^\s\"'<>]+)")


@pytest.fixture
def ada(sessions: SessionFactory) -> int:
    with sessions.begin() as session:
        ada = add_subscriber(session, "ada@example.org")
        add_delivery(session, ada, day=date(2026, 5, 26), papers=2, title="Older")
        add_delivery(session, ada, day=date(2026, 5, 27), papers=3, title="Sparse attention")
        ada.paused_at = utcnow()
        return ada.id


def test_the_preview_sits_in_the_admin_frame_with_the_readers_status(
    admin: TestClient, ada: int
) -> None:
    page = admin.get("/admin/preview", params={"as": "ada@example.org", "edition": "2026-05-27"})
    assert page.status_code == 200
    text = page.text
    assert 'class="admin-nav"' in text  # the admin frame
    assert 'id="whose-status">paused<' in text
    assert "would not get this issue" in text
    assert f'href="/admin/subscribers/{ada}"' in text
    frame = re.search(r'<iframe[^>]*srcdoc="([^"]*)"', text)
    assert frame is not None
    assert "Sparse attention 1" in frame.group(1)  # the issue, escaped into the attribute
    assert "sandbox=" in text
    policy = page.headers["content-security-policy"]
    assert "script-src" not in policy
    assert "frame-ancestors 'none'" in policy
    # The picker offers the days that have papers or an edition, newest first.
    options = re.findall(r'<option value="(\d{4}-\d\d-\d\d)"( selected)?>([^<]*)<', text)
    assert [(day, chosen) for day, chosen, _ in options] == [
        ("2026-05-27", " selected"),
        ("2026-05-26", ""),
    ]
    assert options[0][2] == "2026-05-27 (3 papers, edition planned)"


def test_the_links_of_a_test_send_say_they_came_from_a_test(
    admin: TestClient,
    ada: int,
    sessions: SessionFactory,
    mails: Callable[[], list[Mail]],
) -> None:
    page = admin.get("/admin/test-send", params={"as": "ada@example.org"})
    assert 'value="ada@example.org"' in page.text  # prefilled from the subscriber page
    answer = admin.post(
        "/admin/test-send",
        data={
            "to": "operator@example.org",
            "as_email": "ada@example.org",
            "edition": "2026-05-27",
            "csrf_token": csrf_from(page),
        },
    )
    assert answer.status_code == 200, answer.text
    [mail] = mails()
    paths = sorted(set(LINK.findall(mail.text + mail.html)))
    kinds = {path.split("/")[1] for path in paths}
    assert {"view", "manage", "unsubscribe"} <= kinds  # (rating links open the view)
    for path in paths:
        opened = admin.get(path)
        assert opened.status_code == 200, path
        assert "This link is from a test issue" in opened.text, path
    # RFC 8058 one-click, as a mail provider would post it: nothing changes either.
    unsubscribe = next(path for path in paths if path.startswith("/unsubscribe/"))
    posted = admin.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert "This link is from a test issue" in posted.text
    with sessions() as session:
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        assert subscriber.status == SubscriberStatus.ACTIVE
        assert session.scalars(select(Feedback)).all() == []
