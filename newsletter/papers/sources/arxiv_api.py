"""The arXiv query API (Atom): a category list and/or a query, over a submittedDate window.

Pages through the results with ``start``/``max_results``, newest first, with arXiv's
courtesy delay between requests (3 s unless configured otherwise). The window runs from
``since`` (else the day of the previous run, else ``lookback_days`` ago) to today.
The API sometimes answers a page with no entries although more results exist; such a
page is asked for again a few times before the run fails.
"""

from __future__ import annotations

import re

# expat >= 2.4.1 bounds entity expansion and ElementTree resolves no external entities.
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from newsletter.papers.sources import PaperRecord, Problem
from newsletter.papers.sources.http import HttpClient, require_content_type
from newsletter.papers.sources.jsonl import RecordError, parse_record
from newsletter.papers.sources.registry import FetchResult

DEFAULT_BASE_URL = "https://export.arxiv.org/api/query"
ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"
_ABS_PREFIX = re.compile(r"^https?://(?:export\.)?arxiv\.org/abs/")
_CODE_SEPARATORS = re.compile(r"[,;]")


class AtomError(ValueError):
    """The response is not a usable arXiv Atom feed."""


@dataclass
class AtomPage:
    total: int
    start: int
    entries: int
    records: list[PaperRecord]
    problems: list[Problem]


def parse_xml(body: bytes, location: str) -> ET.Element:
    """Parse a whole XML document, or raise ``AtomError`` saying where it broke.

    ElementTree resolves no external entities, and expat >= 2.4.1 bounds entity
    expansion, so a hostile feed cannot read files or blow up memory.
    """
    if not body.strip():
        raise AtomError("empty response body")
    try:
        return ET.fromstring(body)  # noqa: S314 - see the docstring
    except ET.ParseError as exc:
        line, column = exc.position
        raise AtomError(f"not well-formed XML (line {line}, column {column})") from None


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    return found.text if found is not None and found.text is not None else None


def _int(root: ET.Element, path: str, default: int) -> int:
    value = _text(root, path)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise AtomError(f"{path.split('}')[-1]} {value!r} is not a number") from None


def _entry_to_raw(entry: ET.Element) -> dict[str, Any]:
    identifier = _ABS_PREFIX.sub("", (_text(entry, f"{ATOM}id") or "").strip())
    labels: list[str] = []
    for category in entry.findall(f"{ATOM}category"):
        term = category.get("term") or ""
        labels.extend(part.strip() for part in _CODE_SEPARATORS.split(term) if part.strip())
    pdf = next(
        (
            link.get("href")
            for link in entry.findall(f"{ATOM}link")
            if link.get("title") == "pdf" and link.get("href")
        ),
        None,
    )
    if pdf and pdf.startswith("http://arxiv.org/"):
        pdf = "https://" + pdf.removeprefix("http://")
    published = _text(entry, f"{ATOM}published") or ""
    return {
        "id": identifier,
        "title": _text(entry, f"{ATOM}title"),
        "summary": _text(entry, f"{ATOM}summary"),
        "authors": [
            name
            for author in entry.findall(f"{ATOM}author")
            if (name := _text(author, f"{ATOM}name"))
        ],
        "categories": labels,
        "pdf": pdf,
        "comment": _text(entry, f"{ARXIV}comment"),
        "date": published[:10] or None,
    }


def parse_atom(body: bytes, *, location: str, today: date) -> AtomPage:
    """One page of the API; bad entries become problems, a bad feed raises ``AtomError``."""
    root = parse_xml(body, location)
    if root.tag != f"{ATOM}feed":
        raise AtomError(f"expected an Atom <feed>, got <{root.tag}>")
    entries = root.findall(f"{ATOM}entry")
    # The API reports a bad query as a feed with one entry whose id is .../api/errors#...
    for entry in entries:
        if "/api/errors" in (_text(entry, f"{ATOM}id") or ""):
            message = (_text(entry, f"{ATOM}summary") or "unknown error").strip()
            raise AtomError(f"the arXiv API refused the query: {message}")
    page = AtomPage(
        total=_int(root, f"{OPENSEARCH}totalResults", len(entries)),
        start=_int(root, f"{OPENSEARCH}startIndex", 0),
        entries=len(entries),
        records=[],
        problems=[],
    )
    for number, entry in enumerate(entries, start=1):
        try:
            page.records.append(parse_record(_entry_to_raw(entry), default_date=today))
        except RecordError as exc:
            page.problems.append(Problem(f"{location} entry {number}", str(exc)))
    return page


def build_query(categories: tuple[str, ...], query: str, start: date, end: date) -> str:
    """``(cat:A OR cat:B) AND (query) AND submittedDate:[start TO end]``."""
    parts = []
    if categories:
        parts.append("(" + " OR ".join(f"cat:{c}" for c in categories) + ")")
    if query:
        parts.append(f"({query})")
    parts.append(f"submittedDate:[{start:%Y%m%d}0000 TO {end:%Y%m%d}2359]")
    return " AND ".join(parts)


class ArxivApiSource:
    kind = "arxiv_api"

    def __init__(
        self,
        name: str,
        client: HttpClient,
        *,
        base_url: str = DEFAULT_BASE_URL,
        categories: tuple[str, ...] = (),
        query: str = "",
        page_size: int = 100,
        max_records: int = 5000,
        lookback_days: int = 2,
        empty_page_retries: int = 3,
    ) -> None:
        self.name = name
        self.client = client
        self.base_url = base_url
        self.categories = categories
        self.query = query
        self.page_size = page_size
        self.max_records = max_records
        self.lookback_days = lookback_days
        self.empty_page_retries = empty_page_retries

    def close(self) -> None:
        self.client.close()

    def window(self, *, since: date | None, state: str | None, today: date) -> tuple[date, date]:
        if since is not None:
            return since, today
        if state:
            try:
                return date.fromisoformat(state), today
            except ValueError:
                pass  # an unreadable state falls back to the default window
        return today - timedelta(days=self.lookback_days), today

    def fetch(self, *, since: date | None, state: str | None, today: date) -> FetchResult:
        start_day, end_day = self.window(since=since, state=state, today=today)
        search = build_query(self.categories, self.query, start_day, end_day)
        result = FetchResult(state=today.isoformat())
        start = 0
        empty_retries = 0
        while start < self.max_records:
            params: dict[str, str | int] = {
                "search_query": search,
                "start": start,
                "max_results": min(self.page_size, self.max_records - start),
                "sortBy": "submittedDate",
                "sortOrder": "descending",
            }
            response = self.client.get(self.base_url, params)
            location = f"{self.base_url}?start={start}"
            require_content_type(self.client, response, "xml")
            try:
                page = parse_atom(response.content, location=location, today=today)
            except AtomError as exc:
                raise self.client.fail(location, str(exc)) from None
            if page.entries == 0:
                if start >= page.total:
                    break
                empty_retries += 1
                if empty_retries > self.empty_page_retries:
                    raise self.client.fail(
                        location,
                        f"empty page although the feed reports {page.total} results "
                        f"(asked {empty_retries} times)",
                    )
                continue
            empty_retries = 0
            result.records.extend(page.records)
            result.problems.extend(page.problems)
            start += page.entries
            if start >= page.total:
                break
        else:
            result.problems.append(
                Problem(
                    self.base_url,
                    f"stopped at max_records={self.max_records} although the feed reports "
                    "more results; narrow the query or raise max_records",
                )
            )
        del result.records[self.max_records :]  # even if a page was longer than asked
        result.requests = self.client.requests
        return result
