"""Hugging Face Daily Papers: ``GET /api/daily_papers?date=YYYY-MM-DD``, one request a day.

The answer is a JSON list; each item has a ``paper`` object with the arXiv ``id``,
``title``, ``summary`` and ``authors`` (objects with a ``name``). A paper's listing
date is the day it was featured. The days run from ``since`` (else the day of the
previous run, else ``lookback_days`` ago) to today, at most ``max_days`` of them.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from newsletter.papers.sources import Problem
from newsletter.papers.sources.http import HttpClient, require_content_type
from newsletter.papers.sources.jsonl import RecordError, parse_record
from newsletter.papers.sources.registry import FetchResult

DEFAULT_BASE_URL = "https://huggingface.co"


def item_to_raw(item: Any) -> dict[str, Any]:
    """One daily-papers item in the JSONL record's shape (``RecordError`` if malformed)."""
    if not isinstance(item, dict):
        raise RecordError(f"expected a JSON object, got {type(item).__name__}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise RecordError("missing 'paper' object")
    authors = paper.get("authors") or []
    if not isinstance(authors, list):
        raise RecordError("'authors' must be a list")
    names = [
        a.get("name") if isinstance(a, dict) else a
        for a in authors
        if not (isinstance(a, dict) and a.get("hidden") is True)
    ]
    return {
        "id": paper.get("id"),
        "title": paper.get("title") or item.get("title"),
        "summary": paper.get("summary") or item.get("summary"),
        "authors": [n for n in names if n is not None],
    }


class HfDailySource:
    kind = "hf_daily"

    def __init__(
        self,
        name: str,
        client: HttpClient,
        *,
        base_url: str = DEFAULT_BASE_URL,
        lookback_days: int = 1,
        max_days: int = 31,
    ) -> None:
        self.name = name
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.lookback_days = lookback_days
        self.max_days = max_days

    def close(self) -> None:
        self.client.close()

    def days(self, *, since: date | None, state: str | None, today: date) -> list[date]:
        first = since
        if first is None and state:
            try:
                first = date.fromisoformat(state)
            except ValueError:
                first = None
        if first is None:
            first = today - timedelta(days=self.lookback_days)
        first = max(first, today - timedelta(days=self.max_days - 1))
        return [first + timedelta(days=n) for n in range((today - first).days + 1)]

    def fetch(self, *, since: date | None, state: str | None, today: date) -> FetchResult:
        result = FetchResult(state=today.isoformat())
        url = f"{self.base_url}/api/daily_papers"
        for day in self.days(since=since, state=state, today=today):
            response = self.client.get(url, {"date": day.isoformat()})
            location = f"{url}?date={day.isoformat()}"
            require_content_type(self.client, response, "json")
            try:
                items = json.loads(response.content)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise self.client.fail(location, f"not JSON ({exc})") from None
            if not isinstance(items, list):
                kind = type(items).__name__
                raise self.client.fail(location, f"expected a JSON list, got {kind}")
            for number, item in enumerate(items, start=1):
                try:
                    result.records.append(parse_record(item_to_raw(item), default_date=day))
                except RecordError as exc:
                    result.problems.append(Problem(f"{location} item {number}", str(exc)))
        result.requests = self.client.requests
        return result
