"""What one delivery shows: turn stored rows into the plain view the templates fill.

Two ways in, one result: ``issue_view`` takes a loaded ORM ``Delivery`` (preview,
view online, tests); the delivery workers build the same view from plain rows with
``build_issue_view`` and a per-edition cache of ``paper_base`` views, because the
same few hundred papers recur across thousands of issues.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from newsletter.i18n import format_day, gettext, mark, ngettext, normalise_locale
from newsletter.mail.render import IssueView, PaperView, shorten_authors, trim_text
from newsletter.models import Delivery, Paper, Subscriber
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens

LIST_NAME = "Paper Newsletter"


def edition_label(day: date, locale: str = "en") -> str:
    """The edition's date as the issue shows it, in ``locale`` (Babel, cached)."""
    return format_day(day, locale)


_INTERESTS = mark("Picked for your interests: ")


def interests_text(
    topic_names: Sequence[str], keywords: Sequence[str], *, locale: str = "en"
) -> str:
    names = [*topic_names, *(f"“{k}”" for k in keywords)]
    return gettext(locale, _INTERESTS) + ", ".join(names) if names else ""


def _localised_interests(interests: str, locale: str) -> str:
    # Callers that built the line without a locale (English) get its label translated.
    if locale != "en" and interests.startswith(_INTERESTS):
        return gettext(locale, _INTERESTS) + interests.removeprefix(_INTERESTS)
    return interests


def interests_line(subscriber: Subscriber) -> str:
    return interests_text(
        [i.topic.name for i in subscriber.interests if i.topic is not None],
        [i.keywords for i in subscriber.interests if i.keywords],
        locale=normalise_locale(subscriber.locale),
    )


def subscriber_links(settings: Settings, tokens: Tokens, subscriber: Subscriber) -> dict[str, str]:
    """Signed links to the subscriber's pages (the web app serves them)."""
    return _subscriber_links(settings, tokens, subscriber.id, subscriber.token_version)


def _subscriber_links(
    settings: Settings, tokens: Tokens, subscriber_id: int, version: int
) -> dict[str, str]:
    data = TokenData(subscriber_id, version)
    base = settings.public_url
    return {
        "manage_url": f"{base}/manage/{tokens.make(Purpose.MANAGE, data)}",
        "unsubscribe_url": f"{base}/unsubscribe/{tokens.make(Purpose.UNSUBSCRIBE, data)}",
    }


def paper_base(
    *, title: str, url: str, authors: Sequence[str], categories: Sequence[str], abstract: str
) -> PaperView:
    """The parts of a paper's card that are the same in every issue."""
    return PaperView(
        title=title,
        url=url,
        authors=shorten_authors(list(authors)),
        categories=", ".join(categories),
        abstract=trim_text(abstract),
        terms="",
        score=0.0,
    )


def paper_base_of(paper: Paper) -> PaperView:
    return paper_base(
        title=paper.title,
        url=paper.url,
        authors=paper.authors,
        categories=paper.categories,
        abstract=paper.abstract,
    )


@dataclass(frozen=True)
class ItemView:
    """One picked paper of a delivery: its rank, score and why, and its shared card."""

    rank: int
    score: float
    terms: Sequence[str]
    paper: PaperView


def build_issue_view(
    *,
    settings: Settings,
    tokens: Tokens,
    delivery_id: int,
    subscriber_id: int,
    token_version: int,
    email: str,
    edition: date,
    interests: str,
    items: Sequence[ItemView],
    list_name: str = LIST_NAME,
    locale: str = "en",
) -> IssueView:
    """The template context of one delivery, from plain data, in ``locale``."""
    locale = normalise_locale(locale)
    base = settings.public_url
    scoped = TokenData(subscriber_id, token_version, delivery_id)
    feedback = f"{base}/feedback/{tokens.make(Purpose.FEEDBACK, scoped)}/"
    papers = tuple(
        PaperView(
            title=item.paper.title,
            url=item.paper.url,
            authors=item.paper.authors,
            categories=item.paper.categories,
            abstract=item.paper.abstract,
            terms=", ".join(item.terms),
            score=item.score,
            more_url=f"{feedback}{item.rank}/more",
            less_url=f"{feedback}{item.rank}/less",
        )
        for item in items
    )
    count = len(papers)
    return IssueView(
        email=email,
        list_name=list_name,
        edition_label=edition_label(edition, locale),
        heading=ngettext(locale, "%(num)d new paper for you", "%(num)d new papers for you", count)
        % {"num": count},
        interests_line=_localised_interests(interests, locale),
        preheader=papers[0].title if papers else "",
        papers=papers,
        view_url=f"{base}/view/{tokens.make(Purpose.VIEW, scoped)}",
        contact_line=settings.contact_line,
        locale=locale,
        **_subscriber_links(settings, tokens, subscriber_id, token_version),
    )


def issue_view(
    delivery: Delivery, *, settings: Settings, tokens: Tokens, list_name: str = LIST_NAME
) -> IssueView:
    """The template context of one delivery (its subscriber, items and papers loaded)."""
    subscriber = delivery.subscriber
    return build_issue_view(
        settings=settings,
        tokens=tokens,
        delivery_id=delivery.id,
        subscriber_id=subscriber.id,
        token_version=subscriber.token_version,
        email=subscriber.email,
        edition=delivery.edition.date,
        interests=interests_line(subscriber),
        items=[
            ItemView(item.rank, item.score, item.terms, paper_base_of(item.paper))
            for item in delivery.items
        ],
        list_name=list_name,
        locale=subscriber.locale,
    )
