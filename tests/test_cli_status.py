"""``newsletter status`` and the ``--json`` outputs, in process against SQLite and
PostgreSQL, with a real SMTP server taking the issues."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from newsletter import status as stats
from newsletter.cli import app
from newsletter.db import SessionFactory
from newsletter.errors import EditionError
from newsletter.mail.capture import MaildirServer
from newsletter.models import Delivery, DeliveryStatus, Subscriber, utcnow
from tests.conftest import DAILY, TEST_SECRET

EDITION = "2026-05-27"
PEOPLE = (
    ("ada@example.org", "cs.CL"),
    ("grace@example.org", "cs.CV"),
    ("alan@example.org", "cs.AI"),
)


class Cli:
    def __init__(self, database_url: str) -> None:
        self.runner = CliRunner()
        self.env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET}

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self.runner.invoke(app, list(args), env={**self.env, **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        result = self(*args, "--json", env=env)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert isinstance(data, dict)
        return data


@pytest.fixture
def cli(database_url: str, sessions: SessionFactory) -> Cli:
    return Cli(database_url)


def by_email(session: Session, email: str) -> Delivery:
    return session.scalars(select(Delivery).join(Subscriber).where(Subscriber.email == email)).one()


def test_json_outputs_and_status_through_a_whole_edition(
    cli: Cli, sessions: SessionFactory, tmp_path: Path
) -> None:
    empty = cli.json("status")
    assert empty["queue"]["due_now"] == 0
    assert empty["editions"] == []
    assert empty["activity"] == {"last_ingest": None, "last_plan": None, "last_sent": None}

    topics = cli.json("topics")["topics"]
    assert {"id": "cs.CL", "name": next(t["name"] for t in topics if t["id"] == "cs.CL")} in topics

    ingested = cli.json("ingest", str(DAILY / f"{EDITION}.jsonl"))
    assert ingested["new"] == 319
    assert ingested["files"][0]["path"].endswith(f"{EDITION}.jsonl")
    assert ingested["skipped"] == len(ingested["files"][0]["problems"])

    for email, topic in PEOPLE:
        assert cli("subscribers", "add", email, "--topic", topic).exit_code == 0
    listed = cli.json("subscribers", "list")
    assert listed["total"] == 3
    ada = next(s for s in listed["subscribers"] if s["email"] == "ada@example.org")
    assert ada["status"] == "active"
    assert ada["topics"] == ["cs.CL"]

    planned = cli.json("plan", "--edition", EDITION)
    assert planned["planned"] == 3
    assert planned["edition"] == EDITION
    assert {pick["email"] for pick in planned["top_picks"]} == {email for email, _ in PEOPLE}

    before = cli.json("status")
    assert before["subscribers"]["active"] == 3
    assert before["deliveries"]["pending"] == 3
    assert before["queue"]["due_now"] == 3
    assert before["editions"][0]["date"] == EDITION
    assert before["editions"][0]["counts"]["pending"] == 3
    assert before["activity"]["last_plan"] is not None

    with MaildirServer(tmp_path / "maildir") as server:
        smtp = {"NEWSLETTER_SMTP_HOST": server.host, "NEWSLETTER_SMTP_PORT": str(server.port)}
        sent = cli.json("send", "--edition", EDITION, env=smtp)
    assert sent["sent"] == 3
    assert sent["failed"] == 0
    assert sent["failures"] == []
    assert sent["edition"] == EDITION

    after = cli.json("status", "--edition", EDITION)
    assert after["edition"] == EDITION
    assert after["deliveries"]["sent"] == 3
    assert after["queue"]["sent_today"] == 3
    assert after["queue"]["due_now"] == 0
    assert after["editions"][0]["status"] == "sent"

    # Turn the three into what an operator looks for: a hard failure, a retry waiting
    # for its backoff, and a claim whose worker died.
    now = utcnow()
    with sessions.begin() as session:
        failed = by_email(session, "ada@example.org")
        failed.status, failed.last_smtp_code = DeliveryStatus.FAILED, 550
        failed.last_smtp_reply = "5.1.1 no such user"
        retry = by_email(session, "grace@example.org")
        retry.status, retry.last_smtp_code = DeliveryStatus.RETRY, 451
        retry.last_smtp_reply, retry.next_attempt_at = "4.7.1 try later", now + timedelta(hours=1)
        claimed = by_email(session, "alan@example.org")
        claimed.status, claimed.lease_owner = DeliveryStatus.CLAIMED, "gone:1"
        claimed.lease_until = now - timedelta(minutes=5)
    figures = cli.json("status")
    assert figures["queue"] == {
        "due_now": 0,
        "scheduled_later": 1,
        "claimed_live": 0,
        "claimed_expired": 1,
        "sent_today": 0,
    }
    # Newest first: deliveries are planned in subscriber order, so grace's is newer.
    assert [(f["email"], f["code"], f["reply"]) for f in figures["failures"]] == [
        ("grace@example.org", 451, "4.7.1 try later"),
        ("ada@example.org", 550, "5.1.1 no such user"),
    ]
    newest = cli.json("status", "--failures", "1")["failures"]
    assert [f["email"] for f in newest] == ["grace@example.org"]

    text = cli("status")
    assert text.exit_code == 0, text.output
    for words in ("Subscribers", "due now", "lease expired", "Newest failures", EDITION):
        assert words in text.stdout
    assert "failed 550" in text.stdout
    assert "retry 451" in text.stdout


def test_retry_that_is_due_counts_as_due_now(cli: Cli, sessions: SessionFactory) -> None:
    assert cli("ingest", str(DAILY / f"{EDITION}.jsonl")).exit_code == 0
    assert cli("subscribers", "add", "ada@example.org", "--topic", "cs.CL").exit_code == 0
    assert cli("plan", "--edition", EDITION).exit_code == 0
    with sessions.begin() as session:
        session.execute(
            update(Delivery).values(
                status=DeliveryStatus.RETRY, next_attempt_at=utcnow() - timedelta(minutes=1)
            )
        )
    with sessions() as session:
        queue = stats.queue(session, now=utcnow())
    assert (queue.due_now, queue.scheduled_later) == (1, 0)
    # One minute earlier the same retry was not due yet.
    with sessions() as session:
        earlier = stats.queue(session, now=utcnow() - timedelta(minutes=2))
    assert (earlier.due_now, earlier.scheduled_later) == (0, 1)


def test_status_of_an_edition_never_planned_fails(cli: Cli) -> None:
    with pytest.raises(EditionError, match="edition 2026-01-01 has not been planned"):
        cli("status", "--edition", "2026-01-01")
