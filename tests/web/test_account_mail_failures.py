"""Account mails that could not be sent are recorded where operators look.

The sign-up page answers before its confirmation mail goes out (the same answer for
every address), so when the relay refuses the mail, or is down, or the address cannot
travel, only the operator can find out: `newsletter status`, /metrics, the admin area.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from newsletter import status as stats
from newsletter.cli import app as cli_app
from newsletter.db import SessionFactory
from newsletter.mail.failures import record_mail_failure
from newsletter.mail.faulty import FaultyServer
from newsletter.models import AccountMailFailure, utcnow
from newsletter.settings import Settings
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import TEST_SECRET, make_settings
from tests.web.helpers import post_form, subscribe_form
from tests.web.test_admin import admin, operator  # noqa: F401 - fixtures

# HTTP behaviour on SQLite (tests/conftest.py, sqlite_only); the storage of the
# failures (a table of their own, migration 0012) on both databases.
pytestmark = pytest.mark.sqlite_only

REFUSED = "nobody@example.org"


@pytest.fixture
def relay() -> Iterator[FaultyServer]:
    """A relay without SMTPUTF8 that refuses one recipient."""
    with FaultyServer(rcpt_replies={REFUSED: "550 5.1.1 no such user"}, smtputf8=False) as server:
        yield server


def app_for(database_url: str, relay: FaultyServer | None, **overrides: object) -> TestClient:
    settings = make_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=relay.port if relay else 9,  # port 9 (discard): nothing listens
        smtp_timeout=2.0,
        public_url="http://testserver",
        trusted_proxies="",
        **overrides,
    )
    options = WebOptions(
        subscribe_per_ip="1000/minute", mails_per_address="1000/minute", posts_per_ip="1000/minute"
    )
    return TestClient(create_app(settings, options=options), client=("127.0.0.1", 1))


def failures(sessions: SessionFactory, count: int) -> list[AccountMailFailure]:
    """The stored failures, once ``count`` of them are there (mails go out after the answer)."""
    deadline = time.monotonic() + 10
    while True:
        with sessions() as session:
            rows = list(session.scalars(select(AccountMailFailure).order_by(AccountMailFailure.id)))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def sign_up(client: TestClient, address: str) -> str:
    response = post_form(client, "/", "/subscribe", subscribe_form(address))
    assert response.status_code == 200
    text: str = response.text
    return text


@pytest.mark.both_databases
def test_refused_undeliverable_and_unreachable_confirmations_are_recorded(
    engine: Engine, sessions: SessionFactory, database_url: str, relay: FaultyServer
) -> None:
    with app_for(database_url, relay) as client:
        answers = {
            address: sign_up(client, address)
            for address in ("ok@example.org", REFUSED, "idn@bücher.de", "üser@example.org")
        }
    # Every address gets the same page, whatever happens to its mail.
    assert len({"Check your inbox" in page for page in answers.values()}) == 1
    delivered = {rcpt for message in relay.messages for rcpt in message.rcpt_tos}
    assert delivered == {"ok@example.org", "idn@xn--bcher-kva.de"}  # the IDN domain in ASCII
    refused, unsendable = failures(sessions, 2)
    assert (refused.template, refused.email, refused.code) == ("confirm", REFUSED, 550)
    assert "no such user" in refused.reason
    assert (unsendable.email, unsendable.code) == ("üser@example.org", None)
    assert "SMTPUTF8" in unsendable.reason

    with app_for(database_url, None) as down:  # the relay is down
        sign_up(down, "later@example.org")
    *_, unreachable = failures(sessions, 3)
    assert (unreachable.email, unreachable.code) == ("later@example.org", None)
    assert "127.0.0.1:9" in unreachable.reason

    # Where operators look: status (and its JSON), /metrics.
    with sessions() as session:
        figures = stats.status(session, now=utcnow())
    assert figures.mail_failures_day == 3
    assert [f.email for f in figures.mail_failures] == [
        "later@example.org",
        "üser@example.org",
        REFUSED,
    ]
    env = {"NEWSLETTER_DATABASE_URL": database_url, "NEWSLETTER_SECRET_KEY": TEST_SECRET}
    shown = CliRunner().invoke(cli_app, ["status"], env=env, terminal_width=80)
    assert shown.exit_code == 0, shown.output
    assert "Account mails not sent (3 in the last 24 h)" in shown.output
    assert REFUSED in shown.output
    as_json = CliRunner().invoke(cli_app, ["status", "--json"], env=env)
    assert '"last_24h": 3' in as_json.output
    with app_for(database_url, relay) as client:
        metrics = client.get("/metrics").text
    assert "newsletter_account_mail_failures_24h 3.0" in metrics


def test_a_database_that_cannot_store_the_failure_still_logs_it(
    web_settings: Settings, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import asyncio

    from newsletter.db import make_engine, make_session_factory
    from newsletter.web.mailer import Mail, Mailer

    # A database without the table: storing the failure fails too.
    broken = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    settings = web_settings.model_copy(update={"smtp_port": 9, "smtp_timeout": 1.0})
    mailer = Mailer(settings, list_name="Papers", sessions=broken)
    mail = Mail(to="someone@example.org", template="confirm", context={"confirm_url": "x"})
    assert asyncio.run(mailer.send(mail)) is False
    assert "confirm mail to someone@example.org not sent" in caplog.text
    assert "could not store the failure" in caplog.text


def test_the_admin_editions_page_lists_account_mails_not_sent(
    admin: TestClient, sessions: SessionFactory
) -> None:
    assert "None: every account mail was accepted" in admin.get("/admin/editions").text
    with sessions.begin() as session:
        record_mail_failure(
            session,
            template="confirm",
            email="x<script>@example.org",
            code=550,
            reason="5.1.1 <x@example.org>: user unknown",
            now=utcnow(),
        )
    page = admin.get("/admin/editions").text
    listed = page.split('id="mail-failure-list"')[1].split("</table>")[0]
    assert listed.count("<tr>") == 2  # the header and the failure
    assert "x&lt;script&gt;@example.org" in listed
    assert "<code>550</code> 5.1.1 &lt;x@example.org&gt;: user unknown" in listed


@pytest.mark.both_databases
def test_failures_are_forgotten_with_the_subscriber_and_after_90_days(
    sessions: SessionFactory,
) -> None:
    from datetime import timedelta

    from newsletter.mail.failures import purge_mail_failures
    from newsletter.models import Subscriber, SubscriberStatus
    from newsletter.subscribers.accounts import delete_subscriber

    now = utcnow()
    with sessions.begin() as session:
        for email, age in (
            ("gone@example.org", 1),
            ("old@example.org", 91),
            ("new@example.org", 89),
        ):
            record_mail_failure(
                session,
                template="confirm",
                email=email,
                code=550,
                reason="refused",
                now=now - timedelta(days=age),
            )
        session.add(Subscriber(email="gone@example.org", status=SubscriberStatus.ACTIVE))
    with sessions.begin() as session:
        gone = session.scalars(select(Subscriber)).one()
        delete_subscriber(session, gone)  # "delete my data"
    with sessions.begin() as session:
        assert purge_mail_failures(session, now=now) == 1
    with sessions() as session:
        left = list(session.scalars(select(AccountMailFailure.email)))
    assert left == ["new@example.org"]
