"""Rating an issue's papers in Chromium, JavaScript off: from the mail's link to the
page with the choice ready, one button, then the rest of the issue rated on the page.

Screenshots of the issue online at 1280 and 375 px go where the other browser tests put
theirs (screenshots/web/, or WEB_SCREENSHOTS_DIR).
"""

from __future__ import annotations

import json
from datetime import date

import pytest
from playwright.sync_api import Browser
from sqlalchemy import Engine, select

from newsletter.db import make_session_factory
from newsletter.delivery.compose import select_renderable
from newsletter.mail.render import Renderer
from newsletter.mail.view import issue_view
from newsletter.models import Delivery, DeliveryItem, Edition, Feedback, Interest, Paper
from newsletter.tokens import Tokens
from tests.conftest import DAILY, TEST_SECRET
from tests.web.helpers import add_subscriber
from tests.web.test_browser import (  # noqa: F401 - fixtures
    DESKTOP,
    PHONE,
    Live,
    axe_violations,
    browser,
    live,
    playwright,
    snap,
)

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]  # drives Chromium
EDITION = date(2026, 5, 27)
MIN_TARGET_PX = 44


def _add_issue(engine: Engine) -> tuple[int, list[int]]:
    """A delivery of four real papers of the shared listings (one title with LaTeX)."""
    with (DAILY / f"{EDITION}.jsonl").open(encoding="utf-8") as feed:
        records = [json.loads(line) for line in feed][:4]
    records[1]["title"] = r"Sparse $\mathbb{R}^n$ embeddings $\rightarrow$ faster retrieval"
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        reader = add_subscriber(session, "ada@example.org")
        session.add(Interest(subscriber_id=reader.id, keywords="retrieval-augmented generation"))
        edition = Edition(date=EDITION)
        session.add(edition)
        session.flush()
        delivery = Delivery(edition_id=edition.id, subscriber_id=reader.id)
        session.add(delivery)
        session.flush()
        paper_ids = []
        for rank, record in enumerate(records, start=1):
            paper = Paper(
                external_id=record["id"],
                title=record["title"],
                abstract=record["summary"],
                authors=record["authors"],
                categories=record["categories"],
                url=record["abs"],
                pdf_url=record["pdf"],
                comment=record["comment"],
                listed_on=EDITION,
                content_listed_on=EDITION,
            )
            session.add(paper)
            session.flush()
            paper_ids.append(paper.id)
            session.add(
                DeliveryItem(
                    delivery_id=delivery.id,
                    rank=rank,
                    paper_id=paper.id,
                    score=0.5,
                    terms=["augmented generation", "retrieval"],
                )
            )
        return delivery.id, paper_ids


def test_rating_from_the_mail_link_and_on_the_page(
    browser: Browser,
    live: Live,
    engine: Engine,
) -> None:
    delivery_id, paper_ids = _add_issue(engine)
    sessions = make_session_factory(engine)

    def ratings() -> dict[int, int]:
        with sessions() as session:
            rows = session.execute(select(Feedback.paper_id, Feedback.value))
            return {paper_id: value for paper_id, value in rows}

    with sessions() as session:
        delivery = session.scalars(select_renderable().where(Delivery.id == delivery_id)).one()
        view = issue_view(delivery, settings=live.settings, tokens=Tokens(TEST_SECRET))
        more_link = view.cards[1].more_url  # what the mail links to
    assert "#paper-2" in more_link

    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(more_link)
        assert ratings() == {}  # opening the link (as a scanner does) records nothing
        card = page.locator("#paper-2")
        assert "is-ready" in (card.get_attribute("class") or "")
        assert card.locator("h2").inner_text() == "Sparse ℝⁿ embeddings → faster retrieval"
        box = card.bounding_box()
        assert box is not None
        assert box["y"] < PHONE["height"]  # the page opens at that paper
        why = card.locator(".issue-why").inner_text()
        assert "matches your keyword “retrieval-augmented generation”" in why
        for button in page.locator(".issue-rate button").all():
            size = button.bounding_box()
            assert size is not None
            assert size["height"] >= MIN_TARGET_PX
            assert size["x"] + size["width"] <= PHONE["width"]
        page.set_viewport_size(DESKTOP)
        snap(page, "issue-online-ready", enabled=True)

        card.locator("button", has_text="Yes, more like this").click()
        assert ratings() == {paper_ids[1]: 1}
        assert "Noted: more like this" in page.locator("#paper-2 [role=status]").inner_text()
        assert page.url.endswith("#paper-2")

        # The rest of the issue, rated on the page.
        page.locator("#paper-3 button", has_text="Less like this").click()
        page.locator("#paper-4 button", has_text="More like this").click()
        page.locator("#paper-2 button", has_text="Undo").click()
        assert ratings() == {paper_ids[2]: -1, paper_ids[3]: 1}
        assert "Undone" in page.locator("#paper-2 [role=status]").inner_text()
        page.locator("#paper-3 button", has_text="More like this instead").click()
        assert ratings() == {paper_ids[2]: 1, paper_ids[3]: 1}
        page.goto(more_link.split("?")[0])
        snap(page, "issue-online-rated", enabled=True)
    finally:
        context.close()


def test_the_mailed_issue_html_passes_axe(browser: Browser, live: Live, engine: Engine) -> None:
    """The issue as mailed (not only its online page): zero serious or critical axe-core
    violations, in the light and the dark colour scheme."""
    delivery_id, _ = _add_issue(engine)
    with make_session_factory(engine)() as session:
        delivery = session.scalars(select_renderable().where(Delivery.id == delivery_id)).one()
        view = issue_view(delivery, settings=live.settings, tokens=Tokens(TEST_SECRET))
    html = Renderer().render_issue(view).html
    for scheme in ("light", "dark"):
        context = browser.new_context(java_script_enabled=True, viewport=PHONE, color_scheme=scheme)
        try:
            page = context.new_page()
            page.set_content(html)
            assert page.locator("a", has_text="Read on").count() >= 1
            assert axe_violations(page) == []
        finally:
            context.close()
