"""Form input: bounded, validated, turned into ``Choices`` (or a message for the form)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from zoneinfo import available_timezones

from babel.dates import get_day_names
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from newsletter.errors import NewsletterError
from newsletter.integers import NotInRange, small_int
from newsletter.mail.addresses import normalise_email
from newsletter.models import Frequency
from newsletter.papers.catalogue import CatalogueTopic, resolve_topic
from newsletter.papers.sources import normalise_space
from newsletter.subscribers.accounts import Choices
from newsletter.subscribers.roster import check_frequency, check_timezone

MAX_EMAIL = 320
MAX_KEYWORDS = 20
MAX_KEYWORD_LENGTH = 200
MAX_KEYWORDS_TEXT = MAX_KEYWORDS * (MAX_KEYWORD_LENGTH + 2)
MAX_PAPERS = 50
DEFAULT_SEND_HOUR = 7
DEFAULT_WEEKDAY = 0  # Monday
# How much a keyword counts beside a topic (1.0): the choices the form offers.
WEIGHTS = {"0.5": 0.5, "1": 1.0, "2": 2.0}


class FormError(NewsletterError):
    """A form field is invalid; the message says which and why, for the person typing."""


@cache
def timezones() -> tuple[str, ...]:
    """IANA zones a person would pick (Area/City), and UTC first."""
    zones = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
    return ("UTC", *zones)


@cache
def weekday_choices(locale: str = "en") -> tuple[tuple[str, str], ...]:
    """The weekday select's options, ("0", "Monday") .. ("6", "Sunday"), named in
    ``locale`` from Babel's locale data (no strings of ours to translate)."""
    names = get_day_names("wide", locale=locale)
    return tuple((str(day), str(names[day])) for day in range(7))


# Control characters (NUL, which PostgreSQL refuses in text, among them) and lone
# surrogates (which no encoding accepts) have no place in any form field.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def bounded(raw: str | None, limit: int, label: str) -> str:
    value = raw or ""
    if len(value) > limit:
        raise FormError(f"{label} is too long (at most {limit} characters).")
    if _UNPRINTABLE.search(value):
        raise FormError(f"{label} contains characters that cannot be stored.")
    return value


def parse_email(raw: str | None) -> str:
    value = bounded(raw, MAX_EMAIL, "The address").strip()
    if not value:
        raise FormError("Please enter your email address.")
    try:
        return normalise_email(value)
    except NewsletterError:
        raise FormError("That does not look like an email address; please check it.") from None


def parse_topics(catalogue: dict[str, CatalogueTopic], raw: Sequence[str]) -> tuple[str, ...]:
    if len(raw) > len(catalogue):
        raise FormError("Too many topics.")
    try:
        return tuple(dict.fromkeys(resolve_topic(catalogue, t[:64]).id for t in raw))
    except NewsletterError:
        raise FormError("Please pick topics from the list.") from None


def split_keywords(raw: str | None) -> list[str]:
    """Keywords typed one per line or separated by semicolons."""
    text = bounded(raw, MAX_KEYWORDS_TEXT, "The keywords")
    return [k for k in (normalise_space(part) for part in re.split(r"[;\n\r]+", text)) if k]


def parse_keywords(
    keywords: Sequence[str], weights: Sequence[str] | None = None
) -> tuple[tuple[str, float], ...]:
    """Keyword phrases with their weights; blanks dropped, repeats merged (the first wins)."""
    if len(keywords) > 4 * MAX_KEYWORDS:
        raise FormError(f"Too many keywords (at most {MAX_KEYWORDS}).")
    kept: dict[str, tuple[str, float]] = {}
    for index, raw in enumerate(keywords):
        phrase = normalise_space(bounded(raw, 4 * MAX_KEYWORD_LENGTH, "A keyword"))
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise FormError(f"A keyword is too long (at most {MAX_KEYWORD_LENGTH} characters).")
        weight_raw = weights[index] if weights is not None and index < len(weights) else "1"
        if weight_raw not in WEIGHTS:
            raise FormError("Please pick a weight from the list.")
        kept.setdefault(phrase.casefold(), (phrase, WEIGHTS[weight_raw]))
    if len(kept) > MAX_KEYWORDS:
        raise FormError(f"Too many keywords (at most {MAX_KEYWORDS}).")
    return tuple(kept.values())


def parse_frequency(raw: str | None) -> Frequency:
    try:
        return check_frequency(bounded(raw, 16, "The frequency") or "daily")
    except NewsletterError:
        raise FormError("Please choose daily or weekly.") from None


def parse_timezone(raw: str | None) -> str:
    value = bounded(raw, 64, "The time zone").strip() or "UTC"
    try:
        return check_timezone(value)
    except NewsletterError:
        raise FormError("Please pick a time zone from the list.") from None


def parse_weekday(raw: str | None) -> int:
    value = bounded(raw, 8, "The weekday").strip()
    if not value:
        return DEFAULT_WEEKDAY
    try:
        return small_int(value, low=0, high=6)
    except NotInRange:
        raise FormError("Please pick a weekday from the list.") from None


def parse_int(raw: str | None, *, low: int, high: int, label: str) -> int:
    """A whole number in ``low..high`` typed into a form (``integers.small_int``'s rule)."""
    try:
        return small_int(bounded(raw, 8, label), low=low, high=high)
    except NotInRange as exc:
        raise FormError(f"{label} {exc}.") from None


def whole_number(low: int, high: int) -> BeforeValidator:
    """``parse_int``'s rule for a FastAPI parameter or a pydantic field (a JSON value, a
    path segment, a query): pydantic alone would take "1_0", "7.0" or true."""

    def check(value: object) -> int:
        try:
            if isinstance(value, str | int):
                return small_int(value, low=low, high=high)
        except NotInRange:
            pass
        raise PydanticCustomError(
            "whole_number",
            "Input should be a whole number from {low} to {high}",
            {"low": low, "high": high},
        )

    return BeforeValidator(check)


def parse_choices(
    catalogue: dict[str, CatalogueTopic],
    *,
    topics: Sequence[str],
    keywords: Sequence[str],
    weights: Sequence[str] | None,
    frequency: str | None,
    timezone: str | None,
    send_hour: str | None,
    max_papers: str | None = None,
    always_send: bool = False,
    weekday: str | None = None,
) -> Choices:
    """Validate a whole preferences form (the subscribe form is one too)."""
    chosen_topics = parse_topics(catalogue, topics)
    chosen_keywords = parse_keywords(keywords, weights)
    if not chosen_topics and not chosen_keywords:
        raise FormError("Pick at least one topic or type a keyword, so we know what to send.")
    papers = (max_papers or "").strip()
    return Choices(
        topics=chosen_topics,
        keywords=chosen_keywords,
        frequency=parse_frequency(frequency),
        timezone=parse_timezone(timezone),
        send_hour=parse_int(send_hour or str(DEFAULT_SEND_HOUR), low=0, high=23, label="The hour"),
        max_papers=(
            parse_int(papers, low=1, high=MAX_PAPERS, label="Papers per issue") if papers else None
        ),
        always_send=always_send,
        send_weekday=parse_weekday(weekday),
    )
