"""A reader uploads their BibTeX file in a real browser; the preferences page reports it
and their first issue follows it (Chromium via Playwright, uvicorn, SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from newsletter.db import make_session_factory
from newsletter.mail.view import issue_view
from newsletter.models import Delivery, DeliveryItem, Paper
from newsletter.service import Service
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens
from newsletter.web.app import create_app
from tests.conftest import DAILY, TEST_SECRET, make_settings
from tests.library.listing import bibtex_entries
from tests.web.helpers import add_subscriber, local_listener, uvicorn_serving

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

CHROMIUM = "/usr/bin/chromium"
SEED_DAY, EDITION = date(2026, 5, 26), date(2026, 5, 27)
TOPIC = "cs.IT"  # information theory: about 2% of the listings


def _bibtex_from_listing(count: int) -> str:
    """A BibTeX file of ``count`` real cs.IT papers of the seed day, as a reader's
    reference manager writes it, plus an entry with nothing to go by."""
    entries = bibtex_entries(SEED_DAY, TOPIC, count)
    return "\n".join(entries) + "\n@misc{empty, note = {to read}}\n"


@pytest.fixture
def live(engine: Engine, database_url: str) -> Iterator[tuple[str, Settings]]:
    listener, url = local_listener()
    settings = make_settings(database_url, public_url=url, semantic=False)
    service = Service.open(settings)
    try:
        for day in (SEED_DAY, EDITION):
            service.ingest(DAILY / f"{day}.jsonl", today=day)
    finally:
        service.close()
    with uvicorn_serving(create_app(settings), listener):
        yield url, settings


def test_a_bibtex_upload_is_reported_and_shapes_the_first_issue(
    live: tuple[str, Settings], engine: Engine, tmp_path: Path
) -> None:
    url, settings = live
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        subscriber_id = add_subscriber(session, "ada@example.org", topics=()).id
    token = Tokens(TEST_SECRET).make(Purpose.MANAGE, TokenData(subscriber_id, 1))
    library = tmp_path / "references.bib"
    library.write_text(_bibtex_from_listing(6))

    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(java_script_enabled=False)
            page.goto(f"{url}/manage/{token}")
            page.set_input_files("#library-file", str(library))
            page.get_by_role("button", name="Import").first.click()
            page.wait_for_url(f"{url}/manage/{token}/library?done=imported")
            report = page.locator("[data-library-report]").first.inner_text()
            page.goto(f"{url}/manage/{token}")
            section = page.locator("#library").inner_text()
        finally:
            browser.close()

    assert "references.bib: 6 imported, 1 not." in report
    assert "no arXiv id, DOI or title" in report
    assert "references.bib: 6 imported, 1 not." in section  # on the preferences page

    service = Service.open(settings)
    try:
        service.plan(EDITION)
    finally:
        service.close()
    with sessions() as session:
        delivery = session.scalars(
            select(Delivery).options(selectinload(Delivery.items).selectinload(DeliveryItem.paper))
        ).one()
        picks = [item.paper for item in sorted(delivery.items, key=lambda i: i.rank)]
        listed = session.scalars(select(Paper.categories).where(Paper.listed_on == EDITION)).all()
        view = issue_view(delivery, settings=settings, tokens=Tokens(TEST_SECRET))
    assert all(TOPIC in p.categories for p in picks[:3]), [p.categories for p in picks]
    share = sum(TOPIC in p.categories for p in picks) / len(picks)
    assert share >= 4 * sum(TOPIC in c for c in listed) / len(listed)
    whys = [w.text for card in view.papers for w in getattr(card, "why", ())]
    assert any(w.endswith("from your library") for w in whys), whys
