"""The real pages in a real browser: Debian's Chromium driven by Playwright against a
uvicorn server on 127.0.0.1, a real SMTP server catching the mail, both databases.

The main flow runs with JavaScript off (every page must work without it); a short
second test checks the scripts (time zone preselection, the topic filter and chips,
the weekday only for weekly) and that the CSP blocks nothing the pages need; a third
walks every public page with axe-core (zero serious or critical violations).
Screenshots of each page, at 1280 and 375 px wide, go to screenshots/web/ (override
with WEB_SCREENSHOTS_DIR).

axe-core is the npm package, installed without the network by .ci/run
(``npm install --prefix .node axe-core@4``); AXE_CORE_JS points at another axe.min.js.
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
from typing import Any

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
from tests.web.helpers import Mail, add_delivery, local_listener, read_mail, uvicorn_serving

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
AXE = Path(
    os.environ.get("AXE_CORE_JS", REPO / ".node" / "node_modules" / "axe-core" / "axe.min.js")
)
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
    page.screenshot(path=str(SHOTS / f"{name}-1280.png"), full_page=True)
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
        assert not page.is_visible("input[value='cs.CL']")  # in a closed <details>
        page.click("summary:has-text('AI and machine learning')")
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
        # The mailed issue's own HTML, checked by axe like every page (axe needs scripts).
        mail_context = browser.new_context(viewport=DESKTOP)
        try:
            mail_page = mail_context.new_page()
            mail_page.set_content(issue.html)
            assert axe_violations(mail_page) == []
        finally:
            mail_context.close()
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
        page.click("text=Yes, more like this")  # what the page says next is READER's
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

        # Coming back: one click on the page, the old choices kept; the page of the
        # unsubscribe link says so without handing out the preferences link.
        page.click("text=Undo: subscribe again")
        assert page.locator("h1").inner_text() == "You are subscribed again"
        assert page.locator("a[href*='/manage/']").count() == 0
        snap(page, "09b-subscribed-again", enabled=shots)
        with db() as session:
            back = session.get_one(Subscriber, ada.id)
            assert back.status == SubscriberStatus.ACTIVE
            assert "cs.AI" in {i.topic_id for i in back.interests}
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
        # forms.js: the weekday only for weekly issues; the filter box and chips.
        assert not page.is_visible("#weekday")
        page.check("input[name=frequency][value=weekly]")
        assert page.is_visible("#weekday")
        page.fill("#topic-filter", "robot")
        visible = page.locator("label.topic:visible")
        assert visible.all_inner_texts() == ["Robotics cs.RO"]
        visible.first.click()
        chips = [" ".join(t.split()) for t in page.locator(".chip").all_inner_texts()]
        assert chips == ["Robotics ×"]
        snap(page, "01b-subscribe-filtered", enabled=shots)
        page.click("button[aria-label='Remove Robotics']")
        assert page.locator(".chip").count() == 0
        assert not page.is_checked("input[value='cs.RO']")
        page.fill("#topic-filter", "")
        assert page.locator("label.topic:visible").count() == 0  # the groups closed again
        # Keyboard: the first Tab shows the skip link with a focus ring; the picker's own
        # skip link jumps past the topic list.
        page.goto(live.url + "/")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
        ring = page.evaluate("getComputedStyle(document.activeElement).outlineWidth")
        assert ring == "3px"
        page.focus(".topic-picker .skip-link")
        assert page.is_visible(".topic-picker .skip-link")
        page.keyboard.press("Enter")
        page.wait_for_function("document.activeElement.id === 'keywords'", timeout=5000)
        page.goto(live.url + "/manage/not-a-token")
        assert page.locator("h1").inner_text() == "This link does not work"
        snap(page, "10-bad-link", enabled=shots)
        # No CSP violation, no missing file: only the bad link itself failed.
        assert failed == [live.url + "/manage/not-a-token"]
        assert [p for p in problems if "status of 400" not in p] == []
    finally:
        context.close()


def axe_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page, one line each."""
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [
        f"{v['id']} ({v['impact']}): {', '.join(v['nodes'])}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.sqlite_only
def test_every_public_page_passes_axe(browser: Browser, live: Live, engine: Engine) -> None:
    """Each page a reader can reach, scripts on, checked by axe-core and photographed."""
    assert AXE.is_file(), f"{AXE} missing: npm install --prefix .node axe-core@4"
    db = make_session_factory(engine)
    tokens = Tokens(TEST_SECRET)
    # Playwright injects axe as an inline script, which the pages' CSP forbids.
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()
    problems: dict[str, list[str]] = {}

    def visit(url: str) -> None:
        response = page.goto(url)
        assert response is not None
        assert response.status < 500, f"{url}: {response.status}"

    def check(name: str) -> None:
        snap(page, name, enabled=True)
        page.set_viewport_size(PHONE)
        wide = page.evaluate("document.documentElement.scrollWidth")
        page.set_viewport_size(DESKTOP)
        found = axe_violations(page)
        if wide > PHONE["width"]:
            found.append(f"scrolls sideways at {PHONE['width']} px ({wide} px wide)")
        if found:
            problems[f"{name} {page.url}"] = found

    try:
        # The check itself can fail: an image without a text alternative is critical.
        page.set_content("<!doctype html><html lang=en><title>t</title><img src='data:,'>")
        assert any(v.startswith("image-alt (critical)") for v in axe_violations(page))

        page.goto(live.url + "/")
        page.click("button[type=submit]")  # no address: the form comes back with the error
        page.wait_for_function("document.activeElement.id === 'email'", timeout=5000)
        assert page.get_attribute("#email", "aria-invalid") == "true"
        check("a11-subscribe-error")
        page.fill("#email", "grace@example.org")
        page.fill("#keywords", "compilers")
        page.click("button[type=submit]")
        check("a12-check-inbox")
        [confirmation] = wait_for_mail(live, 1)
        page.goto(confirmation.link("/confirm/"))
        check("a13-confirm")
        page.click("button[type=submit]")
        check("a14-confirmed")
        page.click("text=Fine-tune your preferences")
        manage_url = page.url
        assert "Your next issue" in page.locator("[data-next-issue]").inner_text()
        check("a15-preferences")

        with db.begin() as session:
            grace = session.scalars(
                select(Subscriber).where(Subscriber.email == "grace@example.org")
            ).one()
            delivery = add_delivery(session, grace)
            data = TokenData(grace.id, grace.token_version)
            issue = TokenData(grace.id, grace.token_version, delivery.id)
        visit(f"{live.url}/view/{tokens.make(Purpose.VIEW, issue)}")
        check("a16-issue-online")
        visit(f"{live.url}/feedback/{tokens.make(Purpose.FEEDBACK, issue)}/1/less")
        check("a17-feedback")  # READER's pages: what a POST shows is theirs to walk

        visit(manage_url)
        page.fill("#new_email", "grace@example.net")
        page.click("text=Send link")
        [_, moved] = wait_for_mail(live, 2)
        visit(moved.link("/address/"))
        check("a19-address")
        page.click("button[type=submit]")
        check("a20-address-done")

        with db() as session:
            data = TokenData(grace.id, session.get_one(Subscriber, grace.id).token_version)
        unsubscribe = f"{live.url}/unsubscribe/{tokens.make(Purpose.UNSUBSCRIBE, data)}"
        visit(unsubscribe)
        check("a21-unsubscribe")
        page.click("button:has-text('Pause issues')")
        check("a21b-paused")  # the unsubscribe link's own result page
        visit(unsubscribe)
        page.click("button:has-text('Unsubscribe')")
        check("a22-unsubscribed")
        manage = f"{live.url}/manage/{tokens.make(Purpose.MANAGE, data)}"
        visit(manage)
        check("a23-preferences-unsubscribed")
        visit(manage + "/delete")
        check("a24-delete")
        page.click("text=Delete everything")
        check("a25-deleted")

        page.goto(live.url + "/manage/not-a-token")
        check("a26-bad-link")
        page.goto(live.url + "/no-such-page")
        check("a27-not-found")
    finally:
        context.close()
    assert problems == {}
