"""The admin area through the real app (TestClient), on SQLite and PostgreSQL.

Every page needs a logged-in operator; every POST needs the CSRF token; the session
cookie is signed, expiring, HttpOnly, SameSite=Strict and Secure behind https; and
the figures on the pages are the figures in the database.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import Engine, delete, func, select

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Operator,
    Subscriber,
    SubscriberStatus,
)
from newsletter.operators import OperatorError, authenticate, create_operator
from newsletter.settings import Settings
from newsletter.web.admin import auth
from newsletter.web.admin.charts import deliveries_chart, subscribers_chart, topics_chart
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import TEST_SECRET, make_settings
from tests.web.helpers import Mail, add_delivery, add_subscriber, csrf_from

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

PASSWORD = "correct horse battery"
PAGES = [
    "/admin",
    "/admin/editions",
    "/admin/subscribers",
    "/admin/subscribers?q=ada&status=active",
    "/admin/subscribers.csv",
    "/admin/subscribers/import",
    "/admin/topics",
    "/admin/topics?sort=followers",
    "/admin/test-send",
    "/admin/preview",
    "/admin/preview?as=ada%40example.org",
]


@pytest.fixture
def operator(sessions: SessionFactory) -> str:
    with sessions.begin() as session:
        create_operator(session, "Grace", PASSWORD)
    return "grace"


def log_in(client: TestClient, username: str = "grace", password: str = PASSWORD) -> Any:
    token = csrf_from(client.get("/admin/login"))
    return client.post(
        "/admin/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )


@pytest.fixture
def admin(client: TestClient, operator: str) -> TestClient:
    response = log_in(client)
    assert response.status_code == 303
    return client


def set_cookie_header(response: Any) -> str:
    headers = response.headers
    cookies = [v for k, v in headers.multi_items() if k == "set-cookie"]
    [session_cookie] = [c for c in cookies if c.startswith(auth.COOKIE + "=")]
    return str(session_cookie)


# Authentication.


@pytest.mark.parametrize("path", PAGES)
def test_every_page_sends_strangers_to_the_login(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/admin/login?next=")
    assert "Operator log in" in client.get(location).text


@pytest.mark.parametrize("path", ["/admin/test-send", "/admin/subscribers/import"])
def test_posts_without_a_session_change_nothing(
    client: TestClient, path: str, mails: Callable[[], list[Mail]]
) -> None:
    token = csrf_from(client.get("/admin/login"))
    response = client.post(
        path,
        data={"to": "x@example.org", "topics": "cs.CL", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")
    assert mails() == []


def test_login_lands_on_the_page_asked_for(client: TestClient, operator: str) -> None:
    first = client.get("/admin/editions", follow_redirects=False)
    login_page = client.get(first.headers["location"])
    token = csrf_from(login_page)
    response = client.post(
        "/admin/login",
        data={
            "username": "GRACE ",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/admin/editions",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/editions"
    page = client.get("/admin/editions")
    assert page.status_code == 200
    assert "<h1>Editions</h1>" in page.text
    assert "grace" in page.text


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/manage/x"])
def test_login_never_redirects_out_of_the_admin_area(
    client: TestClient, operator: str, target: str
) -> None:
    token = csrf_from(client.get("/admin/login"))
    response = client.post(
        "/admin/login",
        data={"username": "grace", "password": PASSWORD, "csrf_token": token, "next": target},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/admin"


@pytest.mark.parametrize(
    ("username", "password"),
    [("grace", "wrong password!"), ("nobody", PASSWORD), ("grace", ""), ("", "")],
)
def test_wrong_credentials_are_refused_alike(
    client: TestClient, operator: str, sessions: SessionFactory, username: str, password: str
) -> None:
    response = log_in(client, username, password)
    assert response.status_code == 401
    text = response.text
    assert "That username and password do not match" in text
    assert auth.COOKIE not in client.cookies
    assert client.get("/admin", follow_redirects=False).status_code == 303
    with sessions() as session:
        assert session.scalars(select(Operator.last_login_at)).one() is None


def test_the_session_cookie_is_locked_down_and_rotated(
    client: TestClient, operator: str, sessions: SessionFactory
) -> None:
    first = set_cookie_header(log_in(client))
    assert "HttpOnly" in first
    assert "SameSite=strict" in first or "samesite=strict" in first.lower()
    assert "Path=/admin" in first
    assert f"Max-Age={auth.MAX_AGE_SECONDS}" in first
    assert "Secure" not in first  # the test server is plain http
    second = set_cookie_header(log_in(client))
    assert first.split(";")[0] != second.split(";")[0]
    with sessions() as session:
        assert session.scalars(select(Operator.last_login_at)).one() is not None


def test_the_session_cookie_is_secure_behind_https(
    engine: Engine, database_url: str, operator: str
) -> None:
    settings = make_settings(database_url, public_url="https://news.example.org")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        cookie = set_cookie_header(log_in(client))
    assert "Secure" in cookie
    assert "HttpOnly" in cookie


def test_logout_ends_the_session(admin: TestClient) -> None:
    page = admin.get("/admin")
    assert page.status_code == 200
    old_cookie = admin.cookies[auth.COOKIE]
    response = admin.post(
        "/admin/logout", data={"csrf_token": csrf_from(page)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")
    assert auth.COOKIE + '=""' in set_cookie_header(response) or "Max-Age=0" in (
        set_cookie_header(response)
    )
    assert admin.get("/admin", follow_redirects=False).status_code == 303
    assert old_cookie


def _forged(salt: str, payload: object, *, secret: str = TEST_SECRET) -> str:
    return URLSafeTimedSerializer(secret, salt=salt).dumps(payload)


def test_forged_expired_and_orphaned_sessions_are_refused(
    client: TestClient, operator: str, sessions: SessionFactory
) -> None:
    with sessions() as session:
        operator_id, version = session.execute(select(Operator.id, Operator.session_version)).one()
    good = _forged(auth.SALT, {"op": operator_id, "v": version, "n": "x"})
    client.cookies.set(auth.COOKIE, good, path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 200

    for value in (
        _forged("another-salt", {"op": operator_id, "v": version}),
        _forged(auth.SALT, {"op": operator_id, "v": version}, secret="another secret " * 3),
        _forged(auth.SALT, {"op": str(operator_id), "v": version}),
        _forged(auth.SALT, {"op": operator_id, "v": version + 1}),
        _forged(auth.SALT, {"op": operator_id, "v": str(version)}),
        _forged(auth.SALT, {"op": operator_id, "n": "x"}),  # from before session versions
        _forged(auth.SALT, [operator_id]),
        good[:-3] + "AAA",
    ):
        client.cookies.set(auth.COOKIE, value, path="/admin")
        assert client.get("/admin", follow_redirects=False).status_code == 303

    # Older than the maximum age.
    class PastSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - auth.MAX_AGE_SECONDS - 5

    expired = URLSafeTimedSerializer(TEST_SECRET, salt=auth.SALT, signer=PastSigner).dumps(
        {"op": operator_id, "v": version, "n": "x"}
    )
    client.cookies.set(auth.COOKIE, expired, path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 303
    client.cookies.set(auth.COOKIE, good, path="/admin")
    assert client.get("/admin", follow_redirects=False).status_code == 200

    # The operator is removed: the session dies with them, and does not come back for
    # the next operator, who may get the same id (SQLite reuses the highest one).
    with sessions.begin() as session:
        session.execute(delete(Operator))
    assert client.get("/admin", follow_redirects=False).status_code == 303
    with sessions.begin() as session:
        create_operator(session, "mallory", PASSWORD)
    assert client.get("/admin", follow_redirects=False).status_code == 303


# CSRF.


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/admin/login", {"username": "grace", "password": PASSWORD}),
        ("/admin/logout", {}),
        ("/admin/test-send", {"to": "x@example.org", "topics": "cs.CL"}),
        ("/admin/subscribers/import", {}),
    ],
)
@pytest.mark.parametrize("token", [None, "forged"])
def test_every_admin_post_needs_the_csrf_token(
    admin: TestClient,
    path: str,
    data: dict[str, str],
    token: str | None,
    mails: Callable[[], list[Mail]],
) -> None:
    payload = dict(data) if token is None else {**data, "csrf_token": token}
    response = admin.post(path, data=payload, follow_redirects=False)
    assert response.status_code == 403
    assert "Please try again" in response.text
    assert auth.COOKIE not in response.headers.get("set-cookie", "")
    assert admin.get("/admin", follow_redirects=False).status_code == 200  # still logged in
    assert mails() == []


# The figures.


@pytest.fixture
def figures(sessions: SessionFactory) -> dict[str, int]:
    """Two editions with deliveries in every state, and subscribers in every status."""
    with sessions.begin() as session:
        ada = add_subscriber(session, "ada@example.org", topics=("cs.CL", "cs.LG"))
        ada.name = "Ada Lovelace"
        people = [ada] + [
            add_subscriber(session, f"reader{i}@example.org", topics=("cs.CL",)) for i in range(6)
        ]
        add_subscriber(session, "waiting@example.org", status=SubscriberStatus.PENDING)
        add_subscriber(session, "gone@example.org", status=SubscriberStatus.UNSUBSCRIBED)
        add_subscriber(session, "=cmd@example.org", status=SubscriberStatus.BOUNCED)
        first, second = date(2026, 5, 26), date(2026, 5, 27)
        states = [
            DeliveryStatus.SENT,
            DeliveryStatus.SENT,
            DeliveryStatus.SENT,
            DeliveryStatus.RETRY,
            DeliveryStatus.BOUNCED,
            DeliveryStatus.FAILED,
            DeliveryStatus.SUPPRESSED,
        ]
        for person, status in zip(people, states, strict=True):
            add_delivery(session, person, day=first, status=status, papers=1)
        for person in people[:4]:
            add_delivery(session, person, day=second, status=DeliveryStatus.SENT, papers=1)
        for person, status in zip(
            people[4:],
            [DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.RETRY],
            strict=True,
        ):
            add_delivery(session, person, day=second, status=status, papers=1)
        replies = {
            DeliveryStatus.RETRY: (451, "4.7.1 Greylisted, try again in 5 minutes"),
            DeliveryStatus.BOUNCED: (550, "5.1.1 <reader3@example.org>: user unknown"),
            DeliveryStatus.FAILED: (421, "4.3.2 out of attempts: service not available"),
        }
        for delivery in session.scalars(select(Delivery)):
            if delivery.status in replies:
                delivery.last_smtp_code, delivery.last_smtp_reply = replies[delivery.status]
                delivery.attempts = 3
    return {"active": 7, "pending": 1, "unsubscribed": 1, "bounced": 1}


def _row(html: str, day: str) -> dict[str, int]:
    match = re.search(rf'<tr data-edition="{day}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {day}"
    cells = re.findall(r'data-outcome="(\w+)">(\d+)<', match.group(1))
    return {outcome: int(count) for outcome, count in cells}


def test_the_editions_page_counts_what_the_database_holds(
    admin: TestClient, figures: dict[str, int], sessions: SessionFactory
) -> None:
    page = admin.get("/admin/editions")
    assert page.status_code == 200
    assert _row(page.text, "2026-05-26") == {
        "sent": 3,
        "pending": 0,
        "retry": 1,
        "bounced": 1,
        "failed": 1,
        "suppressed": 1,
    }
    assert _row(page.text, "2026-05-27") == {
        "sent": 4,
        "pending": 2,
        "retry": 1,
        "bounced": 0,
        "failed": 0,
        "suppressed": 0,
    }
    # ... and the same numbers straight from the table.
    with sessions() as session:
        counted = session.scalar(
            select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.SENT)
        )
    assert counted == 7
    failures = page.text.split('id="failure-list"')[1]
    assert "4.7.1 Greylisted, try again in 5 minutes" in failures
    assert "5.1.1 &lt;reader3@example.org&gt;: user unknown" in failures
    assert "4.3.2 out of attempts" in failures
    assert failures.split("<tbody>")[1].count("<tr>") == 4  # two retries, a bounce, a failure
    assert "Greylisted" not in page.text.split('id="failure-list"')[0]


def test_the_overview_and_its_charts_show_the_figures(
    admin: TestClient, figures: dict[str, int]
) -> None:
    page = admin.get("/admin")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="tile-active">7<', text)
    assert re.search(r'id="tile-sent">7<', text)
    assert re.search(r'id="tile-queued">4<', text)  # pending, claimed, two retries
    assert re.search(r'id="tile-problems">2<', text)
    deliveries = text.split('id="chart-deliveries"')[1].split("</figure>")[0]
    assert deliveries.count('data-outcome="sent"') == 2
    assert 'data-outcome="sent" data-count="3"' in deliveries
    assert 'data-outcome="sent" data-count="4"' in deliveries
    assert 'data-outcome="pending" data-count="2"' in deliveries
    topics = text.split('id="chart-topics"')[1].split("</figure>")[0]
    assert 'data-topic="cs.CL" data-count="7"' in topics
    assert 'data-topic="cs.LG" data-count="1"' in topics
    assert topics.index("cs.CL") < topics.index("cs.LG")
    subscribers = text.split('id="chart-subscribers"')[1].split("</figure>")[0]
    assert re.search(r'class="last-value"[^>]*>7<', subscribers)
    assert "<script" not in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")


def test_subscribers_search_status_and_paging(admin: TestClient, figures: dict[str, int]) -> None:
    everyone = admin.get("/admin/subscribers")
    assert "10 subscribers." in everyone.text
    assert everyone.text.count('class="email"') == 10
    found = admin.get("/admin/subscribers", params={"q": "LOVELACE"})
    assert "1 subscriber matches." in found.text
    assert "ada@example.org" in found.text
    assert "reader1@example.org" not in found.text
    pending = admin.get("/admin/subscribers", params={"status": "pending"})
    assert "waiting@example.org" in pending.text
    assert pending.text.count('class="email"') == 1
    wildcard = admin.get("/admin/subscribers", params={"q": "%"})
    assert "0 subscribers match." in wildcard.text
    bogus = admin.get("/admin/subscribers", params={"status": "nonsense"})
    assert "10 subscribers." in bogus.text


def test_the_csv_export_is_every_match_and_safe_in_a_spreadsheet(
    admin: TestClient, figures: dict[str, int]
) -> None:
    response = admin.get("/admin/subscribers.csv", params={"status": "active"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 7
    ada = next(row for row in rows if row["email"] == "ada@example.org")
    assert ada["name"] == "Ada Lovelace"
    assert (ada["topics"], ada["keywords"]) == ("cs.CL; cs.LG", "")
    assert (ada["weekday"], ada["send_hour"]) == ("monday", "7")
    assert ada["status"] == "active"
    everyone = list(csv.DictReader(io.StringIO(admin.get("/admin/subscribers.csv").text)))
    assert len(everyone) == 10
    assert "'=cmd@example.org" in [row["email"] for row in everyone]


# Test send and preview.


def _count_rows(sessions: SessionFactory) -> tuple[int, int, list[object]]:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Delivery)) or 0,
            session.scalar(select(func.count()).select_from(DeliveryItem)) or 0,
            [
                tuple(row)
                for row in session.execute(
                    select(Subscriber.id, Subscriber.status, Subscriber.token_version)
                )
            ],
        )


def test_the_test_send_form_mails_a_real_issue_and_changes_nothing(
    admin: TestClient,
    figures: dict[str, int],
    sessions: SessionFactory,
    mails: Callable[[], list[Mail]],
) -> None:
    before = _count_rows(sessions)
    page = admin.get("/admin/test-send")
    response = admin.post(
        "/admin/test-send",
        data={
            "to": "operator@example.org",
            "as_email": "ada@example.org",
            "edition": "2026-05-27",
            "csrf_token": csrf_from(page),
        },
    )
    assert response.status_code == 200, response.text
    assert "sent to operator@example.org" in response.text
    [mail] = mails()
    assert mail.to.endswith("<operator@example.org>")
    assert mail.subject.startswith("[TEST] ")
    assert "Paper 1" in mail.text
    assert _count_rows(sessions) == before


def test_the_test_send_form_explains_a_mistake(
    admin: TestClient, mails: Callable[[], list[Mail]]
) -> None:
    page = admin.get("/admin/test-send")
    for data in (
        {"to": "operator@example.org"},
        {"to": "operator@example.org", "topics": "cs.CL", "edition": "yesterday"},
        {"to": "", "topics": "cs.CL"},
    ):
        response = admin.post("/admin/test-send", data={**data, "csrf_token": csrf_from(page)})
        assert response.status_code == 400
        assert 'class="alert alert-error"' in response.text
    assert mails() == []


def test_the_preview_shows_the_issue_under_the_mail_policy(
    admin: TestClient, figures: dict[str, int], sessions: SessionFactory
) -> None:
    before = _count_rows(sessions)
    response = admin.get(
        "/admin/preview", params={"as": "ada@example.org", "edition": "2026-05-27"}
    )
    assert response.status_code == 200
    assert "Paper 1" in response.text
    assert "script-src" not in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert _count_rows(sessions) == before
    unknown = admin.get("/admin/preview", params={"as": "nobody@example.org"})
    assert unknown.status_code == 400
    assert 'class="alert alert-error"' in unknown.text
    form = admin.get("/admin/preview")
    assert form.status_code == 200
    assert 'name="as"' in form.text


# Operators.


def test_operators_are_stored_hashed_and_checked(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        operator = create_operator(session, "  Linus ", "a long enough password")
        assert operator.username == "linus"
        assert operator.password_hash.startswith("$argon2id$")
        assert "a long enough password" not in operator.password_hash
    with sessions.begin() as session:
        for name, password, message in (
            ("linus", "another long password", "exists already"),
            ("bad name", "another long password", "a username is"),
            ("", "another long password", "a username is"),
            ("short", "tooshort", "at least"),
        ):
            with pytest.raises(OperatorError, match=message):
                create_operator(session, name, password)
    with sessions.begin() as session:
        assert authenticate(session, "LINUS", "a long enough password") is not None
        assert authenticate(session, "linus", "a long enough passworD") is None
        assert authenticate(session, "linus", "x" * 5000) is None
        assert authenticate(session, "nobody", "a long enough password") is None


# The chart functions on their own: empty data, and text that needs escaping.


def test_charts_escape_and_handle_no_data() -> None:
    assert "No deliveries yet" in deliveries_chart([])
    assert "No subscribers yet" in subscribers_chart([])
    assert "Nobody follows a topic yet" in topics_chart([])
    chart = topics_chart([("x<y>", "<script>alert(1)</script>", 3)])
    assert "<script>" not in chart
    assert "&lt;script&gt;" in chart
    series = [(date(2026, 5, 1) + timedelta(days=i), {"sent": i * 37}) for i in range(40)]
    big = deliveries_chart(series)
    assert big.count("<rect") == 39  # the first day had nothing
    assert ">1443<" in big  # the last day's total on top of its bar


@pytest.fixture
def https_settings(database_url: str) -> Settings:
    return make_settings(database_url, public_url="https://news.example.org")


def test_options_can_force_insecure_cookies_for_a_local_proxy(
    engine: Engine, https_settings: Settings, operator: str
) -> None:
    app = create_app(https_settings, options=WebOptions(secure_cookies=False))
    with TestClient(app, base_url="https://testserver") as client:
        cookie = set_cookie_header(log_in(client))
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie
