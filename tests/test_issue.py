"""issue_view: an in-memory delivery becomes the plain view the templates fill."""

from __future__ import annotations

from datetime import date

import pytest
from markupsafe import escape

from newsletter.mail.render import Renderer
from newsletter.mail.view import (
    LIST_NAME,
    edition_label,
    interests_line,
    issue_view,
    subscriber_links,
)
from newsletter.models import Delivery, DeliveryItem, Edition, Interest, Paper, Subscriber, Topic
from newsletter.settings import Settings, load_settings
from newsletter.tokens import InvalidToken, Purpose, TokenData, Tokens

SECRET = "x" * 40
PUBLIC_URL = "https://papers.example.org"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(overrides={"secret_key": SECRET, "public_url": PUBLIC_URL + "/"})


@pytest.fixture(scope="module")
def tokens() -> Tokens:
    return Tokens(SECRET)


def make_subscriber(*, subscriber_id: int = 42, token_version: int = 3) -> Subscriber:
    subscriber = Subscriber(
        id=subscriber_id, email="ada@example.com", name="Ada", token_version=token_version
    )
    subscriber.interests = [
        Interest(id=1, topic=Topic(id="cs.CL", name="Computation and Language", description="")),
        Interest(id=2, keywords="graph neural networks"),
        Interest(id=3, topic=Topic(id="cs.LG", name="Machine Learning", description="")),
    ]
    return subscriber


def make_paper(index: int, *, authors: int = 5) -> Paper:
    return Paper(
        id=index,
        external_id=f"2605.{27000 + index}",
        title=f"Paper number {index} & <friends>",
        abstract="word " * 200,
        authors=[f"Author {a}" for a in range(authors)],
        categories=["cs.CL", "cs.LG"],
        url=f"https://arxiv.org/abs/2605.{27000 + index}",
        listed_on=date(2026, 5, 27),
        content_listed_on=date(2026, 5, 27),
    )


def make_delivery(
    count: int, *, subscriber: Subscriber | None = None, delivery_id: int = 7
) -> Delivery:
    return Delivery(
        id=delivery_id,
        edition=Edition(id=5, date=date(2026, 5, 27)),
        subscriber=subscriber or make_subscriber(),
        items=[
            DeliveryItem(
                rank=i + 1,
                paper=make_paper(i + 1, authors=i + 2),
                score=0.5 - i / 100,
                terms=["attention", f"term{i}"],
            )
            for i in range(count)
        ],
    )


def token_of(url: str, prefix: str) -> str:
    assert url.startswith(prefix), url
    token = url.removeprefix(prefix)
    assert token
    assert "/" not in token
    return token


# --- links and tokens -----------------------------------------------------------------


def test_links_are_under_the_public_url(settings: Settings, tokens: Tokens) -> None:
    view = issue_view(make_delivery(2), settings=settings, tokens=tokens)
    for url in (view.manage_url, view.unsubscribe_url, view.view_url):
        assert url.startswith(PUBLIC_URL + "/")
        assert "//" not in url.removeprefix("https://")
    assert view.manage_url.startswith(f"{PUBLIC_URL}/manage/")
    assert view.unsubscribe_url.startswith(f"{PUBLIC_URL}/unsubscribe/")
    assert view.view_url.startswith(f"{PUBLIC_URL}/view/")


@pytest.mark.parametrize(
    ("link", "path", "purpose"),
    [
        ("manage_url", "manage", Purpose.MANAGE),
        ("unsubscribe_url", "unsubscribe", Purpose.UNSUBSCRIBE),
        ("view_url", "view", Purpose.VIEW),
    ],
)
def test_link_tokens_are_read_for_their_purpose(
    settings: Settings, tokens: Tokens, link: str, path: str, purpose: Purpose
) -> None:
    view = issue_view(make_delivery(2), settings=settings, tokens=tokens)
    token = token_of(getattr(view, link), f"{PUBLIC_URL}/{path}/")
    data = tokens.read(purpose, token)
    assert data.subscriber_id == 42
    assert data.version == 3
    assert data.subject == (7 if purpose is Purpose.VIEW else None)
    for other in Purpose:
        if other is not purpose:
            with pytest.raises(InvalidToken):
                tokens.read(other, token)


def test_link_tokens_are_rejected_with_another_secret(settings: Settings, tokens: Tokens) -> None:
    view = issue_view(make_delivery(1), settings=settings, tokens=tokens)
    other = Tokens("y" * 40)
    with pytest.raises(InvalidToken):
        other.read(Purpose.MANAGE, token_of(view.manage_url, f"{PUBLIC_URL}/manage/"))


def test_bumping_token_version_changes_every_token(settings: Settings, tokens: Tokens) -> None:
    before = issue_view(make_delivery(1), settings=settings, tokens=tokens)
    bumped = make_delivery(1, subscriber=make_subscriber(token_version=4))
    after = issue_view(bumped, settings=settings, tokens=tokens)
    assert before.manage_url != after.manage_url
    assert before.unsubscribe_url != after.unsubscribe_url
    assert before.view_url != after.view_url
    token = token_of(after.unsubscribe_url, f"{PUBLIC_URL}/unsubscribe/")
    assert tokens.read(Purpose.UNSUBSCRIBE, token) == TokenData(42, 4)


def test_view_tokens_differ_between_deliveries(settings: Settings, tokens: Tokens) -> None:
    first = issue_view(make_delivery(1, delivery_id=7), settings=settings, tokens=tokens)
    second = issue_view(make_delivery(1, delivery_id=8), settings=settings, tokens=tokens)
    assert first.view_url != second.view_url
    token = token_of(second.view_url, f"{PUBLIC_URL}/view/")
    assert tokens.read(Purpose.VIEW, token).subject == 8


def test_subscriber_links(settings: Settings, tokens: Tokens) -> None:
    links = subscriber_links(settings, tokens, make_subscriber(subscriber_id=9, token_version=1))
    assert set(links) == {"manage_url", "unsubscribe_url"}
    token = token_of(links["manage_url"], f"{PUBLIC_URL}/manage/")
    assert tokens.read(Purpose.MANAGE, token) == TokenData(9, 1)


# --- content ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "heading"),
    [(0, "0 new papers for you"), (1, "1 new paper for you"), (2, "2 new papers for you")],
)
def test_heading_pluralises(settings: Settings, tokens: Tokens, count: int, heading: str) -> None:
    view = issue_view(make_delivery(count), settings=settings, tokens=tokens)
    assert view.heading == heading
    assert len(view.papers) == count


def test_papers_follow_the_delivery_items(settings: Settings, tokens: Tokens) -> None:
    delivery = make_delivery(4)
    view = issue_view(delivery, settings=settings, tokens=tokens)
    assert [p.title for p in view.papers] == [i.paper.title for i in delivery.items]
    first, _, third, fourth = view.papers
    assert first.url == "https://arxiv.org/abs/2605.27001"
    assert first.authors == "Author 0, Author 1"
    assert third.authors == "Author 0, Author 1, Author 2 et al."
    assert fourth.categories == "cs.CL, cs.LG"
    assert first.terms == "attention, term0"
    assert first.score == pytest.approx(0.5)
    assert len(first.abstract) <= 422
    assert first.read_on
    assert view.preheader == f"Also: {view.papers[1].title} · {third.title} and 1 more"
    assert view.subject_line == first.title


def test_issue_fields(settings: Settings, tokens: Tokens) -> None:
    view = issue_view(make_delivery(1), settings=settings, tokens=tokens)
    assert view.email == "ada@example.com"
    assert view.list_name == LIST_NAME
    assert view.edition_label == "Wednesday 27 May 2026"
    custom = issue_view(make_delivery(1), settings=settings, tokens=tokens, list_name="Digest")
    assert custom.list_name == "Digest"


def test_empty_delivery_has_an_empty_preheader(settings: Settings, tokens: Tokens) -> None:
    assert issue_view(make_delivery(0), settings=settings, tokens=tokens).preheader == ""


@pytest.mark.parametrize(
    ("day", "label"),
    [
        (date(2026, 5, 27), "Wednesday 27 May 2026"),
        (date(2026, 1, 1), "Thursday 1 January 2026"),
        (date(2024, 2, 29), "Thursday 29 February 2024"),
    ],
)
def test_edition_label(day: date, label: str) -> None:
    assert edition_label(day) == label


def test_interests_line_lists_topics_and_quoted_keywords() -> None:
    line = interests_line(make_subscriber())
    assert line.startswith("Picked for your interests: ")
    assert "Computation and Language" in line
    assert "Machine Learning" in line
    assert "“graph neural networks”" in line
    assert line == (
        "Picked for your interests: Computation and Language, Machine Learning, "
        "“graph neural networks”"
    )


def test_interests_line_is_empty_without_interests() -> None:
    subscriber = Subscriber(id=1, email="a@example.com", token_version=1)
    subscriber.interests = []
    assert interests_line(subscriber) == ""


def test_interests_line_with_keywords_only() -> None:
    subscriber = Subscriber(id=1, email="a@example.com", token_version=1)
    subscriber.interests = [Interest(id=1, keywords="protein folding")]
    assert interests_line(subscriber) == "Picked for your interests: “protein folding”"


def test_view_renders_with_the_shipped_templates(settings: Settings, tokens: Tokens) -> None:
    view = issue_view(make_delivery(3), settings=settings, tokens=tokens)
    result = Renderer().render_issue(view)
    assert result.subject == "Paper number 1 & <friends>"
    for paper in view.papers:
        assert str(escape(paper.title)) in result.html
        assert paper.title in result.text
    for url in (view.manage_url, view.unsubscribe_url, view.view_url):
        assert url in result.text
        assert str(escape(url)) in result.html
    assert view.interests_line in result.text
    assert str(escape(view.interests_line)) in result.html


# --- languages ----------------------------------------------------------------------


def test_issue_view_follows_the_subscriber_locale(settings: Settings, tokens: Tokens) -> None:
    subscriber = make_subscriber()
    subscriber.locale = "de"
    view = issue_view(make_delivery(2, subscriber=subscriber), settings=settings, tokens=tokens)
    assert view.locale == "de"
    assert view.edition_label == "Mittwoch, 27. Mai 2026"
    assert view.heading == "2 neue Paper für Sie"
    assert view.interests_line.startswith("Ausgewählt für Ihre Interessen: Computation")
    result = Renderer().render_issue(view)
    assert "Mehr davon" in result.html
    assert f"Einstellungen: {view.manage_url}" in result.text


def test_an_unset_or_unknown_locale_is_english(settings: Settings, tokens: Tokens) -> None:
    subscriber = make_subscriber()
    subscriber.locale = "xx"
    view = issue_view(make_delivery(1, subscriber=subscriber), settings=settings, tokens=tokens)
    assert view.locale == "en"
    assert view.heading == "1 new paper for you"
    assert issue_view(make_delivery(1), settings=settings, tokens=tokens).locale == "en"


@pytest.mark.parametrize(
    ("locale", "label"),
    [("en", "Wednesday 27 May 2026"), ("de", "Mittwoch, 27. Mai 2026")],
)
def test_edition_label_per_locale(locale: str, label: str) -> None:
    assert edition_label(date(2026, 5, 27), locale) == label
