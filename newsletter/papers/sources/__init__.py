"""Paper sources: each yields normalised ``PaperRecord``s and reports bad records.

One module per feed format; all share the record type and the problem type here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

_WS = re.compile(r"\s+")
# New-style (2605.00134) and old-style (math.GT/0309136, hep-th/9901001) arXiv ids,
# each with an optional version suffix.
ARXIV_ID = re.compile(
    r"^(?P<id>\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7})(?:v(?P<version>\d+))?$",
    re.ASCII,
)
# arXiv category codes (cs.CL, math.AG, hep-th, q-bio.NC); anything else in the
# categories list is an ACM (I.2.10) or MSC (68T50) classification code.
ARXIV_CATEGORY = re.compile(r"^[a-z][a-z\-]*(?:\.[A-Za-z][A-Za-z\-]*)?$")


# The days a listing, an edition or a ``--since`` may fall on: any real one, and far
# enough from date.min and date.max that the weeks of date arithmetic around an
# edition (catch-up windows, weekly issues, time zones) can never overflow.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_day(text: str) -> date:
    """A ``YYYY-MM-DD`` day from FIRST_DAY to LAST_DAY; ``ValueError`` says why not."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{shown!r} is not a YYYY-MM-DD date") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{day} is not between {FIRST_DAY} and {LAST_DAY}")
    return day


def normalise_space(value: str) -> str:
    """Collapse runs of whitespace (arXiv abstracts keep their line breaks)."""
    return _WS.sub(" ", value).strip()


@dataclass(frozen=True)
class PaperRecord:
    """A paper as a source delivers it, normalised."""

    external_id: str
    version: int | None
    title: str
    abstract: str
    authors: tuple[str, ...]
    categories: tuple[str, ...]
    class_codes: tuple[str, ...]
    url: str
    pdf_url: str | None
    comment: str | None
    listed_on: date


@dataclass(frozen=True)
class Problem:
    """A record that was skipped, with where it was and why."""

    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class ParseReport:
    records: list[PaperRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
