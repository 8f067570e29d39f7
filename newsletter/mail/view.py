"""What one delivery shows: turn stored rows into the plain view the templates fill.

Two ways in, one result: ``issue_view`` takes a loaded ORM ``Delivery`` (preview,
view online, tests); the delivery workers build the same view from plain rows with
``build_issue_view`` and a per-edition cache of ``paper_base`` cards, because the
same few hundred papers recur across thousands of issues. A card's paper-only parts
(``paper_base``: readable title and abstract, arXiv id, date, links, comment) are the
same for every reader; ``build_issue_view`` adds the personal ones (rank, why, the
rating links) and the subject and preheader.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from typing import Any

from newsletter.i18n import format_day, gettext, mark, ngettext, normalise_locale
from newsletter.mail.latex import readable
from newsletter.mail.readers import Reader, reader_of
from newsletter.mail.render import IssueView, PaperView, shorten_authors, trim_text
from newsletter.models import Delivery, Paper, Subscriber
from newsletter.planning.follows import followed_author
from newsletter.settings import Settings
from newsletter.tokens import Purpose, TokenData, Tokens
from recommender.explanations import ReaderInterests, Reason, ReasonKind, reasons

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


# The newest arXiv style and the old one ("hep-th/9901001"), at the end of an abs URL.
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?$")
# The end of a sentence: . ! ? then a space and an upper-case letter or digit
# ("e.g. the" and "Fig. 3a" rarely match; a cut there is still a readable cut).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(“\"])")
ABSTRACT_LIMIT = 420


@dataclass(frozen=True)
class CardView(PaperView):
    """A paper's card: the paper-only parts (``paper_base``, the same in every issue and
    cacheable per edition), then the personal ones ``build_issue_view`` fills in.

    The fields of ``PaperView`` are what older templates read; the templates read these
    with ``|default`` so a bare ``PaperView`` still renders.
    """

    arxiv_id: str = ""
    listed: str = ""  # first listing date, ISO (language-neutral, as arXiv writes it)
    abs_url: str = ""
    pdf_url: str = ""
    comment: str = ""  # the authors' comment: venue, pages, code link
    read_on: bool = False  # the abstract was cut: "read on" links to the abstract page
    category_ids: tuple[str, ...] = ()
    author_names: tuple[str, ...] = ()  # every author (``authors`` is shortened): follows
    # Personal parts (never cached): place in the issue and why it was picked.
    rank: int = 0
    why: tuple[ReasonView, ...] = ()


@dataclass(frozen=True)
class ReasonView:
    """One reason, worded for the reader (``kind`` names it for styling)."""

    kind: str
    text: str


def cut_sentences(text: str, *, limit: int = ABSTRACT_LIMIT) -> tuple[str, bool]:
    """``text`` cut after the last sentence that ends within ``limit`` characters (at a
    word with "…" if the first sentence alone is longer), and whether it was cut."""
    if len(text) <= limit:
        return text, False
    ends = [m.start() for m in _SENTENCE_END.finditer(text, 0, limit + 1)]
    if ends and ends[-1] >= limit // 3:
        return text[: ends[-1]], True
    return trim_text(text, limit=limit), True


def _arxiv_id(url: str, given: str) -> str:
    if given:
        return given
    match = _ARXIV_ID.search(url.rstrip("/"))
    return match.group(1) if match else ""


def paper_base(
    *,
    title: str,
    url: str,
    authors: Sequence[str],
    categories: Sequence[str],
    abstract: str,
    arxiv_id: str = "",
    listed_on: date | None = None,
    pdf_url: str | None = None,
    comment: str | None = None,
) -> CardView:
    """The parts of a paper's card that are the same in every issue (LaTeX made readable)."""
    text, cut = cut_sentences(readable(abstract))
    paper_id = _arxiv_id(url, arxiv_id)
    if not pdf_url and paper_id and "arxiv.org/abs/" in url:
        pdf_url = url.replace("/abs/", "/pdf/", 1)
    return CardView(
        title=readable(title),
        url=url,
        authors=shorten_authors(list(authors)),
        categories=", ".join(categories),
        abstract=text,
        terms="",
        score=0.0,
        arxiv_id=paper_id,
        listed=listed_on.isoformat() if listed_on else "",
        abs_url=url,
        pdf_url=pdf_url or "",
        comment=readable(comment) if comment else "",
        read_on=cut,
        category_ids=tuple(categories),
        author_names=tuple(authors),
    )


# The paper columns a card shows, in paper_base's keyword order (for callers that load
# plain rows: ``select(Paper.id, *CARD_COLUMNS)`` then ``paper_card_from_row``).
CARD_COLUMNS = (
    Paper.title,
    Paper.url,
    Paper.authors,
    Paper.categories,
    Paper.abstract,
    Paper.external_id,
    Paper.listed_on,
    Paper.pdf_url,
    Paper.comment,
)


def paper_card_from_row(row: Sequence[Any]) -> CardView:
    """``paper_base`` of a row of ``CARD_COLUMNS``."""
    title, url, authors, categories, abstract, arxiv_id, listed_on, pdf_url, comment = row
    return paper_base(
        title=title,
        url=url,
        authors=authors,
        categories=categories,
        abstract=abstract,
        arxiv_id=arxiv_id,
        listed_on=listed_on,
        pdf_url=pdf_url,
        comment=comment,
    )


def paper_base_of(paper: Paper) -> CardView:
    return paper_card_from_row([getattr(paper, c.key) for c in CARD_COLUMNS])


@dataclass(frozen=True)
class ItemView:
    """One picked paper of a delivery: its rank, score and why, and its shared card."""

    rank: int
    score: float
    terms: Sequence[str]
    paper: PaperView
    paper_id: int | None = None  # the stored paper: never its own "liked" reason


@dataclass(frozen=True)
class Issue(IssueView):
    """An issue's view with what the templates add to ``IssueView`` (read with |default)."""

    subject_line: str = ""
    weekly: bool = False

    @property
    def cards(self) -> tuple[CardView, ...]:
        """The papers as cards (``build_issue_view`` makes every one a ``CardView``)."""
        return tuple(p for p in self.papers if isinstance(p, CardView))


# How each kind of reason reads (one home for the wording; a new ReasonKind adds a line).
REASON_TEXTS: dict[ReasonKind, str] = {
    ReasonKind.KEYWORD: mark("matches your keyword “%(subject)s”"),
    ReasonKind.TOPIC: mark("in your topic %(subject)s"),
    ReasonKind.LIKED: mark("like “%(subject)s”, which you marked more like this"),
    ReasonKind.LIBRARY: mark("like “%(subject)s” from your library"),
    ReasonKind.FOLLOWED: mark("by %(subject)s, whom you follow"),
}
_TITLE_IN_REASON = 80


def reason_views(found: Sequence[Reason], locale: str) -> tuple[ReasonView, ...]:
    """The reasons as sentences in ``locale`` (a long title cut at a word)."""
    views = (_reason_view(reason.kind, reason.subject, locale) for reason in found)
    return tuple(view for view in views if view is not None)


@functools.lru_cache(maxsize=16_384)
def _reason_view(kind: ReasonKind, subject: str, locale: str) -> ReasonView | None:
    # The same keyword, topic or liked title recurs in many picks of many issues.
    template = REASON_TEXTS.get(kind)
    if template is None:
        return None
    if kind in (ReasonKind.LIKED, ReasonKind.LIBRARY):
        subject = cut_words(readable(subject), _TITLE_IN_REASON)
    return ReasonView(kind.value, gettext(locale, template) % {"subject": subject})


def cut_words(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters, cut at a word with "…"."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:.–—- ")
    return cut + "…"


SUBJECT_LIMIT = 90
_WEEKLY_SUBJECT = mark("Your week: %(title)s")
_EMPTY_DAILY = mark("No new papers for you today")
_EMPTY_WEEKLY = mark("No new papers for you this week")


def subject_line(titles: Sequence[str], *, weekly: bool, locale: str) -> str:
    """The subject: led by the top paper's title, at most ``SUBJECT_LIMIT`` characters."""
    if not titles:
        return gettext(locale, _EMPTY_WEEKLY if weekly else _EMPTY_DAILY)
    if not weekly:
        return cut_words(titles[0], SUBJECT_LIMIT)
    frame = gettext(locale, _WEEKLY_SUBJECT)
    room = SUBJECT_LIMIT - len(frame % {"title": ""})
    return frame % {"title": cut_words(titles[0], room)}


_PREHEADER_LIMIT = 140


def preheader_line(titles: Sequence[str], *, locale: str) -> str:
    """The line before the issue (shown by mail clients after the subject): the next
    two titles, then how many more."""
    rest = list(titles[1:])
    if not rest:
        return ""
    shown = [cut_words(t, 60) for t in rest[:2]]
    line = gettext(locale, "Also: %(titles)s") % {"titles": " · ".join(shown)}
    more = len(rest) - len(shown)
    if more:
        line += " " + ngettext(locale, "and %(num)d more", "and %(num)d more", more) % {"num": more}
    return cut_words(line, _PREHEADER_LIMIT)


def rate_url(view_url: str, rank: int, choice: str) -> str:
    """The online issue at paper ``rank`` with ``choice`` (more, less) ready to confirm."""
    return f"{view_url}?rate={rank}&choice={choice}#paper-{rank}"


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
    reader: Reader | None = None,
) -> Issue:
    """The template context of one delivery, from plain data, in ``locale``.

    ``reader`` (``mail.readers``) words the "why" in the reader's own terms and makes a
    weekly reader's issue say so; without it the why is the matched terms alone.
    """
    locale = normalise_locale(locale)
    base = settings.public_url
    scoped = TokenData(subscriber_id, token_version, delivery_id)
    view_url = f"{base}/view/{tokens.make(Purpose.VIEW, scoped)}"
    interests_data = reader.interests if reader is not None else None
    followed = reader.followed if reader is not None else ()
    papers = tuple(_personal(item, view_url, interests_data, locale, followed) for item in items)
    count = len(papers)
    weekly = reader is not None and reader.weekly
    titles = [paper.title for paper in papers]
    return Issue(
        email=email,
        list_name=list_name,
        edition_label=edition_label(edition, locale),
        heading=ngettext(locale, "%(num)d new paper for you", "%(num)d new papers for you", count)
        % {"num": count},
        interests_line=_localised_interests(interests, locale),
        preheader=preheader_line(titles, locale=locale),
        papers=papers,
        view_url=view_url,
        contact_line=settings.contact_line,
        locale=locale,
        subject_line=subject_line(titles, weekly=weekly, locale=locale),
        weekly=weekly,
        **_subscriber_links(settings, tokens, subscriber_id, token_version),
    )


def _personal(
    item: ItemView,
    view_url: str,
    reader: ReaderInterests | None,
    locale: str,
    followed: Sequence[tuple[str, str]] = (),
) -> CardView:
    card = item.paper
    if not isinstance(card, CardView):  # a bare PaperView from an older caller
        card = CardView(**{f.name: getattr(card, f.name) for f in fields(card)})
    why: tuple[ReasonView, ...] = ()
    if reader is not None:
        if item.paper_id is not None and any(p.paper_id == item.paper_id for p in reader.liked):
            # Rated on this very issue: the paper is not a reason for itself.
            liked = [p for p in reader.liked if p.paper_id != item.paper_id]
            reader = replace(reader, liked=liked)
        found = reasons(terms=item.terms, categories=card.category_ids, reader=reader)
        author = followed_author(card.author_names, followed)
        if author is not None:
            found = (Reason(ReasonKind.FOLLOWED, author), *found)
        why = reason_views(found, locale)
    # The shared card with this reader's parts: a copy of its fields, not
    # dataclasses.replace, which re-runs __init__ through fields() (twice the cost,
    # on every pick of every issue).
    personal = object.__new__(CardView)
    personal.__dict__.update(
        card.__dict__,
        terms=", ".join(item.terms),
        score=item.score,
        more_url=rate_url(view_url, item.rank, "more"),
        less_url=rate_url(view_url, item.rank, "less"),
        rank=item.rank,
        why=why,
    )
    return personal


def issue_view(
    delivery: Delivery, *, settings: Settings, tokens: Tokens, list_name: str = LIST_NAME
) -> Issue:
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
            ItemView(item.rank, item.score, item.terms, paper_base_of(item.paper), item.paper_id)
            for item in delivery.items
        ],
        list_name=list_name,
        locale=subscriber.locale,
        reader=reader_of(subscriber, rated_before=delivery.sent_at),
    )
