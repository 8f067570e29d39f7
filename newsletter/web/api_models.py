"""The JSON API's request and response bodies (pydantic), with their bounds.

The bounds here only keep a request from making the validation do silly amounts of
work and describe the fields in the OpenAPI document; what is really allowed is said
once, by ``newsletter.web.forms``, which the operations call as the pages do.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from newsletter.i18n import LOCALES
from newsletter.web.forms import (
    DEFAULT_SEND_HOUR,
    DEFAULT_WEEKDAY,
    MAX_EMAIL,
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_PAPERS,
    WEIGHTS,
    whole_number,
)

# Generous bounds on list lengths: ``forms`` says what is really allowed, these
# only keep a request from making the validation do silly amounts of work.
_MAX_TOPICS = 200
_MAX_KEYWORD_ITEMS = 4 * MAX_KEYWORDS


def _plain_text(value: str) -> str:
    """No control characters (a newline included) and no lone surrogates: text a database
    of either kind stores as it is."""
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ValueError("must not contain control characters")
    return value


def _text(limit: int, **kwargs: Any) -> Any:
    return Field(max_length=limit, **kwargs)


Text = Annotated[str, AfterValidator(_plain_text)]
Token = Annotated[
    str,
    Path(description="The signed token from a link in a mail (the last part of its path)."),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeywordChoice(_Model):
    phrase: Annotated[Text, _text(MAX_KEYWORD_LENGTH, min_length=1)]
    weight: float = Field(
        default=1.0,
        description="How much it counts beside a topic (1): 0.5, 1 or 2.",
        json_schema_extra={"enum": [float(w) for w in sorted(set(WEIGHTS.values()))]},
    )


class KeywordWeight(BaseModel):
    phrase: str
    weight: float


FrequencyName = Literal["daily", "weekly"]
SendHour = Annotated[
    int, whole_number(0, 23), Field(ge=0, le=23, description="Local hour the issue is sent.")
]
SendWeekday = Annotated[
    int,
    whole_number(0, 6),
    Field(ge=0, le=6, description="Day a weekly issue is sent: 0 = Monday ... 6 = Sunday."),
]
MaxPapers = Annotated[int, whole_number(1, MAX_PAPERS), Field(ge=1, le=MAX_PAPERS)]
TopicIds = Annotated[
    list[Annotated[Text, _text(64)]],
    Field(max_length=_MAX_TOPICS, description="Topic ids from the catalogue, e.g. cs.CL."),
]
Timezone = Annotated[Text, _text(64, description="An IANA time zone, e.g. Europe/Berlin.")]


class SubscribeRequest(_Model):
    email: Annotated[Text, _text(MAX_EMAIL)]
    topics: TopicIds = []
    keywords: Annotated[
        list[Annotated[Text, _text(MAX_KEYWORD_LENGTH)]], Field(max_length=_MAX_KEYWORD_ITEMS)
    ] = []
    frequency: FrequencyName = "daily"
    timezone: Timezone = "UTC"
    send_hour: SendHour = DEFAULT_SEND_HOUR
    send_weekday: SendWeekday = DEFAULT_WEEKDAY


class Accepted(BaseModel):
    status: Literal["check_email"]
    message: str


class Confirmed(BaseModel):
    status: Literal["confirmed", "already"]
    manage_token: str = Field(description="The token for /api/v1/subscribers/{token}/...")


class PreferencesUpdate(_Model):
    """The whole set of choices (what is left out takes its default, as on the page)."""

    topics: TopicIds = []
    keywords: Annotated[list[KeywordChoice], Field(max_length=_MAX_KEYWORD_ITEMS)] = []
    frequency: FrequencyName = "daily"
    timezone: Timezone = "UTC"
    send_hour: SendHour = DEFAULT_SEND_HOUR
    send_weekday: Annotated[
        SendWeekday | None,
        Field(description="Day a weekly issue is sent, 0 = Monday; left out, it stays."),
    ] = None
    max_papers: MaxPapers | None = None
    always_send: bool = False
    language: Annotated[
        Annotated[Text, _text(8)] | None,
        Field(description=f"One of {', '.join(sorted(LOCALES))}; left out, it stays."),
    ] = None


class Preferences(BaseModel):
    status: str = Field(description="active, paused, pending, unsubscribed or bounced")
    email: str
    pending_email: str | None
    topics: list[str]
    keywords: list[KeywordWeight]
    frequency: str
    timezone: str
    send_hour: int
    send_weekday: int = Field(description="0 = Monday ... 6 = Sunday (weekly issues).")
    max_papers: int | None
    always_send: bool
    language: str


class Vote(_Model):
    vote: Literal["more", "less"]


class FeedbackRecorded(BaseModel):
    vote: Literal["more", "less"]
    rank: int
    paper: str = Field(description="The paper's id at its source, e.g. an arXiv id.")
    title: str
    url: str


class Unsubscribed(BaseModel):
    status: Literal["unsubscribed"]
