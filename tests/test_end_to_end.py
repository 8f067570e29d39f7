"""The demo's path on both databases: ingest, subscribe, plan, send to a real SMTP server."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import date
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from sqlalchemy import select

from newsletter.cli.demo import DEMO_SUBSCRIBERS
from newsletter.db import make_engine
from newsletter.mail.capture import MaildirServer
from newsletter.models import Delivery, DeliveryStatus, Paper
from newsletter.resources import demo_feed_dir
from newsletter.service import Service
from newsletter.subscribers.roster import build_input, upsert_subscriber
from recommender import Document, build_profiles, fit_model
from tests.conftest import make_settings, reset_database

EDITION = date(2026, 5, 29)


@pytest.fixture(scope="module")
def delivered(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, list[EmailMessage]]]:
    """One edition delivered end to end; the tests only read what it left."""
    engine = make_engine(database_url)
    reset_database(engine)
    engine.dispose()
    maildir = tmp_path_factory.mktemp("e2e") / "maildir"
    with MaildirServer(maildir) as server:
        settings = make_settings(
            database_url,
            smtp_host=server.host,
            smtp_port=server.port,
            public_url="https://papers.example.org",
        )
        service = Service.open(settings)
        try:
            for path in sorted(demo_feed_dir().glob("*.jsonl.gz")):
                service.ingest(path, today=EDITION)
            with service.sessions.begin() as session:
                for raw in DEMO_SUBSCRIBERS:
                    upsert_subscriber(session, build_input(service.catalogue, **raw))
            assert service.plan(EDITION).planned == len(DEMO_SUBSCRIBERS)
            summary = service.send(EDITION)
            assert summary.sent == len(DEMO_SUBSCRIBERS)
            assert server.received == len(DEMO_SUBSCRIBERS)
        except BaseException:
            service.close()
            raise
    box = mailbox.Maildir(maildir, create=False)
    parser = BytesParser(policy=policy.default)
    messages = [cast(EmailMessage, parser.parsebytes(box.get_bytes(k))) for k in box.iterkeys()]
    try:
        yield service, messages
    finally:
        service.close()


def test_one_valid_message_per_subscriber(delivered: tuple[Service, list[EmailMessage]]) -> None:
    service, messages = delivered
    recipients = sorted(m["X-Envelope-To"] for m in messages)
    assert recipients == sorted(s["email"] for s in DEMO_SUBSCRIBERS)
    message_ids = set()
    for message in messages:
        assert not message.defects
        assert message.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Id"):
            assert message[header], header
        assert message["To"].addresses[0].addr_spec == message["X-Envelope-To"]
        assert message["From"].addresses[0].addr_spec == "newsletter@example.org"
        assert message["List-Unsubscribe"].startswith("<https://papers.example.org/unsubscribe/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        message_ids.add(message["Message-ID"])
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "https://papers.example.org/manage/" in html
        assert "https://papers.example.org/manage/" in text
        assert "arxiv.org/abs/" in html
    assert len(message_ids) == len(messages)
    with service.sessions() as session:
        stored = {d.message_id for d in session.scalars(select(Delivery))}
        statuses = {d.status for d in session.scalars(select(Delivery))}
    assert stored == message_ids
    assert statuses == {DeliveryStatus.SENT}


def test_non_ascii_name_survives(delivered: tuple[Service, list[EmailMessage]]) -> None:
    _, messages = delivered
    names = {m["To"].addresses[0].display_name for m in messages}
    assert "Jürgen Müller" in names


def test_top_paper_is_closer_to_the_subscriber_than_a_random_paper(
    delivered: tuple[Service, list[EmailMessage]],
) -> None:
    service, _ = delivered
    with service.sessions() as session:
        papers = session.scalars(select(Paper).order_by(Paper.id)).all()
        top = {d.subscriber.email: d.items[0].paper_id for d in session.scalars(select(Delivery))}
    # An independent check of the ranking: embed every subscriber's interests and
    # every paper, then compare the chosen top paper with the whole pool.
    model = fit_model([Document(p.title, p.abstract) for p in papers])
    vectors = model.transform_documents([Document(p.title, p.abstract) for p in papers])
    row_of = {p.id: i for i, p in enumerate(papers)}
    catalogue = service.catalogue
    for raw in DEMO_SUBSCRIBERS:
        texts = [catalogue[t].interest_text for t in raw["topics"]] + list(raw.get("keywords", []))
        profile = build_profiles(
            model,
            texts=texts,
            rows=[0] * len(texts),
            cols=range(len(texts)),
            weights=[1.0] * len(texts),
            n_profiles=1,
        )
        scores = (vectors @ profile.T).toarray().ravel()
        chosen = scores[row_of[top[raw["email"]]]]
        random_papers = np.random.default_rng(7).choice(scores, size=200, replace=False)
        assert chosen > np.percentile(random_papers, 95), raw["email"]
        assert chosen > random_papers.mean() * 3, raw["email"]


def test_sending_again_sends_nothing(
    delivered: tuple[Service, list[EmailMessage]], tmp_path: Path
) -> None:
    service, _ = delivered
    with MaildirServer(tmp_path / "again") as server:
        settings = make_settings(
            str(service.engine.url.render_as_string(hide_password=False)),
            smtp_host=server.host,
            smtp_port=server.port,
        )
        again = Service.open(settings)
        try:
            summary = again.send(EDITION)
        finally:
            again.close()
        assert server.received == 0
    assert summary.sent == 0
