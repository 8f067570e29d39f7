"""The real pages in a real browser: Debian's Chromium driven by Playwright against a
uvicorn server on 127.0.0.1, a real SMTP server catching the mail, both databases.

The main flow runs with JavaScript off (every page must work without it); a short
second test checks the one script (time zone preselection) and that the CSP blocks
nothing the pages need. Screenshots of each page, at desktop and phone widths, go
to screenshots/web/ (override with WEB_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright
from sqlalchemy import Engine, select

from newsletter.db import make_session_factory
from newsletter.mail.capture import MaildirServer
from newsletter.models import Delivery, DeliveryItem, Feedback, Subscriber, SubscriberStatus
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import DAILY, REPO, TEST_SECRET, make_settings
from tests.web.helpers import Mail, local_listener, read_mail, uvicorn_serving

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
EDITION = date(2026, 5, 27)
SHOTS = Path(os.environ.get("WEB_SCREENSHOTS_DIR", REPO / "screenshots" / "web"))
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 375, "height": 760}


@dataclass
class Live:
    url: str
    settings: Settings
    maildir: Path

    def mails(self) -> list[Mail]:
        return read_mail(self.maildir) if self.maildir.exists() else []


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def live(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[Live]:
    """The app under uvicorn on a free port, mailing through a Maildir SMTP server."""
    listener, url = local_listener()
    maildir = tmp_path / "maildir"
    with MaildirServer(maildir) as smtp:
        settings = make_settings(
            database_url, smtp_host=smtp.host, smtp_port=smtp.port, public_url=url
        )
        app = create_app(settings, options=WebOptions(subscribe_per_ip="100/minute"))
        with uvicorn_serving(app, listener):
            yield Live(url, settings, maildir)


@pytest.fixture
def shots(database_url: str) -> bool:
    """Screenshots once (on SQLite): the pages look the same on both databases."""
    return database_url.startswith("sqlite")


def snap(page: Page, name: str, *, enabled: bool) -> None:
    if not enabled:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SHOTS / f"{name}-375.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def wait_for_mail(live: Live, count: int) -> list[Mail]:
    deadline = time.monotonic() + 10
    while len(mails := live.mails()) < count:
        assert time.monotonic() < deadline, f"expected {count} mails, got {len(mails)}"
        time.sleep(0.05)
    return mails


def send_edition(settings: Settings) -> None:
    """Ingest a real listing day, plan and send it (in a thread: it runs its own loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        service = Service.open(settings)
        try:
            service.ingest(DAILY / f"{EDITION}.jsonl", today=EDITION)
            service.plan(EDITION)
            service.send(EDITION)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            service.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert not errors, errors


def feedback_url(live: Live, issue: Mail, subscriber: Subscriber, delivery_id: int) -> str:
    """The issue's "more like this" link of its first paper (made as the issue makes it)."""
    found = re.search(r"https?://\S+/feedback/\S+/1/more", issue.text)
    if found:
        return found.group(0)
    token = Tokens(TEST_SECRET).make(
        Purpose.FEEDBACK, TokenData(subscriber.id, subscriber.token_version, delivery_id)
    )
    return f"{live.url}/feedback/{token}/1/more"


def test_from_sign_up_to_one_click_unsubscribe(
    browser: Browser, live: Live, engine: Engine, shots: bool
) -> None:
    db = make_session_factory(engine)
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
    page = context.new_page()
    try:
        # Subscribe.
        page.goto(live.url + "/")
        snap(page, "01-subscribe", enabled=shots)
        page.fill("#email", "ada@example.org")
        page.check("input[value='cs.CL']")
        page.fill("#keywords", "large language models\nevaluation")
        page.select_option("#timezone", "Europe/Berlin")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"
        snap(page, "02-check-inbox", enabled=shots)

        # The confirmation mail, its link, the confirmation.
        [confirmation] = wait_for_mail(live, 1)
        assert confirmation.to == "ada@example.org"
        page.goto(confirmation.link("/confirm/"))
        snap(page, "03-confirm", enabled=shots)
        page.click("text=Confirm my subscription")
        assert page.locator("h1").inner_text() == "You are subscribed"
        snap(page, "04-confirmed", enabled=shots)

        # Preferences: change topics.
        page.click("text=Fine-tune your preferences")
        assert page.url.startswith(live.url + "/manage/")
        page.check("input[value='cs.AI']")
        page.uncheck("input[value='cs.CL']")
        page.fill("input[name=keyword] >> nth=2", "reasoning")
        page.click("text=Save preferences")
        assert "Your preferences are saved" in page.locator("[role=status]").inner_text()
        snap(page, "05-preferences", enabled=shots)
        with db() as session:
            ada = session.scalars(
                select(Subscriber).where(Subscriber.email == "ada@example.org")
            ).one()
            assert ada.status == SubscriberStatus.ACTIVE
            assert ada.timezone == "Europe/Berlin"
            assert sorted(i.topic_id or i.keywords or "" for i in ada.interests) == [
                "cs.AI",
                "evaluation",
                "large language models",
                "reasoning",
            ]

        # A real issue, planned and sent through SMTP.
        send_edition(live.settings)
        issue = wait_for_mail(live, 2)[1]
        with db() as session:
            delivery = session.scalars(
                select(Delivery).where(Delivery.subscriber_id == ada.id)
            ).one()
            first_paper = session.scalars(
                select(DeliveryItem.paper_id).where(
                    DeliveryItem.delivery_id == delivery.id, DeliveryItem.rank == 1
                )
            ).one()
        page.goto(issue.link("/view/"))
        assert "new paper" in page.locator("body").inner_text()
        snap(page, "06-view-online", enabled=shots)

        # Feedback on the first paper.
        page.goto(feedback_url(live, issue, ada, delivery.id))
        snap(page, "07-feedback", enabled=shots)
        page.click("text=Yes, more like this")
        assert page.locator("h1").inner_text() == "Noted: more like this"
        with db() as session:
            rating = session.scalars(select(Feedback).where(Feedback.subscriber_id == ada.id)).one()
            assert (rating.paper_id, rating.value) == (first_paper, 1)

        # The List-Unsubscribe URL of the issue: the page, then the one-click button.
        unsubscribe_url = issue.headers["List-Unsubscribe"].strip("<>")
        assert issue.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        page.goto(unsubscribe_url)
        assert page.locator("h1").inner_text() == "Unsubscribe?"
        snap(page, "08-unsubscribe", enabled=shots)
        with db() as session:
            assert session.get_one(Subscriber, ada.id).status == SubscriberStatus.ACTIVE
        page.click("button:has-text('Unsubscribe')")
        assert page.locator("h1").inner_text() == "You are unsubscribed"
        snap(page, "09-unsubscribed", enabled=shots)
        with db() as session:
            assert session.get_one(Subscriber, ada.id).status == SubscriberStatus.UNSUBSCRIBED
        # What a mail provider does with the same URL: the RFC 8058 POST, no cookies.
        with httpx.Client() as provider:
            again = provider.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"})
        assert again.status_code == 200
    finally:
        context.close()


def test_pages_with_javascript_follow_the_csp(browser: Browser, live: Live, shots: bool) -> None:
    context = browser.new_context(timezone_id="Asia/Tokyo", viewport=DESKTOP)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    try:
        page.goto(live.url + "/")
        assert page.input_value("#timezone") == "Asia/Tokyo"  # preselected by tz.js
        page.goto(live.url + "/manage/not-a-token")
        assert page.locator("h1").inner_text() == "This link does not work"
        snap(page, "10-bad-link", enabled=shots)
        # No CSP violation, no missing file: only the bad link itself failed.
        assert failed == [live.url + "/manage/not-a-token"]
        assert [p for p in problems if "status of 400" not in p] == []
    finally:
        context.close()
