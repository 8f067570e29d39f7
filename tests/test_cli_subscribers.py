"""``newsletter subscribers show | unsubscribe | delete``: one subscriber from the command
line, over the same casework functions as the admin subscriber page."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select
from typer.testing import CliRunner, Result

from newsletter.cli import app
from newsletter.cli.app import exit_code_for
from newsletter.db import SessionFactory
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
from newsletter.subscribers import accounts
from newsletter.subscribers.casework import CaseworkError
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber


def run(database_url: str, *args: str, input: str | None = None) -> Result:
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    return CliRunner().invoke(app, list(args), env=env, input=input)


@pytest.fixture
def ada(sessions: SessionFactory) -> int:
    with sessions.begin() as session:
        ada = add_subscriber(session, "ada@example.org", topics=("cs.CL",))
        ada.interests[0].topic_id = None
        ada.interests[0].keywords = "retrieval augmented generation"
        sent = add_delivery(session, ada, day=date(2026, 5, 26), papers=2)
        retry = add_delivery(session, ada, day=date(2026, 5, 27), status=DeliveryStatus.RETRY)
        retry.last_smtp_code, retry.last_smtp_reply = 451, "4.7.1 greylisted"
        paper_id = sent.items[0].paper_id
        session.add(Feedback(subscriber_id=ada.id, paper_id=paper_id, value=1))
        session.add(
            Bounce(
                email="ada@example.org",
                kind=BounceKind.SOFT,
                source="dsn",
                code=452,
                reply="4.2.2 mailbox full",
            )
        )
        return ada.id


@pytest.mark.both_databases
def test_show_unsubscribe_and_delete_one_subscriber(
    database_url: str, sessions: SessionFactory, ada: int
) -> None:
    shown = run(database_url, "subscribers", "show", "ADA@example.org")
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "ada@example.org: active" in text
    assert "retrieval augmented generation ×1" in text
    assert "2026-05-27 retry, 3 papers, 0 tries 451 4.7.1 greylisted" in text
    assert "more 2605." in text
    assert "mailbox full" in text
    data = json.loads(run(database_url, "subscribers", "show", "ada@example.org", "--json").stdout)
    assert [d["status"] for d in data["deliveries"]] == ["retry", "sent"]
    assert data["keywords"] == [["retrieval augmented generation", 1.0]]

    gone = run(database_url, "subscribers", "unsubscribe", "ada@example.org", "--reason", "asked")
    assert gone.exit_code == 0
    assert "ada@example.org: unsubscribed" in gone.stdout
    again = run(database_url, "subscribers", "unsubscribe", "ada@example.org")
    assert "was not subscribed, nothing changed" in again.stdout
    with sessions() as session:
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        assert subscriber.status == SubscriberStatus.UNSUBSCRIBED
        # Its issue waiting for a retry is cancelled (accounts.unsubscribe's rule).
        statuses = sorted(d.status.value for d in session.scalars(select(Delivery)))
        assert statuses == ["sent", "suppressed"]

    kept = run(database_url, "subscribers", "delete", "ada@example.org", input="n\n")
    assert kept.exit_code == 1
    assert "nothing deleted" in kept.output
    with sessions() as session:
        assert session.get(Subscriber, ada) is not None
    deleted = run(database_url, "subscribers", "delete", "ada@example.org", "--yes")
    assert deleted.exit_code == 0
    assert "ada@example.org: deleted" in deleted.stdout
    with sessions() as session:
        assert session.get(Subscriber, ada) is None
        assert session.scalars(select(Delivery)).all() == []
        actions = session.scalars(select(AdminAction).order_by(AdminAction.id)).all()
        assert [(a.action, a.reason) for a in actions] == [
            ("unsubscribe", "asked"),
            ("delete", ""),
        ]
        assert all(a.operator.startswith("cli") and a.email == "ada@example.org" for a in actions)


@pytest.mark.sqlite_only
def test_an_unknown_address_is_a_clear_error(database_url: str, sessions: SessionFactory) -> None:
    for command in ("show", "unsubscribe", "delete"):
        result = run(database_url, "subscribers", command, "nobody@example.org")
        # The console script prints it as "error: ..." with exit status 1 (cli.app.main).
        assert isinstance(result.exception, CaseworkError)
        assert str(result.exception) == "no subscriber nobody@example.org"
        assert exit_code_for(result.exception) == 1


@pytest.mark.sqlite_only
def test_a_suppressed_subscriber_shows_it(
    database_url: str, sessions: SessionFactory, ada: int
) -> None:
    with sessions.begin() as session:
        session.add(Suppression(email="ada@example.org", reason="hard bounce", created_at=utcnow()))
    shown = run(database_url, "subscribers", "show", "ada@example.org")
    assert "SUPPRESSED since" in shown.stdout
    assert "hard bounce" in shown.stdout


@pytest.mark.sqlite_only
def test_the_readers_export_holds_their_bounces_and_what_operators_did(
    database_url: str, sessions: SessionFactory, ada: int
) -> None:
    """Everything stored about a reader is in their export (it lacked both before)."""
    run(database_url, "subscribers", "unsubscribe", "ada@example.org", "--reason", "asked by mail")
    with sessions() as session:
        subscriber = session.get(Subscriber, ada)
        assert subscriber is not None
        data = accounts.export_data(session, subscriber)
    assert [(b["kind"], b["code"], b["reply"]) for b in data["bounces"]] == [
        ("soft", 452, "4.2.2 mailbox full")
    ]
    [action] = data["operator_actions"]
    assert (action["action"], action["reason"]) == ("unsubscribe", "asked by mail")
    assert action["at"]
    json.dumps(data)  # JSON-ready
