"""Form input: bounded, validated, turned into ``Choices`` (or a message for the form)."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from zoneinfo import available_timezones

from babel.dates import get_day_names
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from newsletter.errors import NewsletterError
from newsletter.i18n import LOCALES
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
    """A form field is invalid; the message says which and why, for the person typing.

    ``field`` names the form field at fault (the page marks it ``aria-invalid`` and puts
    the focus on it); None when no one field is."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# The areas of canonical IANA names (Area/City): the fallback filter when the system has
# no zone.tab. It drops "US/Pacific", "GB" and "Etc/GMT+5", not Area/City aliases.
_AREAS = frozenset(
    [
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    ]
)


def _zone_tab() -> frozenset[str]:
    """The zones of tzdata's ``zone.tab`` (one or more per country, no legacy aliases
    such as Asia/Calcutta), or nothing when the system has no such file."""
    for directory in zoneinfo.TZPATH:
        try:
            text = (Path(directory) / "zone.tab").read_text(encoding="utf-8")
        except OSError:
            continue
        rows = (line.split("\t") for line in text.splitlines() if not line.startswith("#"))
        return frozenset(row[2] for row in rows if len(row) >= 3)
    return frozenset()


@cache
def timezones() -> tuple[str, ...]:
    """The time zones the forms offer: UTC, then canonical Area/City names (zone.tab's
    where the system has it), sorted. Any valid zone is still accepted (``parse_timezone``)."""
    available = available_timezones()
    curated = _zone_tab() & available
    if not curated:
        curated = frozenset(z for z in available if z.split("/", 1)[0] in _AREAS and "/" in z)
    return ("UTC", *sorted(curated))


@cache
def timezone_groups() -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    """``timezones()`` by area for ``<optgroup>``: (area, ((zone, label), ...)), the
    label the city as people write it ("Argentina / Buenos Aires")."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for zone in timezones()[1:]:
        area, _, city = zone.partition("/")
        groups.setdefault(area, []).append((zone, city.replace("_", " ").replace("/", " / ")))
    return tuple((area, tuple(zones)) for area, zones in sorted(groups.items()))


@cache
def weekday_choices(locale: str = "en") -> tuple[tuple[str, str], ...]:
    """The weekday select's options, ("0", "Monday") .. ("6", "Sunday"), named in
    ``locale`` from Babel's locale data (no strings of ours to translate)."""
    names = get_day_names("wide", locale=locale)
    return tuple((str(day), str(names[day])) for day in range(7))


# Control characters (NUL, which PostgreSQL refuses in text, among them) and lone
# surrogates (which no encoding accepts) have no place in any form field.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def bounded(raw: str | None, limit: int, label: str, *, field: str | None = None) -> str:
    value = raw or ""
    if len(value) > limit:
        raise FormError(f"{label} is too long (at most {limit} characters).", field=field)
    if _UNPRINTABLE.search(value):
        raise FormError(f"{label} contains characters that cannot be stored.", field=field)
    return value


def parse_email(raw: str | None) -> str:
    value = bounded(raw, MAX_EMAIL, "The address", field="email").strip()
    if not value:
        raise FormError("Please enter your email address.", field="email")
    try:
        return normalise_email(value)
    except NewsletterError:
        raise FormError(
            "That does not look like an email address; please check it.", field="email"
        ) from None


def parse_topics(catalogue: dict[str, CatalogueTopic], raw: Sequence[str]) -> tuple[str, ...]:
    if len(raw) > len(catalogue):
        raise FormError("Too many topics.", field="topics")
    try:
        return tuple(dict.fromkeys(resolve_topic(catalogue, t[:64]).id for t in raw))
    except NewsletterError:
        raise FormError("Please pick topics from the list.", field="topics") from None


def split_keywords(raw: str | None) -> list[str]:
    """Keywords typed one per line or separated by semicolons."""
    text = bounded(raw, MAX_KEYWORDS_TEXT, "The keywords", field="keywords")
    return [k for k in (normalise_space(part) for part in re.split(r"[;\n\r]+", text)) if k]


def parse_keywords(
    keywords: Sequence[str], weights: Sequence[str] | None = None
) -> tuple[tuple[str, float], ...]:
    """Keyword phrases with their weights; blanks dropped, repeats merged (the first wins)."""
    if len(keywords) > 4 * MAX_KEYWORDS:
        raise FormError(f"Too many keywords (at most {MAX_KEYWORDS}).", field="keywords")
    kept: dict[str, tuple[str, float]] = {}
    for index, raw in enumerate(keywords):
        phrase = normalise_space(
            bounded(raw, 4 * MAX_KEYWORD_LENGTH, "A keyword", field="keywords")
        )
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise FormError(
                f"A keyword is too long (at most {MAX_KEYWORD_LENGTH} characters).",
                field="keywords",
            )
        weight_raw = weights[index] if weights is not None and index < len(weights) else "1"
        if weight_raw not in WEIGHTS:
            raise FormError("Please pick a weight from the list.", field="keywords")
        kept.setdefault(phrase.casefold(), (phrase, WEIGHTS[weight_raw]))
    if len(kept) > MAX_KEYWORDS:
        raise FormError(f"Too many keywords (at most {MAX_KEYWORDS}).", field="keywords")
    return tuple(kept.values())


def parse_frequency(raw: str | None) -> Frequency:
    try:
        return check_frequency(bounded(raw, 16, "The frequency", field="frequency") or "daily")
    except NewsletterError:
        raise FormError("Please choose daily or weekly.", field="frequency") from None


def parse_timezone(raw: str | None) -> str:
    value = bounded(raw, 64, "The time zone", field="timezone").strip() or "UTC"
    try:
        return check_timezone(value)
    except NewsletterError:
        raise FormError("Please pick a time zone from the list.", field="timezone") from None


def parse_weekday(raw: str | None) -> int:
    value = bounded(raw, 8, "The weekday", field="weekday").strip()
    if not value:
        return DEFAULT_WEEKDAY
    try:
        return small_int(value, low=0, high=6)
    except NotInRange:
        raise FormError("Please pick a weekday from the list.", field="weekday") from None


def parse_int(raw: str | None, *, low: int, high: int, label: str, field: str | None = None) -> int:
    """A whole number in ``low..high`` typed into a form (``integers.small_int``'s rule)."""
    try:
        return small_int(bounded(raw, 8, label, field=field), low=low, high=high)
    except NotInRange as exc:
        raise FormError(f"{label} {exc}.", field=field) from None


def parse_language(raw: str | None) -> str | None:
    """A language of ``i18n.LOCALES``, or None when the form did not ask."""
    if not raw:
        return None
    if raw not in LOCALES:
        raise FormError("Please pick a language from the list.", field="language")
    return raw


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
    language: str | None = None,
) -> Choices:
    """Validate a whole preferences form (the subscribe form is one too)."""
    chosen_topics = parse_topics(catalogue, topics)
    chosen_keywords = parse_keywords(keywords, weights)
    if not chosen_topics and not chosen_keywords:
        raise FormError(
            "Pick at least one topic or type a keyword, so we know what to send.",
            field="keywords",
        )
    papers = (max_papers or "").strip()
    return Choices(
        topics=chosen_topics,
        keywords=chosen_keywords,
        frequency=parse_frequency(frequency),
        timezone=parse_timezone(timezone),
        send_hour=parse_int(
            send_hour or str(DEFAULT_SEND_HOUR), low=0, high=23, label="The hour", field="send_hour"
        ),
        max_papers=(
            parse_int(papers, low=1, high=MAX_PAPERS, label="Papers per issue", field="max_papers")
            if papers
            else None
        ),
        always_send=always_send,
        send_weekday=parse_weekday(weekday),
        locale=parse_language(language),
    )
