"""Library entries the database does not hold, fetched from the arXiv API by id.

The query API's ``id_list`` through the same polite client and Atom parser as the
``arxiv_api`` source (newsletter/papers/sources/arxiv_api.py). The API's address and
courtesy delay are the first configured ``arxiv_api`` source's, else arXiv's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from newsletter.errors import NewsletterError
from newsletter.papers.sources import PaperRecord
from newsletter.papers.sources.arxiv_api import DEFAULT_BASE_URL, AtomError, parse_atom
from newsletter.papers.sources.http import HttpClient, HttpOptions, require_content_type
from newsletter.settings import Settings

# Ids per request: the API answers id_list queries of this size quickly.
CHUNK = 50


class RefusedIds(NewsletterError):
    """The API answered, but refused the query (an id it calls malformed): retrying
    would get the same answer."""


# Given ids, returns the records arXiv knows (an id missing from the answer is unknown);
# raises FetchError when the API cannot be reached.
Fetcher = Callable[[Sequence[str]], dict[str, PaperRecord]]


def fetch_by_ids(
    client: HttpClient, ids: Sequence[str], *, base_url: str, today: date
) -> dict[str, PaperRecord]:
    """The records of ``ids`` arXiv knows, by id; ``FetchError`` if the API is down,
    ``RefusedIds`` if it refuses the query."""
    found: dict[str, PaperRecord] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        params: dict[str, str | int] = {"id_list": ",".join(chunk), "max_results": len(chunk)}
        response = client.get(base_url, params)
        require_content_type(client, response, "xml")
        try:
            page = parse_atom(response.content, location=base_url, today=today)
        except AtomError as exc:
            if "refused" in str(exc):
                raise RefusedIds(str(exc)) from None
            raise client.fail(base_url, str(exc)) from None
        found.update((r.external_id, r) for r in page.records if r.title)
    return found


class ArxivFetcher:
    """A ``Fetcher`` over one HTTP client; close it when done."""

    def __init__(self, settings: Settings, *, today: date) -> None:
        table = next((t for t in settings.sources.values() if t.get("kind") == "arxiv_api"), {})
        self.base_url = str(table.get("base_url", DEFAULT_BASE_URL))
        delay = float(table.get("delay_seconds", 3.0))
        self.client = HttpClient(
            HttpOptions.from_settings(settings, delay_seconds=delay), source="arxiv (library)"
        )
        self.today = today

    def __call__(self, ids: Sequence[str]) -> dict[str, PaperRecord]:
        return fetch_by_ids(self.client, ids, base_url=self.base_url, today=self.today)

    def close(self) -> None:
        self.client.close()
