"""arXiv over OAI-PMH: ListRecords in the ``arXiv`` metadata format, resumed by token.

A run harvests from ``since`` (else the from-date kept by the previous run, else
``lookback_days`` ago) and returns, as its state, the date of the server's first
response: the next run starts there (the OAI-PMH incremental-harvest rule). arXiv
answers 503 with Retry-After while it builds a list; the HTTP client waits as told.
A resumption token seen twice means the server is looping: the run stops with an error.
Deleted records are skipped; ``noRecordsMatch`` is an empty harvest, not an error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta
from typing import Any

from newsletter.papers.sources import Problem
from newsletter.papers.sources.arxiv_api import AtomError, parse_xml
from newsletter.papers.sources.http import HttpClient, require_content_type
from newsletter.papers.sources.jsonl import RecordError, parse_record
from newsletter.papers.sources.registry import FetchResult

DEFAULT_BASE_URL = "https://oaipmh.arxiv.org/oai"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
ARXIV = "{http://arxiv.org/OAI/arXiv/}"


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    return found.text if found is not None and found.text is not None else None


def _author(element: ET.Element) -> str:
    parts = [
        _text(element, f"{ARXIV}forenames"),
        _text(element, f"{ARXIV}keyname"),
        _text(element, f"{ARXIV}suffix"),
    ]
    return " ".join(p.strip() for p in parts if p and p.strip())


def record_to_raw(metadata: ET.Element) -> dict[str, Any]:
    """The fields of one ``<arXiv>`` metadata element, in the JSONL record's shape."""
    identifier = (_text(metadata, f"{ARXIV}id") or "").strip()
    return {
        "id": identifier,
        "title": _text(metadata, f"{ARXIV}title"),
        "summary": _text(metadata, f"{ARXIV}abstract"),
        "authors": [
            name
            for author in metadata.findall(f"{ARXIV}authors/{ARXIV}author")
            if (name := _author(author))
        ],
        "categories": (_text(metadata, f"{ARXIV}categories") or "").split(),
        "comment": _text(metadata, f"{ARXIV}comments"),
        "pdf": f"https://arxiv.org/pdf/{identifier}" if identifier else None,
        # The first version's date: when the paper was new (a later version keeps it).
        "date": (_text(metadata, f"{ARXIV}created") or "")[:10] or None,
    }


class OaiPmhSource:
    kind = "oai_pmh"

    def __init__(
        self,
        name: str,
        client: HttpClient,
        *,
        base_url: str = DEFAULT_BASE_URL,
        set_spec: str | None = None,
        lookback_days: int = 2,
        max_pages: int = 1000,
    ) -> None:
        self.name = name
        self.client = client
        self.base_url = base_url
        self.set_spec = set_spec
        self.lookback_days = lookback_days
        self.max_pages = max_pages

    def close(self) -> None:
        self.client.close()

    def from_date(self, *, since: date | None, state: str | None, today: date) -> date:
        if since is not None:
            return since
        if state:
            try:
                return date.fromisoformat(state)
            except ValueError:
                pass  # an unreadable state falls back to the default window
        return today - timedelta(days=self.lookback_days)

    def fetch(self, *, since: date | None, state: str | None, today: date) -> FetchResult:
        start = self.from_date(since=since, state=state, today=today)
        params: dict[str, str | int] = {
            "verb": "ListRecords",
            "metadataPrefix": "arXiv",
            "from": start.isoformat(),
        }
        if self.set_spec:
            params["set"] = self.set_spec
        result = FetchResult()
        seen_tokens: set[str] = set()
        for page_number in range(1, self.max_pages + 1):
            response = self.client.get(self.base_url, params)
            location = f"{self.base_url} page {page_number}"
            require_content_type(self.client, response, "xml")
            try:
                token = self._parse_page(response.content, location, today, result)
            except AtomError as exc:
                raise self.client.fail(location, str(exc)) from None
            if not token:
                break
            if token in seen_tokens:
                raise self.client.fail(
                    location,
                    f"resumption token {token!r} was already used: the server is looping; "
                    "nothing was stored",
                )
            seen_tokens.add(token)
            params = {"verb": "ListRecords", "resumptionToken": token}
        else:
            raise self.client.fail(
                self.base_url,
                f"still more pages after max_pages={self.max_pages}; nothing was stored",
            )
        if result.state is None:
            result.state = today.isoformat()
        result.requests = self.client.requests
        return result

    def _parse_page(
        self, body: bytes, location: str, today: date, result: FetchResult
    ) -> str | None:
        """Add one page's records to ``result``; return the resumption token, if any."""
        root = parse_xml(body, location)
        if root.tag != f"{OAI}OAI-PMH":
            raise AtomError(f"expected an <OAI-PMH> response, got <{root.tag}>")
        if result.state is None:
            # The server's clock, not ours, decides where the next harvest starts.
            result.state = (_text(root, f"{OAI}responseDate") or "")[:10] or None
        for error in root.findall(f"{OAI}error"):
            code = error.get("code", "")
            if code == "noRecordsMatch":
                return None
            raise AtomError(f"OAI-PMH error {code}: {(error.text or '').strip()}")
        listing = root.find(f"{OAI}ListRecords")
        if listing is None:
            raise AtomError("no <ListRecords> in the response")
        for number, record in enumerate(listing.findall(f"{OAI}record"), start=1):
            header = record.find(f"{OAI}header")
            if header is not None and header.get("status") == "deleted":
                continue
            where = f"{location} record {number}"
            metadata = record.find(f"{OAI}metadata/{ARXIV}arXiv")
            if metadata is None:
                result.problems.append(Problem(where, "no arXiv metadata"))
                continue
            try:
                result.records.append(parse_record(record_to_raw(metadata), default_date=today))
            except RecordError as exc:
                result.problems.append(Problem(where, str(exc)))
        token = (_text(listing, f"{OAI}resumptionToken") or "").strip()
        return token or None
