from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from newsletter.errors import ConfigError
from newsletter.papers.sources.arxiv_api import ArxivApiSource
from newsletter.papers.sources.csv_source import CsvSource, JsonlSource
from newsletter.papers.sources.hf_daily import HfDailySource
from newsletter.papers.sources.oai_pmh import OaiPmhSource
from newsletter.papers.sources.registry import Source, make_source
from tests.conftest import make_settings
from tests.sources.fakeserver import source_settings

CONFIG = """
[sources.arxiv]
kind = "arxiv_api"
categories = ["cs.CL", "cs.LG"]
page_size = 200

[sources.oai]
kind = "oai_pmh"
set = "cs"
delay_seconds = 5

[sources.hf]
kind = "hf_daily"
base_url = "https://hf.example.org"

[sources.local]
kind = "csv"
path = "/srv/papers"

[sources.listings]
kind = "jsonl"
path = "/srv/listings"
"""


def _make(name: str, sources: dict[str, Any]) -> Source:
    return make_source(name, source_settings(sources))


def test_every_kind_is_built_from_toml() -> None:
    tables = tomllib.loads(CONFIG)["sources"]
    built = {name: _make(name, tables) for name in tables}
    try:
        arxiv = built["arxiv"]
        assert isinstance(arxiv, ArxivApiSource)
        assert arxiv.categories == ("cs.CL", "cs.LG")
        assert arxiv.page_size == 200
        assert arxiv.base_url == "https://export.arxiv.org/api/query"
        assert arxiv.client.options.delay_seconds == 3.0  # arXiv's courtesy delay by default
        oai = built["oai"]
        assert isinstance(oai, OaiPmhSource)
        assert oai.set_spec == "cs"
        assert oai.client.options.delay_seconds == 5.0
        hf = built["hf"]
        assert isinstance(hf, HfDailySource)
        assert hf.base_url == "https://hf.example.org"
        assert isinstance(built["local"], CsvSource)
        assert built["local"].path == Path("/srv/papers")
        assert isinstance(built["listings"], JsonlSource)
    finally:
        for source in built.values():
            source.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"kind": "rss"}, "sources.x.kind: must be one of"),
        ({"kind": "arxiv_api"}, "sources.x.categories: give categories or a query"),
        ({"kind": "arxiv_api", "categories": "cs.CL", "pages": 3}, "sources.x.pages: unknown"),
        ({"kind": "arxiv_api", "categories": [1]}, "sources.x.categories: must be a list"),
        ({"kind": "oai_pmh", "delay_seconds": -1}, "sources.x.delay_seconds: must be a number"),
        ({"kind": "oai_pmh", "max_pages": "many"}, "sources.x.max_pages: must be an integer"),
        ({"kind": "csv"}, "sources.x.path: required"),
        ({"kind": "hf_daily", "base_url": ""}, "sources.x.base_url: must be a non-empty"),
    ],
)
def test_invalid_tables_name_the_option(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        _make("x", {"x": table})


def test_an_unknown_source_lists_the_configured_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown source 'nope' \(configured: a\)"):
        _make("nope", {"a": {"kind": "csv", "path": "/x"}})


def test_plain_settings_know_no_such_source() -> None:
    with pytest.raises(ConfigError, match="unknown source 'no-such-source'"):
        make_source("no-such-source", make_settings())
