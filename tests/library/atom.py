"""Recorded arXiv API replies for library tests (from ../shared/data/arxiv-api)."""

from __future__ import annotations

import re

from tests.conftest import SHARED_DATA

RECORDED = SHARED_DATA / "arxiv-api" / "atom_query_all-science_2019-08-10.xml"


def empty_feed() -> bytes:
    """The recorded reply with its entries taken out: what the API answers for ids it
    does not know."""
    body = RECORDED.read_text(encoding="utf-8")
    body = re.sub(r"<entry>.*?</entry>\s*", "", body, flags=re.DOTALL)
    body = re.sub(r"(<opensearch:totalResults[^>]*>)\d+", r"\g<1>0", body)
    return body.encode()


def error_feed(message: str) -> bytes:
    """The recorded reply with one error entry in place of its entries: how the API
    refuses a query (e.g. an id it calls malformed)."""
    body = RECORDED.read_text(encoding="utf-8")
    entry = (
        "<entry><id>http://arxiv.org/api/errors#incorrect_id_format</id>"
        f"<title>Error</title><summary>{message}</summary></entry>"
    )
    body = re.sub(r"<entry>.*</entry>", entry, body, flags=re.DOTALL)
    return body.encode()
