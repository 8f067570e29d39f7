"""What one delivery shows: turn stored rows into the plain view the templates fill."""

from __future__ import annotations

from datetime import date

from newsletter.models import Delivery, Subscriber
from newsletter.render import IssueView, PaperView, shorten_authors, trim_text
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens

LIST_NAME = "Paper Newsletter"


def edition_label(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def interests_line(subscriber: Subscriber) -> str:
    names = [i.topic.name for i in subscriber.interests if i.topic is not None]
    names += [f"“{i.keywords}”" for i in subscriber.interests if i.keywords]
    return "Picked for your interests: " + ", ".join(names) if names else ""


def subscriber_links(settings: Settings, tokens: Tokens, subscriber: Subscriber) -> dict[str, str]:
    """Signed links to the subscriber's pages (the web app serves them)."""
    data = TokenData(subscriber.id, subscriber.token_version)
    base = settings.public_url
    return {
        "manage_url": f"{base}/manage/{tokens.make(Purpose.MANAGE, data)}",
        "unsubscribe_url": f"{base}/unsubscribe/{tokens.make(Purpose.UNSUBSCRIBE, data)}",
    }


def issue_view(
    delivery: Delivery, *, settings: Settings, tokens: Tokens, list_name: str = LIST_NAME
) -> IssueView:
    """The template context of one delivery (its subscriber, items and papers loaded)."""
    subscriber = delivery.subscriber
    papers = tuple(
        PaperView(
            title=item.paper.title,
            url=item.paper.url,
            authors=shorten_authors(item.paper.authors),
            categories=", ".join(item.paper.categories),
            abstract=trim_text(item.paper.abstract),
            terms=", ".join(item.terms),
            score=item.score,
        )
        for item in delivery.items
    )
    view_token = tokens.make(
        Purpose.VIEW, TokenData(subscriber.id, subscriber.token_version, delivery.id)
    )
    count = len(papers)
    return IssueView(
        email=subscriber.email,
        list_name=list_name,
        edition_label=edition_label(delivery.edition.date),
        heading=f"{count} new paper{'s' if count != 1 else ''} for you",
        interests_line=interests_line(subscriber),
        preheader=papers[0].title if papers else "",
        papers=papers,
        view_url=f"{settings.public_url}/view/{view_token}",
        **subscriber_links(settings, tokens, subscriber),
    )
