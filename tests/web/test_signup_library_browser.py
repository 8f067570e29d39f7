"""A reader signs up with their BibTeX file in a real browser (Chromium via Playwright,
uvicorn, SQLite): the "Start from papers you know" section is closed until opened and
works without scripts, a bad address keeps the pasted ids, the page after the form
reports the library, and the first issue follows it. axe-core checks the sign-up page
with the section open; screenshots at 1280 and 375 px go to screenshots/web/."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Browser, FilePayload, Page, Playwright, sync_playwright
from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from newsletter.db import make_session_factory
from newsletter.mail.capture import MaildirServer
from newsletter.mail.view import issue_view
from newsletter.models import Delivery, DeliveryItem, LibraryImport
from newsletter.service import Service
from newsletter.tokens import Tokens
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import DAILY, TEST_SECRET, make_settings
from tests.library.test_signup_seeding import TOPIC, bibtex_from_listing
from tests.web.helpers import local_listener, read_mail, uvicorn_serving
from tests.web.test_browser import (
    AXE,
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Live,
    axe_violations,
    snap,
    wait_for_mail,
)

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

SEED_DAY, EDITION = date(2026, 5, 26), date(2026, 5, 27)
PASTED = "2605.00001\nmy reading list\nhttps://arxiv.org/abs/1706.03762"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        chromium = _launch(driver)
        yield chromium
        chromium.close()


def _launch(driver: Playwright) -> Browser:
    return driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@pytest.fixture
def live(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[Live]:
    """The app under uvicorn with two days of listings, mailing through a Maildir."""
    listener, url = local_listener()
    maildir = tmp_path / "maildir"
    with MaildirServer(maildir) as smtp:
        settings = make_settings(
            database_url,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            public_url=url,
            semantic=False,
        )
        service = Service.open(settings)
        try:
            for day in (SEED_DAY, EDITION):
                service.ingest(DAILY / f"{day}.jsonl", today=day)
        finally:
            service.close()
        app = create_app(settings, options=WebOptions(subscribe_per_ip="100/minute"))
        with uvicorn_serving(app, listener):
            yield Live(url, settings, maildir)


def _open_library(page: Page) -> None:
    assert not page.is_visible("#library-ids")  # closed until the reader opens it
    page.click("summary:has-text('Start from papers you know')")
    assert page.is_visible("#library-ids")


def test_signing_up_with_a_bibtex_file_without_scripts(
    browser: Browser, live: Live, engine: Engine, tmp_path: Path
) -> None:
    library = tmp_path / "references.bib"
    library.write_text(bibtex_from_listing(6))
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(live.url + "/subscribe")
        page.fill("#email", "ada@example.org")
        page.fill("#keywords", "xylophone")  # no paper of the edition: the library decides
        _open_library(page)
        page.set_input_files("#library-file", str(library))
        snap(page, "c1-subscribe-library", enabled=True)

        # A typo in the address: the form comes back with the pasted ids, asks for the file.
        page.fill("#email", "ada at example.org")
        page.fill("#library-ids", PASTED)
        page.click("button[type=submit]")
        assert page.get_attribute("#email", "aria-invalid") == "true"
        assert page.input_value("#library-ids") == PASTED
        assert page.is_visible("#library-ids")  # the section stays open
        assert "You had chosen references.bib" in page.locator("#library").inner_text()
        snap(page, "c2-subscribe-library-error", enabled=True)

        page.fill("#email", "ada@example.org")
        page.fill("#library-ids", "")
        page.set_input_files("#library-file", str(library))
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"
        report = page.locator("#library").inner_text()
        assert "references.bib: 7 papers to import, 2 lines not." in report
        assert "skipped: the same paper as line 1" in report
        snap(page, "c3-check-inbox-library", enabled=True)

        [confirmation] = wait_for_mail(live, 1)
        page.goto(confirmation.link("/confirm/"))
        page.click("text=Confirm my subscription")
        page.click("text=Fine-tune your preferences")
        page.goto(page.url + "/library")
        library_page = page.locator("main").inner_text()
    finally:
        context.close()

    # Six stored papers matched at once; the arXiv id the database lacks waits for the job.
    assert "6 papers from your library shape your issues" in library_page
    assert "1 waiting for arXiv" in library_page
    service = Service.open(live.settings)
    try:
        service.plan(EDITION)
    finally:
        service.close()
    sessions = make_session_factory(engine)
    with sessions() as session:
        assert session.scalars(select(LibraryImport.status)).one() == "pending"
        delivery = session.scalars(
            select(Delivery).options(selectinload(Delivery.items).selectinload(DeliveryItem.paper))
        ).one()
        picks = [item.paper for item in sorted(delivery.items, key=lambda i: i.rank)]
        view = issue_view(delivery, settings=live.settings, tokens=Tokens(TEST_SECRET))
    assert all(TOPIC in p.categories for p in picks[:3]), [p.categories for p in picks]
    whys = [w.text for card in view.papers[:3] for w in getattr(card, "why", ())]
    assert any(w.endswith("from your library") for w in whys), whys
    assert len(read_mail(live.maildir)) == 1  # planned, not sent: only the confirmation


def test_the_sign_up_page_with_the_library_open_passes_axe(browser: Browser, live: Live) -> None:
    assert AXE.is_file(), f"{AXE} missing: npm install --prefix .node axe-core@4"
    # Playwright injects axe as an inline script, which the pages' CSP forbids.
    context = browser.new_context(viewport=DESKTOP, bypass_csp=True)
    page = context.new_page()
    problems: dict[str, list[str]] = {}

    def check(name: str) -> None:
        snap(page, name, enabled=True)
        page.set_viewport_size(PHONE)
        wide = page.evaluate("document.documentElement.scrollWidth")
        page.set_viewport_size(DESKTOP)
        found = axe_violations(page)
        if wide > PHONE["width"]:
            found.append(f"scrolls sideways at {PHONE['width']} px ({wide} px wide)")
        if found:
            problems[name] = found

    try:
        page.goto(live.url + "/subscribe")
        _open_library(page)
        check("c4-subscribe-library-open")
        page.fill("#email", "bo@example.org")
        page.fill("#keywords", "compilers")
        photo: FilePayload = {
            "name": "photo.png",
            "mimeType": "image/png",
            "buffer": b"\x89PNG\xff",
        }
        page.set_input_files("#library-file", files=photo)
        page.click("button[type=submit]")
        page.wait_for_function("document.activeElement.id === 'library-file'", timeout=10_000)
        assert "not a text file" in page.locator("#form-error").inner_text()
        check("c5-subscribe-library-refused")
        page.set_input_files("#library-file", files=[])
        page.fill("#library-ids", PASTED)
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"
        check("c6-check-inbox-library")
    finally:
        context.close()
    assert problems == {}


def test_a_file_over_the_limit_is_refused_before_it_is_sent(browser: Browser, live: Live) -> None:
    """With scripts the browser refuses the file at once, the typing kept; without them the
    server's page says what the limit is (before: a bare "Request too large.")."""
    huge: FilePayload = {
        "name": "everything.bib",
        "mimeType": "text/plain",
        "buffer": b"%" * (6 * 1_048_576),
    }
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        page.goto(live.url + "/subscribe")
        page.fill("#email", "cy@example.org")
        page.fill("#keywords", "compilers")
        _open_library(page)
        page.set_input_files("#library-file", files=huge)
        message = page.eval_on_selector("#library-file", "input => input.validationMessage")
        assert "This file is 6 MB; a library may be at most 5 MB" in message
        page.click("button[type=submit]")
        assert page.url == live.url + "/subscribe"  # not sent
        assert page.input_value("#email") == "cy@example.org"
        assert page.input_value("#keywords") == "compilers"
        page.set_input_files("#library-file", files=[])  # a smaller choice clears the refusal
        assert page.eval_on_selector("#library-file", "input => input.validity.valid")
    finally:
        context.close()

    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(live.url + "/subscribe")
        page.fill("#email", "cy@example.org")
        _open_library(page)
        page.set_input_files("#library-file", files=huge)
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "This is too large"
        assert "over the limit of 5 MB here" in page.locator("main").inner_text()
    finally:
        context.close()
    assert read_mail(live.maildir) == []  # no confirmation: nothing was signed up
