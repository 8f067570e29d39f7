"""The JSON API under /api/v1: the page actions over JSON, with JSON errors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import itsdangerous.timed
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from newsletter.db import SessionFactory
from newsletter.models import (
    Feedback,
    Interest,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.subscribers import accounts
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web.options import WebOptions
from tests.conftest import TEST_SECRET
from tests.web.helpers import Mail, add_delivery, add_subscriber, subscriber_by_email

# HTTP behaviour: SQLite is enough (tests/conftest.py, sqlite_only).
pytestmark = pytest.mark.sqlite_only

TOKENS = Tokens(TEST_SECRET)
Mails = Callable[[], list[Mail]]
API = "/api/v1"
OPERATIONS = {
    "/api/v1/subscribe": {"post"},
    "/api/v1/confirm/{token}": {"post"},
    "/api/v1/subscribers/{token}/preferences": {"get", "put"},
    "/api/v1/subscribers/{token}/pause": {"post"},
    "/api/v1/subscribers/{token}/resume": {"post"},
    "/api/v1/subscribers/{token}/export": {"get"},
    "/api/v1/feedback/{token}/{rank}": {"post"},
    "/api/v1/unsubscribe/{token}": {"post"},
}


def token(
    purpose: Purpose, subscriber_id: int, version: int = 1, subject: int | None = None
) -> str:
    return TOKENS.make(purpose, TokenData(subscriber_id, version, subject))


@dataclass(frozen=True)
class Reader:
    id: int
    delivery_id: int

    @property
    def manage(self) -> str:
        return token(Purpose.MANAGE, self.id)

    def feedback(self, rank: int = 1) -> str:
        return f"{API}/feedback/{token(Purpose.FEEDBACK, self.id, 1, self.delivery_id)}/{rank}"


@pytest.fixture
def reader(sessions: SessionFactory) -> Reader:
    with sessions.begin() as session:
        subscriber = add_subscriber(session, "reader@example.org", topics=("cs.CL", "cs.IR"))
        subscriber.interests.append(Interest(keywords="dense retrieval", weight=2.0))
        delivery = add_delivery(session, subscriber, title="Ranked paper")
        return Reader(subscriber.id, delivery.id)


def load(sessions: SessionFactory, subscriber_id: int) -> Subscriber:
    with sessions() as session:
        subscriber = session.get_one(Subscriber, subscriber_id)
        _ = subscriber.interests
        return subscriber


def signup(address: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": address,
        "topics": ["cs.CL", "cs.LG"],
        "keywords": ["retrieval augmented generation", "evaluation"],
        "frequency": "weekly",
        "timezone": "Europe/Berlin",
        "send_hour": 8,
        "send_weekday": 4,
    }
    body.update(overrides)
    return body


def assert_error(response: Any, status: int, *phrases: str) -> dict[str, Any]:
    """A JSON error of the documented shape whose message holds every phrase."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"status", "title", "message", "errors"}
    assert body["status"] == status
    for phrase in phrases:
        assert phrase in body["message"], body
    return body


# --- the document -------------------------------------------------------------------------


def test_the_openapi_document_describes_the_api_and_nothing_else(client: TestClient) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert {path: set(ops) for path, ops in document["paths"].items()} == OPERATIONS
    feedback = document["paths"]["/api/v1/feedback/{token}/{rank}"]["post"]
    assert set(feedback["responses"]) >= {"200", "400", "404", "415", "422", "429"}
    # The HTML documentation pages stay off, and the old location serves nothing.
    for path in ("/docs", "/redoc", "/openapi.json", "/api/docs"):
        assert client.get(path).status_code == 404


def test_security_headers_apply_to_json_too(client: TestClient, reader: Reader) -> None:
    for response in (
        client.get("/api/openapi.json"),
        client.get(f"{API}/subscribers/{reader.manage}/preferences"),
        client.get(f"{API}/subscribers/nonsense/preferences"),
    ):
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


# --- subscribe and confirm ----------------------------------------------------------------


def test_subscribe_and_confirm(client: TestClient, sessions: SessionFactory, mails: Mails) -> None:
    bare = TestClient(client.app)  # no cookie and no CSRF token anywhere
    response = bare.post(f"{API}/subscribe", json=signup("Ada@Example.org"))
    assert response.status_code == 202
    assert response.json()["status"] == "check_email"
    pending = subscriber_by_email(sessions, "ada@example.org")
    assert pending is not None
    assert pending.status == SubscriberStatus.PENDING
    [mail] = mails()
    assert mail.to == "ada@example.org"
    confirm_token = mail.link("/confirm/").rsplit("/", 1)[1]

    done = bare.post(f"{API}/confirm/{confirm_token}")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "confirmed"
    manage_token = done.json()["manage_token"]
    active = load(sessions, pending.id)
    assert active.status == SubscriberStatus.ACTIVE
    assert sorted(i.topic_id or i.keywords or "" for i in active.interests) == [
        "cs.CL",
        "cs.LG",
        "evaluation",
        "retrieval augmented generation",
    ]
    again = bare.post(f"{API}/confirm/{confirm_token}")
    assert again.status_code == 200
    assert again.json().keys() == {"status", "manage_token"}
    assert again.json()["status"] == "already"
    # A link to the same reader. (Not the same string: a token carries the second it was
    # signed, so the two differ when a second boundary falls between them; it did once.)
    assert TOKENS.read(Purpose.MANAGE, again.json()["manage_token"]) == TOKENS.read(
        Purpose.MANAGE, manage_token
    )
    prefs = bare.get(f"{API}/subscribers/{manage_token}/preferences").json()
    assert prefs["status"] == "active"
    assert prefs["frequency"] == "weekly"
    assert prefs["send_hour"] == 8
    assert prefs["send_weekday"] == 4


def test_the_answer_is_the_same_for_every_address(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    with sessions.begin() as session:
        add_subscriber(session, "active@example.org")
        add_subscriber(session, "left@example.org", status=SubscriberStatus.UNSUBSCRIBED)
        add_subscriber(session, "bounced@example.org", status=SubscriberStatus.BOUNCED)
        session.add(Suppression(email="bounced@example.org", reason="hard bounce"))
    answers = set()
    for address in (
        "new@example.org",
        "active@example.org",
        "left@example.org",
        "bounced@example.org",
    ):
        response = client.post(f"{API}/subscribe", json=signup(address))
        headers = {k: v for k, v in response.headers.items() if k not in ("date",)}
        answers.add((response.status_code, response.content, tuple(sorted(headers.items()))))
    assert len(answers) == 1
    assert {m.to: m.subject for m in mails()} == {
        "new@example.org": "Confirm your subscription to Paper Newsletter",
        "active@example.org": "You are already subscribed to Paper Newsletter",
        "left@example.org": "Confirm your subscription to Paper Newsletter",
    }
    with sessions() as session:
        active = session.scalars(
            select(Subscriber).where(Subscriber.email == "active@example.org")
        ).one()
        assert [i.topic_id for i in active.interests] == ["cs.CL"]  # a stranger changed nothing


def test_a_strangers_signup_changes_nothing_until_confirmed(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    """Issue 12, item 6: an unsubscribed person's record, byte for byte, after a sign-up
    anyone could have sent for their address; the confirmation applies it."""
    with sessions.begin() as session:
        person = add_subscriber(session, "left@example.org", status=SubscriberStatus.UNSUBSCRIBED)
        person.interests.append(Interest(keywords="type theory", weight=0.5))
        person.timezone, person.send_hour, person.max_papers = "America/Lima", 22, 9
        person_id = person.id

    def record() -> dict[str, Any]:
        with sessions() as session:
            row = session.execute(
                select(*Subscriber.__table__.columns).where(Subscriber.id == person_id)
            ).one()
            interests = session.execute(
                select(Interest.id, Interest.topic_id, Interest.keywords, Interest.weight)
                .where(Interest.subscriber_id == person_id)
                .order_by(Interest.id)
            ).all()
        # Everything but the open request itself (its time and the choices it asks for).
        kept = {k: v for k, v in row._mapping.items() if k not in ("signup_at", "pending_signup")}
        return kept | {"interests": [tuple(i) for i in interests]}

    before = record()
    stranger = signup("left@example.org", topics=["cs.CR"], keywords=["spam"], send_hour=3)
    assert client.post(f"{API}/subscribe", json=stranger).status_code == 202
    assert record() == before
    [mail] = mails()
    confirm_token = mail.link("/confirm/").rsplit("/", 1)[1]
    done = client.post(f"{API}/confirm/{confirm_token}")
    assert done.status_code == 200, done.text
    prefs = client.get(f"{API}/subscribers/{done.json()['manage_token']}/preferences").json()
    assert (prefs["status"], prefs["topics"], prefs["keywords"]) == (
        "active",
        ["cs.CR"],
        [{"phrase": "spam", "weight": 1.0}],
    )
    assert (prefs["send_hour"], prefs["timezone"], prefs["frequency"]) == (
        3,
        "Europe/Berlin",
        "weekly",
    )


@pytest.mark.both_databases  # a NUL byte: what each database can store
@pytest.mark.parametrize(
    ("body", "status", "phrase"),
    [
        (signup("not an address"), 422, "does not look like an email address"),
        (signup("a@example.org", topics=[], keywords=[]), 422, "Pick at least one topic"),
        (signup("a@example.org", topics=["no.such.topic"]), 422, "Please pick topics"),
        (signup("a@example.org", timezone="Mars/Olympus"), 422, "time zone"),
        (signup("a@example.org", send_hour=24), 422, "body.send_hour"),
        # The pages' rule for numbers (issue 12, item 7): ASCII digits, nothing else.
        (signup("a@example.org", send_hour="²"), 422, "send_hour: Input should be a whole"),
        (signup("a@example.org", send_hour="٣"), 422, "whole number from 0 to 23"),
        (signup("a@example.org", send_hour="1_0"), 422, "whole number from 0 to 23"),
        (signup("a@example.org", send_hour="7.0"), 422, "whole number from 0 to 23"),
        (signup("a@example.org", send_hour=True), 422, "whole number from 0 to 23"),
        (signup("a@example.org", send_weekday="٣"), 422, "whole number from 0 to 6"),
        (signup("a@example.org", frequency="hourly"), 422, "body.frequency"),
        (signup("a@example.org", keywords=["x" * 201]), 422, "body.keywords.0"),
        (signup("a@example.org", keywords=["nul\x00byte"]), 422, "control characters"),
        (signup("a@example.org", colour="blue"), 422, "body.colour"),
        ({"topics": ["cs.CL"]}, 422, "body.email: Field required"),
        ([1, 2], 422, "body"),
    ],
)
def test_invalid_signups_are_422_with_a_clear_message(
    client: TestClient, sessions: SessionFactory, body: Any, status: int, phrase: str
) -> None:
    answer = assert_error(client.post(f"{API}/subscribe", json=body), status, phrase)
    assert answer["title"] == "Invalid request"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post(
        f"{API}/subscribe", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    body = assert_error(response, 422, "JSON decode error")
    assert body["errors"][0]["type"] == "json_invalid"


def test_form_bodies_are_refused_with_415(
    client: TestClient, sessions: SessionFactory, reader: Reader, mails: Mails
) -> None:
    form = {"email": "form@example.org", "topics": "cs.CL"}
    assert_error(client.post(f"{API}/subscribe", data=form), 415, "JSON bodies only")
    multipart = client.post(f"{API}/subscribe", files={"email": (None, "form@example.org")})
    assert_error(multipart, 415)
    text = client.post(
        f"{API}/subscribers/{reader.manage}/pause",
        content=b"x",
        headers={"content-type": "text/plain"},
    )
    assert_error(text, 415)
    assert subscriber_by_email(sessions, "form@example.org") is None
    assert load(sessions, reader.id).paused_at is None
    assert mails() == []
    # application/*+json and a charset are JSON too.
    typed = client.post(
        f"{API}/subscribe",
        content=b'{"email": "j@example.org", "topics": ["cs.CL"]}',
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )
    assert typed.status_code == 202


def test_expired_and_lapsed_confirmations(
    client: TestClient, sessions: SessionFactory, mails: Mails, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.post(f"{API}/subscribe", json=signup("late@example.org"))
    confirm_token = mails()[0].link("/confirm/").rsplit("/", 1)[1]
    real_time = itsdangerous.timed.time
    later = time.time() + 8 * 24 * 3600
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    assert_error(client.post(f"{API}/confirm/{confirm_token}"), 400, "This link has expired")
    monkeypatch.setattr(itsdangerous.timed, "time", real_time)
    with sessions.begin() as session:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email == "late@example.org")
        ).one()
        subscriber.signup_at = utcnow().replace(year=2020)
    # The token is fine, but it names a sign-up that is not the open one any more.
    lapsed = assert_error(client.post(f"{API}/confirm/{confirm_token}"), 400, "newer")
    assert lapsed["title"] == "This link no longer works"
    assert subscriber_by_email(sessions, "late@example.org").status == SubscriberStatus.PENDING  # type: ignore[union-attr]


# --- tokens -------------------------------------------------------------------------------


def test_bad_tokens_get_the_same_4xx_json_error(
    client: TestClient, sessions: SessionFactory, reader: Reader
) -> None:
    good = reader.manage
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    wrong_purpose = token(Purpose.UNSUBSCRIBE, reader.id)
    revoked = token(Purpose.MANAGE, reader.id, version=0)
    nobody = token(Purpose.MANAGE, reader.id + 1000)
    answers = []
    for bad in (tampered, wrong_purpose, revoked, nobody, "x" * 700, "not-a-token"):
        response = client.get(f"{API}/subscribers/{bad}/preferences")
        body = assert_error(response, 400)
        assert "reader@example.org" not in response.text
        answers.append(body["title"])
    assert set(answers) == {"Invalid token"}
    # A manage token does not unsubscribe, confirm or rate; an unsubscribe token manages nothing.
    assert_error(client.post(f"{API}/unsubscribe/{good}"), 400)
    assert_error(client.post(f"{API}/confirm/{good}"), 400)
    assert_error(client.post(f"{API}/feedback/{good}/1", json={"vote": "more"}), 400)
    assert_error(client.post(f"{API}/subscribers/{wrong_purpose}/pause"), 400)
    assert_error(client.get(f"{API}/subscribers/{wrong_purpose}/export"), 400)
    # A test issue's links (version 0) get a page of their own in a browser; to a program
    # they are invalid tokens like any other, for every purpose.
    for purpose, path, subject in (
        (Purpose.CONFIRM, "confirm/{}", None),
        (Purpose.FEEDBACK, "feedback/{}/1", reader.delivery_id),
        (Purpose.UNSUBSCRIBE, "unsubscribe/{}", None),
    ):
        test_issue = token(purpose, reader.id, version=0, subject=subject)
        body = assert_error(
            client.post(f"{API}/{path.format(test_issue)}", json={"vote": "more"}), 400
        )
        assert body["title"] == "Invalid token"
    after = load(sessions, reader.id)
    assert after.status == SubscriberStatus.ACTIVE
    assert after.paused_at is None


def test_expired_feedback_tokens(
    client: TestClient, sessions: SessionFactory, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = reader.feedback()
    later = time.time() + 181 * 24 * 3600
    monkeypatch.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: later))
    assert_error(client.post(path, json={"vote": "more"}), 400, "expired")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


# --- preferences, pause, export -----------------------------------------------------------


def test_get_and_put_preferences(
    client: TestClient, sessions: SessionFactory, reader: Reader
) -> None:
    url = f"{API}/subscribers/{reader.manage}/preferences"
    before = client.get(url)
    assert before.status_code == 200
    assert before.json() | {"keywords": None} == {
        "status": "active",
        "email": "reader@example.org",
        "pending_email": None,
        "topics": ["cs.CL", "cs.IR"],
        "keywords": None,
        "frequency": "daily",
        "timezone": "UTC",
        "send_hour": 7,
        "send_weekday": 0,
        "max_papers": None,
        "always_send": False,
        "language": "en",
    }
    assert before.json()["keywords"] == [{"phrase": "dense retrieval", "weight": 2.0}]
    wanted = {
        "topics": ["cs.CV"],
        "keywords": [
            {"phrase": "diffusion   models", "weight": 2},
            {"phrase": "video", "weight": 0.5},
            {"phrase": "Video"},
        ],
        "frequency": "weekly",
        "timezone": "America/Chicago",
        "send_hour": 18,
        "send_weekday": 4,
        "max_papers": 5,
        "always_send": True,
        "language": "de",
    }
    after = client.put(url, json=wanted)
    assert after.status_code == 200, after.text
    assert after.json()["keywords"] == [
        {"phrase": "diffusion models", "weight": 2.0},
        {"phrase": "video", "weight": 0.5},
    ]
    assert client.get(url).json() == after.json()
    stored = load(sessions, reader.id)
    assert [i.topic_id for i in stored.interests if i.topic_id] == ["cs.CV"]
    assert (stored.timezone, stored.send_hour, stored.max_papers) == ("America/Chicago", 18, 5)
    assert stored.always_send
    assert stored.locale == "de"
    assert stored.send_weekday == after.json()["send_weekday"] == 4
    # Left out, the weekday stays (as the language does).
    unchanged = client.put(url, json={k: v for k, v in wanted.items() if k != "send_weekday"})
    assert unchanged.json()["send_weekday"] == 4


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"topics": [], "keywords": []}, "Pick at least one topic"),
        ({"topics": ["cs.CL"], "keywords": [{"phrase": "x", "weight": 3}]}, "weight"),
        ({"topics": ["cs.CL"], "language": "xx"}, "language"),
        ({"topics": ["cs.CL"], "max_papers": 51}, "body.max_papers"),
        ({"topics": ["cs.CL"], "send_weekday": 7}, "body.send_weekday"),
        ({"topics": ["cs.CL"], "send_weekday": "friday"}, "body.send_weekday"),
        ({"topics": ["cs.CL"], "max_papers": "٣"}, "max_papers: Input should be a whole"),
        ({"topics": ["cs.CL"], "max_papers": "1_0"}, "whole number from 1 to 50"),
        ({"topics": ["cs.CL"], "send_hour": "²"}, "whole number from 0 to 23"),
        ({"topics": ["cs.CL"], "timezone": "../../etc/passwd"}, "time zone"),
        ({"topics": ["cs.CL"], "keywords": [{"phrase": ""}]}, "body.keywords.0.phrase"),
    ],
)
def test_invalid_preferences_change_nothing(
    client: TestClient, sessions: SessionFactory, reader: Reader, body: Any, phrase: str
) -> None:
    url = f"{API}/subscribers/{reader.manage}/preferences"
    assert_error(client.put(url, json=body), 422, phrase)
    stored = load(sessions, reader.id)
    assert sorted(i.topic_id or "" for i in stored.interests) == ["", "cs.CL", "cs.IR"]
    assert stored.locale == "en"


def test_pause_and_resume(client: TestClient, sessions: SessionFactory, reader: Reader) -> None:
    paused = client.post(f"{API}/subscribers/{reader.manage}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert load(sessions, reader.id).paused_at is not None
    assert client.post(f"{API}/subscribers/{reader.manage}/pause").json()["status"] == "paused"
    resumed = client.post(f"{API}/subscribers/{reader.manage}/resume")
    assert resumed.json()["status"] == "active"
    assert load(sessions, reader.id).paused_at is None


def test_export(client: TestClient, reader: Reader) -> None:
    response = client.get(f"{API}/subscribers/{reader.manage}/export")
    assert response.status_code == 200
    data = response.json()
    assert data["email"] == "reader@example.org"
    assert {"topic": None, "keywords": "dense retrieval", "weight": 2.0} in data["interests"]
    assert [p["rank"] for p in data["issues"][0]["papers"]] == [1, 2, 3]


# --- feedback and unsubscribe -------------------------------------------------------------


def ratings(sessions: SessionFactory) -> list[int]:
    with sessions() as session:
        return list(session.scalars(select(Feedback.value)))


def test_feedback_records_and_the_last_vote_wins(
    client: TestClient, sessions: SessionFactory, reader: Reader
) -> None:
    more = client.post(reader.feedback(2), json={"vote": "more"})
    assert more.status_code == 200, more.text
    assert more.json()["title"] == "Ranked paper 2"
    assert more.json()["vote"] == "more"
    assert ratings(sessions) == [1]
    assert client.post(reader.feedback(2), json={"vote": "more"}).status_code == 200
    assert ratings(sessions) == [1]
    assert client.post(reader.feedback(2), json={"vote": "less"}).status_code == 200
    assert ratings(sessions) == [-1]


def test_feedback_errors(client: TestClient, sessions: SessionFactory, reader: Reader) -> None:
    assert_error(client.post(reader.feedback(9), json={"vote": "more"}), 404, "no such paper")
    assert_error(client.post(reader.feedback(0), json={"vote": "more"}), 422, "path.rank")
    for rank in ("²", "٣", "１", "1_0", "+1"):  # issue 12, item 7
        url = reader.feedback(1).rsplit("/", 1)[0] + "/" + rank
        assert_error(
            client.post(url, json={"vote": "more"}), 422, "path.rank: Input should be a whole"
        )
    assert_error(client.post(reader.feedback(1), json={"vote": "maybe"}), 422, "body.vote")
    assert_error(client.post(reader.feedback(1)), 422, "body: Field required")
    without_issue = token(Purpose.FEEDBACK, reader.id)
    assert_error(client.post(f"{API}/feedback/{without_issue}/1", json={"vote": "more"}), 400)
    assert ratings(sessions) == []


def test_unsubscribe_is_idempotent(
    client: TestClient, sessions: SessionFactory, reader: Reader
) -> None:
    bare = TestClient(client.app)
    url = f"{API}/unsubscribe/{token(Purpose.UNSUBSCRIBE, reader.id)}"
    for _ in range(2):
        response = bare.post(url)
        assert response.status_code == 200
        assert response.json() == {"status": "unsubscribed"}
    assert load(sessions, reader.id).status == SubscriberStatus.UNSUBSCRIBED
    prefs = bare.get(f"{API}/subscribers/{reader.manage}/preferences")
    assert prefs.json()["status"] == "unsubscribed"


# --- limits and failures ------------------------------------------------------------------


@pytest.mark.parametrize("options", [WebOptions(subscribe_per_ip="2/minute")])
def test_subscribing_is_rate_limited_per_client(
    client: TestClient, sessions: SessionFactory, options: WebOptions
) -> None:
    for index in range(2):
        assert (
            client.post(f"{API}/subscribe", json=signup(f"r{index}@example.org")).status_code == 202
        )
    limited = client.post(f"{API}/subscribe", json=signup("r9@example.org"))
    assert_error(limited, 429, "too often")
    assert subscriber_by_email(sessions, "r9@example.org") is None


@pytest.mark.parametrize("options", [WebOptions(posts_per_ip="3/minute")])
def test_every_write_counts_against_the_post_limit(
    client: TestClient, sessions: SessionFactory, reader: Reader, options: WebOptions
) -> None:
    pause = f"{API}/subscribers/{reader.manage}/pause"
    resume = f"{API}/subscribers/{reader.manage}/resume"
    for url in (pause, resume, pause):
        assert client.post(url).status_code == 200
    assert_error(client.post(resume), 429, "Please wait")
    assert load(sessions, reader.id).paused_at is not None  # the refused resume did nothing
    assert client.get(f"{API}/subscribers/{reader.manage}/preferences").status_code == 200


def test_unknown_operations_and_methods_are_json(client: TestClient) -> None:
    assert_error(client.get(f"{API}/nothing-here"), 404, "no such operation")
    wrong = client.get(f"{API}/subscribe")
    assert_error(wrong, 405)
    assert "POST" in wrong.headers["allow"]
    # The pages keep their HTML errors.
    page = client.get("/nothing-here")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")


def test_a_crash_is_a_json_500_that_names_nothing(
    client: TestClient, reader: Reader, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(accounts, "export_data", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    response = quiet.get(f"{API}/subscribers/{reader.manage}/export")
    assert_error(response, 500, "Nothing was changed")
    assert "secret detail" not in response.text
