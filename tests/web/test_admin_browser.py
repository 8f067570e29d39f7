"""The admin area in a real browser (Debian's Chromium, Playwright) after a real send.

Three real listing days are ingested, planned and sent over SMTP to a server that
refuses two of the readers (one for good, one for now); an operator then logs in and
sees those deliveries in the overview, the charts, the editions page and its failures,
searches the subscribers, imports a CSV of them, reads the topics catalogue, sends a
test issue and previews one; /metrics tells the same story. Screenshots at 1280 and
375 px go to screenshots/admin/ (override with ADMIN_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import email
import email.policy
import os
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    FilePayload,
    Page,
    ViewportSize,
    sync_playwright,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select

from newsletter.db import SessionFactory, make_session_factory
from newsletter.mail.faulty import FaultyServer
from newsletter.models import Delivery, Interest, Paper, SubscriberStatus, utcnow
from newsletter.operators import create_operator
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import DAILY, REPO, make_settings
from tests.web.helpers import add_subscriber, local_listener, uvicorn_serving

pytestmark = pytest.mark.slow  # drives Chromium (Playwright)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = REPO / "screenshots" / "admin"
SHOTS = type(SHOTS)(os.environ.get("ADMIN_SCREENSHOTS_DIR", SHOTS))
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 375, "height": 760}
DAYS = [date(2026, 5, 25), date(2026, 5, 26), date(2026, 5, 27)]
PASSWORD = "a very long operator password"
REFUSED = "gone@example.org"
GREYLISTED = "slow@example.org"
READERS = {
    "ada@example.org": ("cs.CL", "cs.LG"),
    "alan@example.org": ("cs.LG", "stat.ML"),
    "grace@example.org": ("cs.SE",),
    "edsger@example.org": ("cs.DS", "cs.LG"),
    "barbara@example.org": ("cs.CL",),
    "claude@example.org": ("cs.IT", "cs.LG"),
    "katherine@example.org": ("cs.CV", "cs.LG"),
    REFUSED: ("cs.CL",),
    GREYLISTED: ("cs.AI",),
}


@dataclass
class Live:
    url: str
    settings: Settings
    smtp: FaultyServer


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def live(engine: Engine, database_url: str) -> Iterator[Live]:
    listener, url = local_listener()
    smtp_server = FaultyServer(
        rcpt_replies={
            REFUSED: "550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
            GREYLISTED: "451 4.7.1 Greylisted, please try again in 300 seconds",
        }
    )
    with smtp_server as smtp:
        settings = make_settings(
            database_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            public_url=url,
            trusted_proxies="",  # the browser and the scrape connect directly, no proxy
        )
        app = create_app(settings, options=WebOptions())
        with uvicorn_serving(app, listener):
            yield Live(url, settings, smtp)


def readers(sessions: SessionFactory) -> None:
    """Subscribers who joined over the last weeks, and some who never confirmed or left."""
    now = utcnow()
    with sessions.begin() as session:
        for index, (address, topics) in enumerate(READERS.items()):
            subscriber = add_subscriber(session, address, topics=topics)
            subscriber.confirmed_at = now - timedelta(days=24 - index * 3)
            subscriber.created_at = subscriber.confirmed_at - timedelta(hours=1)
            subscriber.always_send = True
            subscriber.name = address.split("@")[0].capitalize()
        add_subscriber(session, "unsure@example.org", status=SubscriberStatus.PENDING)
        left = add_subscriber(session, "left@example.org", status=SubscriberStatus.UNSUBSCRIBED)
        left.interests.append(Interest(keywords="quantum error correction", weight=1.0))
        create_operator(session, "ops", PASSWORD)


def send_editions(settings: Settings) -> None:
    """Ingest, plan and send three real listing days (in a thread: it runs its own loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        service = Service.open(settings)
        try:
            for day in DAYS:
                service.ingest(DAILY / f"{day}.jsonl", today=day)
                service.plan(day)
                service.send(day)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            service.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=300)
    assert not worker.is_alive()
    assert not errors, errors


@pytest.fixture
def shots(database_url: str) -> bool:
    """Screenshots once (on SQLite): the pages look the same on both databases."""
    return database_url.startswith("sqlite")


def snap(page: Page, name: str, *, enabled: bool) -> None:
    if not enabled:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-1280.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SHOTS / f"{name}-375.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def snap_part(page: Page, selector: str, name: str, *, enabled: bool) -> None:
    """One part of a page (at both widths), when a full page would bury it."""
    if not enabled:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(selector).screenshot(path=str(SHOTS / f"{name}-1280.png"))
    page.set_viewport_size(PHONE)
    page.locator(selector).screenshot(path=str(SHOTS / f"{name}-375.png"))
    page.set_viewport_size(DESKTOP)


IMPORT_CSV = (
    "email,name,topics,keywords,timezone,frequency,source\n"
    "marie@example.org,Marie Curie,cs.LG,,Europe/Paris,weekly,conference\n"
    "lise@example.org,Lise Meitner,cs.CL;stat.ML,nuclear data,Europe/Vienna,daily,mailing list\n"
    # An update: her full name (what the file has no column for, always-send, stays).
    "ada@example.org,Ada Lovelace,cs.CL;cs.LG,,UTC,daily,\n"
    "not-an-address,Nobody,cs.CL,,UTC,daily,\n"
    "emmy@example.org,Emmy Noether,math.XX,,UTC,daily,\n"
)


def papers_in(sessions: SessionFactory, category: str) -> int:
    """Papers first seen in the last week listed in ``category``, counted in Python."""
    since = utcnow() - timedelta(days=7)
    with sessions() as session:
        return sum(
            1
            for categories, seen in session.execute(select(Paper.categories, Paper.first_seen))
            if category in categories and seen >= since
        )


def scrape(url: str) -> dict[str, float]:
    """The live /metrics (this test is on the same machine, so no token is needed)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counts(sessions: SessionFactory) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        return {status.value: count for status, count in rows}


def test_an_operator_sees_the_real_figures(
    browser: Browser, live: Live, engine: Engine, shots: bool
) -> None:
    db = make_session_factory(engine)
    readers(db)
    send_editions(live.settings)
    figures = counts(db)
    assert figures["sent"] == 7 * len(DAYS)
    assert figures["bounced"] == 1  # refused once, then suppressed
    assert figures["retry"] == len(DAYS)

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    try:
        # Strangers meet the login page; a wrong password is refused.
        page.goto(live.url + "/admin/editions")
        assert page.locator("h1").inner_text() == "Operator log in"
        page.fill("#username", "ops")
        page.fill("#password", "not the password")
        page.click("button:has-text('Log in')")
        assert "do not match" in page.locator("[role=alert]").inner_text()
        snap(page, "01-login", enabled=shots)
        page.fill("#username", "ops")
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Log in')")
        assert page.url == live.url + "/admin/editions"

        # The editions page: one row per day, with the counts of the database.
        for day in DAYS:
            row = page.locator(f"tr[data-edition='{day}']")
            assert row.locator("td[data-outcome=sent]").inner_text() == "7"
            assert row.locator("td[data-outcome=retry]").inner_text() == "1"
        first = page.locator(f"tr[data-edition='{DAYS[0]}']")
        assert first.locator("td[data-outcome=bounced]").inner_text() == "1"
        assert first.locator("td.total").inner_text() == str(len(READERS))
        # The refused reader's address is marked bounced: no issue is planned for it again.
        later = page.locator(f"tr[data-edition='{DAYS[2]}']")
        assert later.locator("td[data-outcome=bounced]").inner_text() == "0"
        assert later.locator("td.total").inner_text() == str(len(READERS) - 1)
        failures = page.locator("#failure-list").inner_text()
        assert "User unknown" in failures
        assert "Greylisted" in failures
        assert "550" in failures
        snap(page, "02-editions", enabled=shots)
        snap_part(page, "#failures", "02b-failures", enabled=shots)

        # The overview: tiles and charts.
        page.click("nav >> text=Overview")
        assert page.locator("#tile-sent").inner_text() == str(figures["sent"])
        assert page.locator("#tile-active").inner_text() == str(len(READERS) - 1)
        bars = page.locator("#chart-deliveries rect[data-outcome=sent]")
        assert bars.count() == len(DAYS)
        assert [bars.nth(i).get_attribute("data-count") for i in range(3)] == ["7"] * 3
        top_topic = page.locator("#chart-topics rect").first
        assert top_topic.get_attribute("data-topic") == "cs.LG"
        assert top_topic.get_attribute("data-count") == "5"
        box = page.locator("#chart-deliveries svg").bounding_box()
        assert box is not None
        assert box["width"] > 600
        # Two readers refused or deferred, the others accepted: the relay works.
        assert page.locator("#problems").count() == 0
        assert "Relay: working" in page.locator("#relay-last-error").inner_text()
        snap(page, "03-overview", enabled=shots)

        # Subscribers: a search, the status filter.
        page.click("nav >> text=Subscribers")
        assert page.locator("#match-count").inner_text() == "11 subscribers."
        page.fill("#q", "ada")
        page.click("button:has-text('Search')")
        assert page.locator("#match-count").inner_text() == "1 subscriber matches."
        page.fill("#q", "")
        page.select_option("#status", "active")
        page.click("button:has-text('Search')")
        assert page.locator("#subscriber-list tbody tr").count() == len(READERS) - 1
        snap(page, "04-subscribers", enabled=shots)

        # One subscriber's page: the greylisted reader's issues wait for a retry, with
        # the relay's reply; the refused one is suppressed.
        page.fill("#q", GREYLISTED)
        page.click("button:has-text('Search')")
        page.click(f"#subscriber-list a:has-text('{GREYLISTED}')")
        assert page.locator("h1").inner_text() == GREYLISTED
        assert page.locator("#status").inner_text() == "active"
        issues = page.locator("#deliveries tbody tr")
        assert issues.count() == len(DAYS)
        assert "Greylisted" in page.locator("#deliveries").inner_text()
        snap(page, "04d-subscriber", enabled=shots)
        page.goto(live.url + "/admin/subscribers?q=" + REFUSED)
        page.click(f"#subscriber-list a:has-text('{REFUSED}')")
        assert page.locator("#suppressed").inner_text() == "yes"
        assert "550" in page.locator("#bounces").inner_text()
        snap_part(page, "#actions", "04e-subscriber-actions", enabled=shots)
        page.click("nav >> text=Subscribers")

        # Import a CSV through the form on the subscribers page: good rows in, bad ones named.
        assert "without a confirmation mail" in page.locator("#import-consent").inner_text()
        page.set_input_files(
            "#file",
            files=FilePayload(
                name="from-the-old-list.csv", mimeType="text/csv", buffer=IMPORT_CSV.encode()
            ),
        )
        page.click("button:has-text('Import subscribers')")
        assert page.locator("h1").inner_text() == "Import subscribers"
        assert page.locator("#import-created").inner_text() == "2"
        assert page.locator("#import-updated").inner_text() == "1"
        assert page.locator("#import-skipped").inner_text() == "2"
        problems = page.locator("#import-problems tbody tr")
        assert problems.count() == 2
        assert problems.nth(0).locator("td.line").inner_text() == "5"
        assert "invalid address" in problems.nth(0).inner_text()
        assert problems.nth(1).locator("td.line").inner_text() == "6"
        assert "unknown topic 'math.XX'" in problems.nth(1).inner_text()
        assert "source" in page.locator("#import-ignored").inner_text()
        snap(page, "04b-import", enabled=shots)
        page.click("nav >> text=Subscribers")
        assert page.locator("#match-count").inner_text() == "13 subscribers."

        # The topics catalogue: followers (the import's included) and the week's papers.
        page.click("nav >> text=Topics")
        lg = page.locator("tr[data-topic='cs.LG']")
        assert lg.locator("td.followers").inner_text() == "6"
        assert lg.locator("td.papers").inner_text() == str(papers_in(db, "cs.LG"))
        assert papers_in(db, "cs.LG") > 50
        cl = page.locator("tr[data-topic='cs.CL']")
        assert cl.locator("td.followers").inner_text() == "3"  # gone@ bounced: not counted
        assert cl.locator("td.papers").inner_text() == str(papers_in(db, "cs.CL"))
        page.click("th >> text=Followers")
        first = page.locator("#topic-list tbody tr").first
        assert first.get_attribute("data-topic") == "cs.LG"
        snap(page, "04c-topics", enabled=shots)

        # A test send through the production path; nothing recorded.
        before = counts(db)
        received = live.smtp.received
        page.click("nav >> text=Test send")
        page.fill("#to", "operator@example.org")
        page.fill("#as_email", "ada@example.org")
        page.select_option("#edition", str(DAYS[-1]))
        page.click("button:has-text('Send test issue')")
        assert "sent to operator@example.org" in page.locator("[role=status]").inner_text()
        assert live.smtp.received == received + 1
        message = live.smtp.messages[-1]
        assert message.rcpt_tos == ["operator@example.org"]
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        assert str(parsed["Subject"]).startswith("[TEST] ")
        assert counts(db) == before
        snap(page, "05-test-send", enabled=shots)

        # A preview of a subscriber's issue.
        page.click("nav >> text=Preview")
        snap(page, "06-preview-form", enabled=shots)
        page.fill("#as", "alan@example.org")
        page.click("button:has-text('Show the issue')")
        assert page.locator("#whose-status").inner_text() == "active"
        issue = page.frame_locator("iframe.preview-frame").locator("body")
        assert "new paper" in issue.inner_text()
        snap(page, "07-preview-issue", enabled=shots)

        # /metrics: the sends of this test, and how late they went (no due_at: created_at).
        metrics = scrape(live.url)
        assert metrics["newsletter_deliveries[('status', 'sent')]"] == figures["sent"]
        assert metrics["newsletter_send_latency_seconds_count[]"] == figures["sent"]
        assert metrics["newsletter_send_latency_seconds_bucket[('le', '+Inf')]"] == figures["sent"]
        assert metrics["newsletter_last_ingest_timestamp_seconds[]"] > 0
        assert metrics["newsletter_relay_failing[]"] == 0
        assert metrics["newsletter_smtp_errors_24h[]"] >= 1
        assert metrics["newsletter_editions_stuck[]"] == 0

        # Log out: the pages are closed again.
        page.goto(live.url + "/admin")
        page.click("button:has-text('Log out')")
        assert page.locator("h1").inner_text() == "Operator log in"
        page.goto(live.url + "/admin/subscribers")
        assert page.locator("h1").inner_text() == "Operator log in"
        assert violations == []
    finally:
        context.close()
