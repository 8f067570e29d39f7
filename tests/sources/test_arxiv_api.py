from __future__ import annotations

import re
from datetime import date

import pytest

from newsletter.papers.sources.arxiv_api import ArxivApiSource, build_query, parse_atom
from newsletter.papers.sources.http import FetchError, HttpClient, HttpOptions
from tests.sources.fakeserver import ATOM_FILE, HTTP_DATA, FakeServer, Reply, server

__all__ = ["server"]

TODAY = date(2026, 5, 27)
RECORDED = ATOM_FILE.read_text(encoding="utf-8")


def atom_pages(sizes: list[int]) -> list[bytes]:
    """The real recorded feed split into pages of ``sizes`` entries (totalResults = 10)."""
    head, _, rest = RECORDED.partition("  <entry>")
    entries = ["  <entry>" + e for e in ("  <entry>" + rest).split("  <entry>")[1:]]
    entries[-1] = entries[-1].replace("</feed>", "")
    pages, start = [], 0
    for size in sizes:
        header = re.sub(r"(totalResults[^>]*>)\d+", r"\g<1>10", head)
        header = re.sub(r"(startIndex[^>]*>)\d+", rf"\g<1>{start}", header)
        pages.append((header + "".join(entries[start : start + size]) + "</feed>\n").encode())
        start += size
    return pages


def make_source(server: FakeServer, *, page_size: int = 10, delay: float = 0.0) -> ArxivApiSource:
    options = HttpOptions(timeout=5, retries=2, backoff_seconds=0.01, delay_seconds=delay)
    return ArxivApiSource(
        "arxiv",
        HttpClient(options, source="arxiv"),
        base_url=server.url + "/api/query",
        categories=("cs.CL", "cs.LG"),
        page_size=page_size,
        empty_page_retries=2,
    )


def test_recorded_feed_is_parsed_and_normalised() -> None:
    page = parse_atom(ATOM_FILE.read_bytes(), location="recorded", today=TODAY)
    assert (page.total, page.start, page.entries) == (120839, 0, 10)
    assert page.problems == []
    by_id = {r.external_id: r for r in page.records}
    assert len(by_id) == 10
    first = by_id["1501.05039"]
    assert first.version == 1
    assert first.title == "Defining Data Science"
    assert first.abstract.startswith("Data science is gaining more and more and widespread")
    assert "\n" not in first.abstract
    assert first.authors == ("Yangyong Zhu", "Yun Xiong")
    assert first.categories == ("cs.DB", "cs.CY")
    assert first.listed_on == date(2015, 1, 21)
    assert first.url == "https://arxiv.org/abs/1501.05039"
    assert first.pdf_url == "https://arxiv.org/pdf/1501.05039v1"
    assert by_id["quant-ph/0210005"].comment == (
        "6 pages, invited contribution to QCMC 2002, a considerably abbreviated version of "
        "quant-ph/0208078"
    )
    assert by_id["1503.01162"].authors[1] == "Yann Benétreau-Dupin"
    logic = by_id["1802.03292"]
    assert logic.categories == ("cs.LO",)
    assert logic.class_codes == ("03B70", "68Q99", "F.4.1", "F.4.m", "K.2")


def test_query_combines_categories_query_and_date_window() -> None:
    query = build_query(("cs.CL", "cs.LG"), "abs:transformer", date(2026, 5, 25), TODAY)
    assert query == (
        "(cat:cs.CL OR cat:cs.LG) AND (abs:transformer) AND "
        "submittedDate:[202605250000 TO 202605272359]"
    )


def test_pages_are_fetched_with_the_courtesy_delay(server: FakeServer) -> None:
    server.add(*[Reply(body=p) for p in atom_pages([4, 4, 2])])
    source = make_source(server, page_size=4, delay=0.3)
    try:
        result = source.fetch(since=date(2026, 5, 25), state=None, today=TODAY)
    finally:
        source.close()
    assert len(result.records) == 10
    assert result.state == "2026-05-27"
    assert [r.query["start"] for r in server.requests] == ["0", "4", "8"]
    first = server.requests[0].query
    assert first["max_results"] == "4"
    assert first["sortBy"] == "submittedDate"
    assert first["search_query"] == (
        "(cat:cs.CL OR cat:cs.LG) AND submittedDate:[202605250000 TO 202605272359]"
    )
    assert all(gap >= 0.3 for gap in server.gaps())


def test_window_starts_at_the_previous_run_then_at_the_lookback(server: FakeServer) -> None:
    server.add(Reply(body=atom_pages([10])[0]), Reply(body=atom_pages([10])[0]))
    source = make_source(server)
    try:
        source.fetch(since=None, state="2026-05-20", today=TODAY)
        source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert "[202605200000 TO" in server.requests[0].query["search_query"]
    assert "[202605250000 TO" in server.requests[1].query["search_query"]


def test_an_empty_page_is_asked_again(server: FakeServer) -> None:
    first, second, third = atom_pages([4, 4, 2])
    empty = (HTTP_DATA / "atom_empty_page.xml").read_bytes()
    server.add(Reply(body=first), Reply(body=empty), Reply(body=second), Reply(body=third))
    source = make_source(server, page_size=4)
    try:
        result = source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert len(result.records) == 10
    assert [r.query["start"] for r in server.requests] == ["0", "4", "4", "8"]


def test_a_page_that_stays_empty_is_an_error(server: FakeServer) -> None:
    empty = (HTTP_DATA / "atom_empty_page.xml").read_bytes()
    server.add(Reply(body=atom_pages([4])[0]), *[Reply(body=empty)] * 3)
    source = make_source(server, page_size=4)
    try:
        with pytest.raises(FetchError, match=r"empty page although the feed reports 10 results"):
            source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert len(server.requests) == 4


def test_no_results_is_an_empty_run(server: FakeServer) -> None:
    nothing = re.sub(r"(totalResults[^>]*>)\d+", r"\g<1>0", atom_pages([0])[0].decode())
    server.add(Reply(body=nothing.encode()))
    source = make_source(server)
    try:
        result = source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert result.records == []
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=(HTTP_DATA / "atom_truncated.xml").read_bytes()), "not well-formed XML"),
        (Reply(body=b""), "empty response body"),
        (
            Reply(body=(HTTP_DATA / "maintenance.html").read_bytes(), content_type="text/html"),
            "expected xml content, got 'text/html'",
        ),
        (
            Reply(body=(HTTP_DATA / "atom_api_error.xml").read_bytes()),
            "refused the query: max_results must be non-negative",
        ),
        (Reply(body=b"<?xml version='1.0'?><html/>"), "expected an Atom <feed>"),
    ],
    ids=["truncated", "empty-body", "html", "api-error", "not-atom"],
)
def test_broken_responses_are_clear_errors(server: FakeServer, reply: Reply, message: str) -> None:
    server.add(reply)
    source = make_source(server)
    try:
        with pytest.raises(FetchError) as caught:
            source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert message in str(caught.value)
    assert "source 'arxiv'" in str(caught.value)


def test_bad_entries_are_problems_not_failures() -> None:
    broken = RECORDED.replace("<title>Defining Data Science</title>", "<title>  </title>")
    page = parse_atom(broken.encode(), location="p", today=TODAY)
    assert len(page.records) == 9
    assert [str(p) for p in page.problems] == ["p entry 1: empty 'title'"]


def test_max_records_stops_paging_and_says_so(server: FakeServer) -> None:
    server.add(*[Reply(body=p) for p in atom_pages([4, 4, 2])])
    options = HttpOptions(timeout=5, retries=0, delay_seconds=0)
    source = ArxivApiSource(
        "arxiv",
        HttpClient(options, source="arxiv"),
        base_url=server.url + "/api/query",
        query="all:science",
        page_size=4,
        max_records=6,
    )
    try:
        result = source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
    assert len(result.records) == 6
    assert [r.query["max_results"] for r in server.requests] == ["4", "2"]
    assert len(result.problems) == 1
    assert "stopped at max_records=6" in str(result.problems[0])
