from __future__ import annotations

from datetime import date

import pytest

from newsletter.papers.sources.http import FetchError, HttpClient, HttpOptions
from newsletter.papers.sources.oai_pmh import OaiPmhSource
from newsletter.papers.sources.registry import FetchResult
from tests.sources.fakeserver import HTTP_DATA, OAI_FILE, FakeServer, Reply, server

__all__ = ["server"]

TODAY = date(2013, 4, 3)
RECORDED = OAI_FILE.read_text(encoding="utf-8")
XML = "text/xml; charset=utf-8"


def oai_page(token: str | None, *, arxiv_id: str = "0801.3931", deleted: bool = False) -> bytes:
    """The real recorded page, with another id and/or a resumption token if asked."""
    text = RECORDED.replace("0801.3931", arxiv_id)
    if token is not None:
        element = (
            f'<resumptionToken cursor="0" completeListSize="3">{token}</resumptionToken>'
            if token
            else '<resumptionToken cursor="2" completeListSize="3"/>'
        )
        text = text.replace("</ListRecords>", element + "\n</ListRecords>")
    if deleted:
        text = text.replace("<header>", '<header status="deleted">')
    return text.encode()


def make_source(server: FakeServer, **changes: object) -> OaiPmhSource:
    options = HttpOptions(timeout=5, retries=2, backoff_seconds=0.01, delay_seconds=0.0)
    return OaiPmhSource(
        "oai",
        HttpClient(options, source="oai"),
        base_url=server.url + "/oai",
        set_spec="physics:astro-ph",
        **changes,  # type: ignore[arg-type]
    )


def run(server: FakeServer, *, since: date | None = None, state: str | None = None) -> FetchResult:
    source = make_source(server)
    try:
        return source.fetch(since=since, state=state, today=TODAY)
    finally:
        source.close()


def test_recorded_page_is_parsed_and_the_response_date_kept(server: FakeServer) -> None:
    server.add(Reply(body=OAI_FILE.read_bytes(), content_type=XML))
    result = run(server, since=date(2013, 3, 25))
    assert result.problems == []
    (record,) = result.records
    assert record.external_id == "0801.3931"
    assert record.version is None
    assert record.title == "Dynamical study of 2D and 3D barred galaxy models"
    assert record.authors == ("T. Manos", "E. Athanassoula")
    assert record.categories == ("astro-ph",)
    assert record.listed_on == date(2008, 1, 25)
    assert record.comment is not None
    assert record.comment.endswith("(talk contribution)")
    assert "Poincar\\'{e}" in record.abstract
    assert record.pdf_url == "https://arxiv.org/pdf/0801.3931"
    assert result.state == "2013-04-03"
    assert server.requests[0].query == {
        "verb": "ListRecords",
        "metadataPrefix": "arXiv",
        "from": "2013-03-25",
        "set": "physics:astro-ph",
    }


def test_resumption_tokens_are_followed_to_the_end(server: FakeServer) -> None:
    server.add(
        Reply(body=oai_page("tok-1"), content_type=XML),
        Reply(body=oai_page("tok-2", arxiv_id="0801.3932"), content_type=XML),
        Reply(body=oai_page("", arxiv_id="0801.3933"), content_type=XML),
    )
    result = run(server, state="2013-04-01")
    ids = [r.external_id for r in result.records]
    assert ids == ["0801.3931", "0801.3932", "0801.3933"]
    assert server.requests[0].query["from"] == "2013-04-01"
    assert server.requests[1].query == {"verb": "ListRecords", "resumptionToken": "tok-1"}
    assert server.requests[2].query == {"verb": "ListRecords", "resumptionToken": "tok-2"}


def test_a_looping_resumption_token_stops_with_a_clear_error(server: FakeServer) -> None:
    server.add(*[Reply(body=oai_page("same-token"), content_type=XML)] * 5)
    with pytest.raises(FetchError, match=r"resumption token 'same-token' was already used"):
        run(server)
    assert len(server.requests) == 2


def test_503_retry_after_flow_control_is_honoured(server: FakeServer) -> None:
    server.add(
        Reply(
            503, b"Retry after 1 second", content_type="text/plain", headers={"Retry-After": "1"}
        ),
        Reply(body=OAI_FILE.read_bytes(), content_type=XML),
    )
    result = run(server)
    assert len(result.records) == 1
    assert server.gaps()[0] >= 1.0


def test_no_records_match_is_an_empty_harvest(server: FakeServer) -> None:
    server.add(Reply(body=(HTTP_DATA / "oai_no_records.xml").read_bytes(), content_type=XML))
    result = run(server)
    assert result.records == []
    assert result.state == "2013-04-03"


def test_deleted_records_are_skipped(server: FakeServer) -> None:
    server.add(Reply(body=oai_page(None, deleted=True), content_type=XML))
    result = run(server)
    assert result.records == []
    assert result.problems == []


def test_default_from_date_is_the_lookback(server: FakeServer) -> None:
    server.add(Reply(body=OAI_FILE.read_bytes(), content_type=XML))
    run(server)
    assert server.requests[0].query["from"] == "2013-04-01"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(body=(HTTP_DATA / "oai_truncated.xml").read_bytes(), content_type=XML), "XML"),
        (
            Reply(body=(HTTP_DATA / "oai_bad_argument.xml").read_bytes(), content_type=XML),
            "OAI-PMH error badArgument: Illegal set value 'nonsense'",
        ),
        (
            Reply(body=(HTTP_DATA / "maintenance.html").read_bytes(), content_type="text/html"),
            "expected xml content",
        ),
        (Reply(body=b"", content_type=XML), "empty response body"),
    ],
    ids=["truncated", "bad-argument", "html", "empty"],
)
def test_broken_responses_are_clear_errors(server: FakeServer, reply: Reply, message: str) -> None:
    server.add(reply)
    with pytest.raises(FetchError) as caught:
        run(server)
    assert message in str(caught.value)
    assert "source 'oai'" in str(caught.value)


def test_too_many_pages_is_an_error(server: FakeServer) -> None:
    server.add(*[Reply(body=oai_page(f"t{n}"), content_type=XML) for n in range(3)])
    source = make_source(server, max_pages=2)
    try:
        with pytest.raises(FetchError, match="max_pages=2"):
            source.fetch(since=None, state=None, today=TODAY)
    finally:
        source.close()
