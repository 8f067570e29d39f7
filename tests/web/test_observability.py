"""``/metrics`` and ``/healthz``: figures read from the database at scrape time."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select

from newsletter.db import SessionFactory, make_session_factory
from newsletter.models import Delivery, DeliveryStatus, Edition, Paper, SubscriberStatus, utcnow
from newsletter.web.observability import JsonFormatter, configure_logging
from newsletter.web.state import WebState
from tests.web.helpers import add_delivery, add_subscriber


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_of_an_empty_database(client: TestClient) -> None:
    values = samples(client)
    assert values[("newsletter_deliveries", (("status", "sent"),))] == 0
    assert values[("newsletter_queue_depth", ())] == 0
    assert values[("newsletter_last_plan_timestamp_seconds", ())] == 0
    assert values[("newsletter_last_ingest_timestamp_seconds", ())] == 0
    assert values[("newsletter_database_up", ())] == 1


def test_metrics_follow_the_database(client: TestClient, sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        people = [add_subscriber(session, f"r{i}@example.org") for i in range(5)]
        add_subscriber(session, "wait@example.org", status=SubscriberStatus.PENDING)
        day = date(2026, 5, 27)
        for person, status in zip(
            people,
            [
                DeliveryStatus.SENT,
                DeliveryStatus.SENT,
                DeliveryStatus.PENDING,
                DeliveryStatus.RETRY,
                DeliveryStatus.BOUNCED,
            ],
            strict=True,
        ):
            add_delivery(session, person, day=day, status=status, papers=1)
        sent_at = utcnow() - timedelta(minutes=5)
        for delivery in session.scalars(select(Delivery)):
            if delivery.status == DeliveryStatus.SENT:
                delivery.sent_at = sent_at
            if delivery.status == DeliveryStatus.RETRY:
                delivery.next_attempt_at = utcnow() + timedelta(hours=1)  # not due yet
        planned_at = session.scalars(select(Edition.created_at)).one()
        ingested_at = max(session.scalars(select(Paper.updated_at)))
    values = samples(client)
    deliveries = {
        labels[0][1]: value
        for (name, labels), value in values.items()
        if name == "newsletter_deliveries"
    }
    assert deliveries == {
        "pending": 1,
        "claimed": 0,
        "retry": 1,
        "sent": 2,
        "bounced": 1,
        "failed": 0,
        "suppressed": 0,
    }
    assert values[("newsletter_subscribers", (("status", "active"),))] == 5
    assert values[("newsletter_subscribers", (("status", "pending"),))] == 1
    assert values[("newsletter_queue_depth", ())] == 1  # the retry is not due yet
    assert values[("newsletter_last_sent_timestamp_seconds", ())] == sent_at.timestamp()
    assert values[("newsletter_last_plan_timestamp_seconds", ())] == planned_at.timestamp()
    assert values[("newsletter_last_ingest_timestamp_seconds", ())] == ingested_at.timestamp()

    # A scrape reads the database again: a due retry joins the queue.
    with sessions.begin() as session:
        retry = session.scalars(
            select(Delivery).where(Delivery.status == DeliveryStatus.RETRY)
        ).one()
        retry.next_attempt_at = utcnow() - timedelta(seconds=1)
    assert samples(client)[("newsletter_queue_depth", ())] == 2


def _unreachable() -> SessionFactory:
    # Nothing listens on port 1: the connection is refused at once.
    return make_session_factory(
        create_engine(
            "postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
        )
    )


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert response.headers["cache-control"] == "no-store"

    state = client.app.state.web  # type: ignore[attr-defined]
    assert isinstance(state, WebState)
    client.app.state.web = dataclasses.replace(state, sessions=_unreachable())  # type: ignore[attr-defined]
    down = client.get("/healthz")
    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": "unreachable"}
    client.app.state.web = state  # type: ignore[attr-defined]
    assert client.get("/healthz").status_code == 200


def test_metrics_say_when_the_database_is_down(client: TestClient) -> None:
    from newsletter.web.observability import DatabaseCollector

    families = list(DatabaseCollector(_unreachable()).collect())
    assert [family.name for family in families] == ["newsletter_database_up"]
    assert families[0].samples[0].value == 0


def test_json_logs_are_one_object_per_line() -> None:
    formatter = JsonFormatter()
    record = logging.makeLogRecord(
        {
            "name": "newsletter.delivery",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "delivery %d refused:\n%s",
            "args": (7, "550 user unknown"),
            "created": 1780000000.25,
            "edition": date(2026, 5, 27),
            "attempts": 3,
        }
    )
    line = formatter.format(record)
    assert "\n" not in line
    event = json.loads(line)
    assert event == {
        "ts": "2026-05-28T20:26:40.250+00:00",
        "level": "warning",
        "logger": "newsletter.delivery",
        "message": "delivery 7 refused:\n550 user unknown",
        "edition": "2026-05-27",
        "attempts": 3,
    }
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.makeLogRecord(
            {"msg": "crashed", "levelname": "ERROR", "exc_info": sys.exc_info()}
        )
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]


def test_configure_logging_switches_format(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    try:
        configure_logging(json_lines=True)
        logging.getLogger("newsletter.test").info("hello", extra={"subscriber": 5})
        event = json.loads(capsys.readouterr().err.strip())
        assert (event["message"], event["subscriber"], event["level"]) == ("hello", 5, "info")
        configure_logging(json_lines=False)
        logging.getLogger("newsletter.test").info("plain")
        assert capsys.readouterr().err.strip().endswith("INFO newsletter.test: plain")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)
