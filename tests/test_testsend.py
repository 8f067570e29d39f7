"""Test sends and previews: a real issue through the production path, and no state changed.

Every test compares a snapshot of every table of the database (SQLite and PostgreSQL)
before and after.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Callable, Iterator
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import dkim
import nacl.encoding
import nacl.signing
import pytest
from sqlalchemy import Engine, MetaData, select, update

from newsletter.db import SessionFactory
from newsletter.delivery import testsend
from newsletter.delivery.preview import preview
from newsletter.delivery.testsend import IssueRequest, TestSendError, compose_test
from newsletter.errors import InvalidAddress, NewsletterError
from newsletter.mail.capture import MaildirServer
from newsletter.mail.faulty import FaultyServer
from newsletter.models import Delivery, DeliveryItem, Paper, Subscriber, utcnow
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.ingest import ingest_file
from newsletter.planning.corpus import refit
from newsletter.planning.editions import plan_edition
from newsletter.planning.latest import plan_options
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.subscribers.roster import build_input, upsert_subscriber
from newsletter.tokens import Purpose, Tokens
from tests.conftest import TEST_SECRET, make_settings

EDITION = date(2026, 5, 27)
OPERATOR = "operator@example.net"
SUBSCRIBERS = {
    "ada@example.org": ["cs.CL"],
    "grace@example.org": ["cs.CV"],
}
DOMAIN = "example.org"
SELECTOR = "news"
ARXIV_URL = re.compile(r"https?://arxiv\.org/abs/[0-9.]+")


def snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table of the database, as it is now."""
    metadata = MetaData()
    with engine.connect() as connection:
        metadata.reflect(bind=connection)
        return {
            table.name: sorted(repr(tuple(row)) for row in connection.execute(table.select()))
            for table in metadata.sorted_tables
        }


@pytest.fixture
def populated(sessions: SessionFactory, daily_file: Path) -> SessionFactory:
    catalogue = load_catalogue()
    with sessions.begin() as session:
        ingest_file(session, daily_file, today=EDITION)
        for email, topics in SUBSCRIBERS.items():
            upsert_subscriber(session, build_input(catalogue, email=email, topics=topics))
    return sessions


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    signing = nacl.signing.SigningKey.generate()
    path = tmp_path_factory.mktemp("dkim") / "ed25519.key"
    path.write_bytes(signing.encode(encoder=nacl.encoding.Base64Encoder) + b"\n")
    public = signing.verify_key.encode(encoder=nacl.encoding.Base64Encoder)
    return path, b"v=DKIM1; k=ed25519; p=" + public


def dns_for(record: bytes) -> Callable[..., bytes | None]:
    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        if name.rstrip(b".") == f"{SELECTOR}._domainkey.{DOMAIN}".encode():
            return record
        return None

    return lookup


@pytest.fixture
def server() -> Iterator[FaultyServer]:
    with FaultyServer() as smtp:
        yield smtp


def settings_for(database_url: str, port: int, **changes: Any) -> Settings:
    return make_settings(
        database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5.0, **changes
    )


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    content: str = part.get_content()
    return content


def stored_urls(sessions: SessionFactory, email: str) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(Paper.url)
                .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                .join(Delivery, Delivery.id == DeliveryItem.delivery_id)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .where(Subscriber.email == email)
                .order_by(DeliveryItem.rank)
            )
        )


def urls_in(message: EmailMessage) -> list[str]:
    return list(dict.fromkeys(ARXIV_URL.findall(text_of(message))))


def test_test_send_as_a_subscriber_is_their_real_issue_and_changes_nothing(
    populated: SessionFactory,
    engine: Engine,
    database_url: str,
    server: FaultyServer,
    dkim_key: tuple[Path, bytes],
) -> None:
    key_file, record = dkim_key
    settings = settings_for(
        database_url,
        server.port,
        dkim_domain=DOMAIN,
        dkim_selector=SELECTOR,
        dkim_key_file=key_file,
        dkim_algorithm="ed25519-sha256",
    )
    before = snapshot(engine)
    result = testsend.send_test_issue(
        settings, to=OPERATOR, as_email="Ada@Example.org", edition=EDITION
    )
    assert snapshot(engine) == before
    assert OPERATOR in result
    assert "250" in result
    assert [m.rcpt_tos for m in server.messages] == [[OPERATOR]]
    raw = server.messages[0].data
    assert dkim.verify(raw, dnsfunc=dns_for(record))
    message = parse(raw)
    assert message["Subject"].startswith("[TEST] ")
    assert message["To"].addresses[0].addr_spec == OPERATOR
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    sent_urls = urls_in(message)
    assert sent_urls
    # The production planner picks the same papers in the same order.
    with populated.begin() as session:
        plan_edition(session, EDITION, options=plan_options(settings))
    assert sent_urls == stored_urls(populated, "ada@example.org")


def test_the_links_of_a_test_issue_act_for_nobody(
    populated: SessionFactory, database_url: str, server: FaultyServer
) -> None:
    testsend.send_test_issue(
        settings_for(database_url, server.port), to=OPERATOR, as_email="ada@example.org"
    )
    message = parse(server.messages[0].data)
    unsubscribe = message["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
    token = unsubscribe.rsplit("/", 1)[1]
    data = Tokens(TEST_SECRET).read(Purpose.UNSUBSCRIBE, token)
    with populated() as session:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.email == "ada@example.org")
        ).one()
    assert data.subscriber_id == subscriber.id
    assert data.version != subscriber.token_version  # revoked from the start
    with populated() as session:
        delivery_ids = set(session.scalars(select(Delivery.id)))
    assert not any(str(i) in message["Message-ID"] for i in delivery_ids)


def test_test_send_of_a_planned_issue_shows_the_planned_picks(
    populated: SessionFactory, engine: Engine, database_url: str, server: FaultyServer
) -> None:
    settings = settings_for(database_url, server.port)
    with populated.begin() as session:
        plan_edition(session, EDITION, options=plan_options(settings))
    planned = stored_urls(populated, "grace@example.org")
    before = snapshot(engine)
    testsend.send_test_issue(settings, to=OPERATOR, as_email="grace@example.org")  # newest edition
    assert snapshot(engine) == before  # still pending, not sent, no attempt counted
    assert urls_in(parse(server.messages[0].data)) == planned


def test_test_send_of_an_ad_hoc_profile_to_a_maildir(
    populated: SessionFactory, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    before = snapshot(engine)
    with MaildirServer(tmp_path / "maildir") as smtp:
        result = testsend.send_test_issue(
            settings_for(database_url, smtp.port),
            to=OPERATOR,
            topics=["cs.RO"],
            keywords=["legged locomotion", "reinforcement learning"],
        )
        assert smtp.received == 1
    assert snapshot(engine) == before
    assert "cs.RO" in result
    stored = list(mailbox.Maildir(tmp_path / "maildir", create=False))
    assert len(stored) == 1
    message = parse(stored[0].as_bytes())
    assert message["Subject"].startswith("[TEST] ")
    assert message["X-Envelope-To"] == OPERATOR
    text = text_of(message)
    assert "legged locomotion" in text  # the interests line names the keywords
    assert urls_in(message)


def test_a_refusing_relay_is_reported_and_nothing_is_recorded(
    populated: SessionFactory, engine: Engine, database_url: str
) -> None:
    before = snapshot(engine)
    with (
        FaultyServer(rcpt_replies={OPERATOR: "550 5.1.1 no such user"}) as smtp,
        pytest.raises(TestSendError, match="550"),
    ):
        testsend.send_test_issue(
            settings_for(database_url, smtp.port), to=OPERATOR, as_email="ada@example.org"
        )
    # In production a 550 bounces and suppresses the address; a test send does neither.
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"as_email": "nobody@example.org"}, TestSendError, "no subscriber"),
        ({}, TestSendError, "--as EMAIL"),
        ({"as_email": "ada@example.org", "topics": ["cs.CL"]}, TestSendError, "not both"),
        ({"topics": ["no.such.topic"]}, NewsletterError, "unknown topic"),
        ({"as_email": "ada@example.org", "edition": date(2020, 1, 1)}, TestSendError, "nothing"),
    ],
)
def test_test_send_refuses_what_it_cannot_do(
    populated: SessionFactory,
    engine: Engine,
    database_url: str,
    server: FaultyServer,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    before = snapshot(engine)
    with pytest.raises(error, match=message):
        testsend.send_test_issue(settings_for(database_url, server.port), to=OPERATOR, **kwargs)
    assert server.messages == []
    assert snapshot(engine) == before


def test_an_invalid_recipient_is_refused(
    populated: SessionFactory, database_url: str, server: FaultyServer
) -> None:
    with pytest.raises(InvalidAddress):
        testsend.send_test_issue(
            settings_for(database_url, server.port), to="not an address", as_email="ada@example.org"
        )
    assert server.messages == []


def test_preview_writes_the_issue_html_and_changes_nothing(
    populated: SessionFactory, engine: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, 25)
    before = snapshot(engine)
    out = tmp_path / "issue.html"
    html = preview(settings, as_email="ada@example.org", edition=EDITION, out=out)
    assert out.read_text(encoding="utf-8") == html
    assert snapshot(engine) == before
    assert html.lstrip().lower().startswith("<!doctype html")
    urls = list(dict.fromkeys(ARXIV_URL.findall(html)))
    with populated.begin() as session:
        plan_edition(session, EDITION, options=plan_options(settings))
    assert urls == stored_urls(populated, "ada@example.org")
    # Without --out it is only returned (the CLI prints it); now from the planned delivery.
    again = preview(settings, as_email="ada@example.org", edition=EDITION)
    assert list(dict.fromkeys(ARXIV_URL.findall(again))) == urls
    assert "Unsubscribe" in again


def test_preview_is_in_the_subscribers_language(
    populated: SessionFactory, database_url: str
) -> None:
    with populated.begin() as session:
        session.execute(
            update(Subscriber).where(Subscriber.email == "ada@example.org").values(locale="de")
        )
    html = preview(settings_for(database_url, 25), as_email="ada@example.org", edition=EDITION)
    assert "Abbestellen" in html
    assert "Mehr davon" in html
    # A test send of their issue is in German too, an ad-hoc profile in English.
    service = Service.open(settings_for(database_url, 25))
    try:
        german, english = (
            compose_test(service, request, to="ops@example.org", now=utcnow())
            for request in (
                IssueRequest(as_email="ada@example.org", edition=EDITION),
                IssueRequest(topics=("cs.CL",), edition=EDITION),
            )
        )
        assert b"Abbestellen" in german.message
        assert b"Abbestellen" not in english.message
        assert b"Unsubscribe" in english.message
    finally:
        service.close()


def files_in(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def test_with_a_stored_model_the_test_issue_ranks_with_it_and_writes_no_file(
    populated: SessionFactory,
    engine: Engine,
    database_url: str,
    server: FaultyServer,
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    settings = settings_for(database_url, server.port, model_dir=models)
    with populated() as session:
        refit(session, models, corpus_limit=settings.corpus_limit)
    files = files_in(models)
    assert files
    before = snapshot(engine)
    testsend.send_test_issue(settings, to=OPERATOR, as_email="ada@example.org", edition=EDITION)
    assert files_in(models) == files
    assert snapshot(engine) == before
    with populated.begin() as session:
        plan_edition(session, EDITION, options=plan_options(settings))
    assert urls_in(parse(server.messages[0].data)) == stored_urls(populated, "ada@example.org")


def test_without_a_stored_model_yet_a_test_send_fits_in_memory(
    populated: SessionFactory, database_url: str, server: FaultyServer, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    settings = settings_for(database_url, server.port, model_dir=models)
    testsend.send_test_issue(settings, to=OPERATOR, topics=["cs.CL"])
    assert files_in(models) == {}  # the planner would have stored a model; a test does not
    assert urls_in(parse(server.messages[0].data))
