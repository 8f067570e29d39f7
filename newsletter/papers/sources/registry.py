"""One interface for every paper source, and the factory that builds one from settings.

Sources are configured as TOML tables in the settings files, one per source name::

    [sources.arxiv]
    kind = "arxiv_api"          # arxiv_api | oai_pmh | hf_daily | csv | jsonl
    categories = ["cs.CL", "cs.LG"]

``make_source(name, settings)`` validates the table and returns a ``Source``; an unknown
name, kind or option, or a value of the wrong type, is a ``ConfigError`` naming
``sources.NAME.OPTION``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from newsletter.errors import ConfigError
from newsletter.papers.sources import ParseReport
from newsletter.papers.sources.http import HttpClient, HttpOptions
from newsletter.settings import Settings

KINDS = ("arxiv_api", "oai_pmh", "hf_daily", "csv", "jsonl")


@dataclass
class FetchResult(ParseReport):
    """What one run of a source produced: records, skipped records, and the state to keep.

    ``state`` (if not None) is stored after the run commits and handed back to the
    next run, e.g. the OAI-PMH from-date.
    """

    state: str | None = None
    requests: int = 0


class Source(Protocol):
    """A paper source: ``fetch`` reads everything of one run, or raises ``FetchError``."""

    name: str

    def fetch(self, *, since: date | None, state: str | None, today: date) -> FetchResult:
        """Records published since ``since`` (else since ``state``, else a default window)."""
        ...

    def close(self) -> None:
        """Release the HTTP client (or nothing, for file sources)."""
        ...


def source_tables(settings: Settings) -> Mapping[str, Mapping[str, Any]]:
    """The ``[sources.NAME]`` tables of the settings (validated as a mapping by Settings)."""
    return settings.sources


class _Options:
    """Typed access to one ``[sources.NAME]`` table, refusing unknown or mistyped keys."""

    def __init__(self, name: str, table: Mapping[str, Any]) -> None:
        self.name = name
        self.table = dict(table)
        self.used = {"kind"}

    def _bad(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"invalid setting sources.{self.name}.{key}: {message}")

    def _get(self, key: str) -> Any:
        self.used.add(key)
        return self.table.get(key)

    def string(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, "must be a non-empty string")
        return value.strip()

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self._bad(key, f"must be a number >= {minimum:g}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 1) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(key, f"must be an integer >= {minimum}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self._bad(key, "must be a list of non-empty strings")
        return tuple(v.strip() for v in value)

    def path(self, key: str) -> Path:
        value = self._get(key)
        if not isinstance(value, str) or not value.strip():
            raise self._bad(key, "required: the path of the file or directory to read")
        return Path(value).expanduser()

    def check_unused(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self._bad(unknown[0], "unknown option")


def _client(settings: Settings, name: str, options: _Options, default_delay: float) -> HttpClient:
    delay = options.number("delay_seconds", default_delay)
    return HttpClient(HttpOptions.from_settings(settings, delay_seconds=delay), source=name)


def make_source(name: str, settings: Settings) -> Source:
    """Build the source configured as ``[sources.NAME]``; ``ConfigError`` if it is not valid."""
    tables = source_tables(settings)
    table = tables.get(name)
    if table is None:
        known = ", ".join(sorted(tables)) or "none configured"
        raise ConfigError(f"unknown source {name!r} (configured: {known}); add a [sources.{name}]")
    if not isinstance(table, Mapping):
        raise ConfigError(f"invalid setting sources.{name}: must be a table")
    options = _Options(name, table)
    kind = table.get("kind")
    if kind not in KINDS:
        raise options._bad("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")

    source: Source
    if kind == "arxiv_api":
        from newsletter.papers.sources.arxiv_api import DEFAULT_BASE_URL, ArxivApiSource

        base_url = options.string("base_url", DEFAULT_BASE_URL)
        categories = options.strings("categories")
        query = options.string("query", "")
        if not categories and not query:
            raise options._bad("categories", "give categories or a query (or both)")
        page_size = options.integer("page_size", 100)
        max_records = options.integer("max_records", 5000)
        lookback = options.integer("lookback_days", 2)
        empty_retries = options.integer("empty_page_retries", 3, minimum=0)
        client = _client(settings, name, options, 3.0)
        source = ArxivApiSource(
            name,
            client,
            base_url=base_url,
            categories=categories,
            query=query,
            page_size=min(page_size, 2000),
            max_records=max_records,
            lookback_days=lookback,
            empty_page_retries=empty_retries,
        )
    elif kind == "oai_pmh":
        from newsletter.papers.sources.oai_pmh import DEFAULT_BASE_URL as OAI_URL
        from newsletter.papers.sources.oai_pmh import OaiPmhSource

        base_url = options.string("base_url", OAI_URL)
        set_spec = options.string("set", "") or None
        lookback = options.integer("lookback_days", 2)
        max_pages = options.integer("max_pages", 1000)
        client = _client(settings, name, options, 3.0)
        source = OaiPmhSource(
            name,
            client,
            base_url=base_url,
            set_spec=set_spec,
            lookback_days=lookback,
            max_pages=max_pages,
        )
    elif kind == "hf_daily":
        from newsletter.papers.sources.hf_daily import DEFAULT_BASE_URL as HF_URL
        from newsletter.papers.sources.hf_daily import HfDailySource

        base_url = options.string("base_url", HF_URL)
        lookback = options.integer("lookback_days", 1, minimum=0)
        max_days = options.integer("max_days", 31)
        client = _client(settings, name, options, 1.0)
        source = HfDailySource(
            name, client, base_url=base_url, lookback_days=lookback, max_days=max_days
        )
    else:
        from newsletter.papers.sources.csv_source import CsvSource, JsonlSource

        path = options.path("path")
        source = CsvSource(name, path) if kind == "csv" else JsonlSource(name, path)
    try:
        options.check_unused()
    except ConfigError:
        source.close()
        raise
    return source
