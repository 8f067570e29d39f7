"""``/metrics`` and ``/healthz``: figures read from the database at scrape time."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine, select
from starlette.requests import Request

from newsletter.db import SessionFactory, make_session_factory
from newsletter.logs import JsonFormatter, configure_logging
from newsletter.models import Delivery, DeliveryStatus, Edition, Paper, SubscriberStatus, utcnow
from newsletter.settings import Settings
from newsletter.web.app import create_app
from newsletter.web.observability import LATENCY_BUCKETS
from newsletter.web.options import WebOptions
from newsletter.web.state import WebState, client_ip
from tests.conftest import make_settings
from tests.web.helpers import add_delivery, add_subscriber

LOCAL = ("127.0.0.1", 50000)
TOKEN = "scrape-token-0123456789abcdef"


@pytest.fixture
def direct_settings(web_settings: Settings) -> Settings:
    """No reverse proxy in front: clients connect to the app directly."""
    return web_settings.model_copy(update={"trusted_proxies": ""})


@pytest.fixture
def client(engine: Engine, direct_settings: Settings, options: WebOptions) -> Iterator[TestClient]:
    """The app, asked from this machine (where /metrics answers without a token)."""
    with TestClient(create_app(direct_settings, options=options), client=LOCAL) as test_client:
        yield test_client


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


# Send latency: sent_at - coalesce(due_at, created_at), over the last 24 hours.


def test_send_latency_histogram_counts_known_deliveries(
    client: TestClient, sessions: SessionFactory
) -> None:
    now = utcnow()
    # (seconds late, status, sent this long ago, due_at known)
    cases = [
        (0.5, DeliveryStatus.SENT, timedelta(hours=1), True),
        (-30.0, DeliveryStatus.SENT, timedelta(hours=1), True),  # early: counts as 0
        (3.0, DeliveryStatus.SENT, timedelta(hours=2), True),
        (45.0, DeliveryStatus.SENT, timedelta(hours=3), True),
        (200.0, DeliveryStatus.SENT, timedelta(hours=4), False),  # no due_at: created_at
        (2000.0, DeliveryStatus.SENT, timedelta(hours=23), True),
        (5000.0, DeliveryStatus.SENT, timedelta(minutes=5), True),  # over an hour: +Inf only
        (10.0, DeliveryStatus.SENT, timedelta(hours=25), True),  # too long ago
    ]
    with sessions.begin() as session:
        for index, (late, status, ago, has_due) in enumerate(cases):
            person = add_subscriber(session, f"l{index}@example.org")
            delivery = add_delivery(session, person, status=status, papers=0)
            delivery.sent_at = now - ago
            due = delivery.sent_at - timedelta(seconds=late)
            delivery.due_at = due if has_due else None
            delivery.created_at = due if not has_due else due - timedelta(days=2)
        waiting = add_delivery(session, add_subscriber(session, "w@example.org"), papers=0)
        waiting.status = DeliveryStatus.PENDING
        waiting.due_at = now - timedelta(hours=2)
    values = samples(client)
    bucket = {
        dict(labels)["le"]: value
        for (name, labels), value in values.items()
        if name == "newsletter_send_latency_seconds_bucket"
    }
    assert list(bucket) == [repr(b) for b in LATENCY_BUCKETS] + ["+Inf"]
    expected = {
        "1.0": 2,
        "5.0": 3,
        "15.0": 3,
        "30.0": 3,
        "60.0": 4,
        "120.0": 4,
        "300.0": 5,
        "600.0": 5,
        "900.0": 5,
        "1800.0": 5,
        "3600.0": 6,
        "+Inf": 7,
    }
    assert bucket == expected
    assert values[("newsletter_send_latency_seconds_count", ())] == 7
    total = values[("newsletter_send_latency_seconds_sum", ())]
    assert total == pytest.approx(0.5 + 0 + 3 + 45 + 200 + 2000 + 5000, abs=0.05)


def test_send_latency_of_nothing_sent(client: TestClient) -> None:
    values = samples(client)
    assert values[("newsletter_send_latency_seconds_count", ())] == 0
    assert values[("newsletter_send_latency_seconds_bucket", (("le", "+Inf"),))] == 0
    assert values[("newsletter_send_latency_seconds_sum", ())] == 0


# Who may scrape.


@pytest.mark.parametrize(
    ("address", "headers", "status"),
    [
        ("127.0.0.1", {}, 200),
        ("127.0.0.2", {}, 200),
        ("::1", {}, 200),
        ("::ffff:127.0.0.1", {}, 200),
        ("192.0.2.7", {}, 403),
        ("testclient", {}, 403),
        ("2001:db8::1", {}, 403),
        # Through a reverse proxy on this machine: a request from anywhere.
        ("127.0.0.1", {"X-Forwarded-For": "192.0.2.7"}, 403),
        ("127.0.0.1", {"Forwarded": "for=192.0.2.7"}, 403),
    ],
)
def test_without_a_token_metrics_answer_local_clients_only(
    engine: Engine,
    direct_settings: Settings,
    options: WebOptions,
    address: str,
    headers: dict[str, str],
    status: int,
) -> None:
    app = create_app(direct_settings, options=options)
    with TestClient(app, client=(address, 40000)) as visitor:
        response = visitor.get("/metrics", headers=headers)
    assert response.status_code == status
    if status == 403:
        assert "set metrics_token" in response.text
        assert "newsletter_deliveries" not in response.text
    else:
        assert "newsletter_send_latency_seconds_bucket" in response.text


@pytest.mark.parametrize(
    ("address", "headers"),
    [
        # The proxy on this machine sends no X-Forwarded-For: the visitor could be anyone.
        ("127.0.0.1", {}),
        ("::1", {}),
        # It does send it: a visitor from elsewhere, or one claiming to be local.
        ("127.0.0.1", {"X-Forwarded-For": "192.0.2.7"}),
        ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}),
    ],
)
def test_behind_a_trusted_proxy_metrics_need_the_token(
    engine: Engine,
    web_settings: Settings,
    options: WebOptions,
    address: str,
    headers: dict[str, str],
) -> None:
    assert web_settings.trusted_proxies == "127.0.0.1, ::1"  # the default
    with TestClient(create_app(web_settings, options=options), client=(address, 1)) as visitor:
        response = visitor.get("/metrics", headers=headers)
    assert response.status_code == 403
    assert "newsletter_deliveries" not in response.text
    assert "trusted_proxies" in response.text


def test_a_trusted_proxy_names_the_client_and_an_untrusted_one_does_not(
    engine: Engine, web_settings: Settings, options: WebOptions
) -> None:
    """The rate limits count per client: the address a trusted proxy forwards for,
    never one a stranger writes into the header."""
    seen: list[str] = []
    app = create_app(web_settings, options=options)

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, str]:
        seen.append(client_ip(request))
        return {}

    forwarded = {"X-Forwarded-For": "198.51.100.4"}
    with TestClient(app, client=("127.0.0.1", 1)) as via_proxy:
        via_proxy.get("/whoami", headers=forwarded)
    with TestClient(app, client=("192.0.2.9", 1)) as stranger:
        stranger.get("/whoami", headers=forwarded)
    assert seen == ["198.51.100.4", "192.0.2.9"]


def test_https_public_url_sends_hsts(
    engine: Engine, web_settings: Settings, options: WebOptions
) -> None:
    secure = web_settings.model_copy(update={"public_url": "https://papers.example.org"})
    with TestClient(create_app(secure, options=options)) as browser:
        assert browser.get("/").headers["strict-transport-security"] == "max-age=31536000"
    with TestClient(create_app(web_settings, options=options)) as browser:
        assert "strict-transport-security" not in browser.get("/").headers


@pytest.fixture
def guarded(engine: Engine, database_url: str, options: WebOptions) -> Iterator[TestClient]:
    settings = make_settings(database_url, metrics_token=TOKEN)
    with TestClient(create_app(settings, options=options), client=LOCAL) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
def test_with_a_token_metrics_need_it_even_locally(
    guarded: TestClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = guarded.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "newsletter_" not in response.text


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer  {TOKEN} "])
def test_the_token_opens_metrics_from_anywhere(
    engine: Engine, database_url: str, options: WebOptions, authorization: str
) -> None:
    settings = make_settings(database_url, metrics_token=TOKEN)
    with TestClient(create_app(settings, options=options), client=("192.0.2.7", 1)) as remote:
        assert remote.get("/metrics").status_code == 401
        response = remote.get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 200
    assert "newsletter_queue_depth" in response.text


def test_healthz_stays_open(guarded: TestClient) -> None:
    assert guarded.get("/healthz").status_code == 200
