"""The library on the preferences page: upload or paste, a report per line, follows."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import FollowedAuthor, LibraryImport, LibrarySeed
from newsletter.subscribers.library_formats import MAX_BYTES
from newsletter.tokens import Purpose, TokenData, Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_subscriber, csrf_from

pytestmark = pytest.mark.sqlite_only

TOKENS = Tokens(TEST_SECRET)

BIBTEX = b"""
@article{own,
  title = {Quantum error correction with {LDPC} codes},
  author = {Gottesman, Daniel and Panteleev, Pavel},
  abstract = {We study codes.}
}
@misc{noid, note = {nothing to go by}}
@article{arx, title = {Attention is all you need}, eprint = {1706.03762}, archivePrefix = {arXiv},
  author = {Vaswani, Ashish and Gottesman, Daniel}}
@article{own2, title = {Quantum Error-Correction with LDPC Codes}}
"""


@pytest.fixture
def reader(sessions: SessionFactory) -> tuple[int, str]:
    with sessions.begin() as session:
        subscriber = add_subscriber(session, "reader@example.org")
        token = TOKENS.make(Purpose.MANAGE, TokenData(subscriber.id, 1))
        return subscriber.id, token


def _upload(client: TestClient, token: str, *, page: str = "", **kwargs: object) -> object:
    csrf = csrf_from(client.get(f"/manage/{page or token}"))
    data = {"csrf_token": csrf, "token": token, **kwargs.pop("data", {})}  # type: ignore[dict-item]
    return client.post("/library/upload", data=data, follow_redirects=False, **kwargs)  # type: ignore[arg-type]


def test_a_bibtex_upload_is_reported_per_entry_and_waits_for_arxiv(
    client: TestClient, sessions: SessionFactory, reader: tuple[int, str]
) -> None:
    subscriber_id, token = reader
    response = _upload(client, token, files={"file": ("mine.bib", BIBTEX, "text/x-bibtex")})
    assert response.status_code == 303  # type: ignore[attr-defined]
    page = client.get(f"/manage/{token}")
    assert page.status_code == 200
    text = page.text
    assert "mine.bib</strong>: 1 imported, 2 not, 1 waiting for arXiv" in text
    assert "line 7" in text  # @misc{noid}
    assert "no arXiv id, DOI or title" in text
    assert "the same paper as line 2" in text  # own2 duplicates own by title
    with sessions() as session:
        seeds = session.scalars(
            select(LibrarySeed).where(LibrarySeed.subscriber_id == subscriber_id)
        )
        assert [s.title for s in seeds] == ["Quantum error correction with LDPC codes"]
        imp = session.scalars(select(LibraryImport)).one()
        assert imp.status == "pending"  # 1706.03762 waits for the job: no fetch in a request
        assert [e["arxiv_id"] for e in imp.entries] == ["1706.03762"]


def test_pasted_ids_with_junk_lines_keep_the_good_ones(
    client: TestClient, sessions: SessionFactory, reader: tuple[int, str]
) -> None:
    _, token = reader
    pasted = "10.1145/3366423.3380211\nhello\n\n10.48550/arXiv.1706.03762\n"
    _upload(client, token, data={"ids": pasted})
    page = client.get(f"/manage/{token}/library").text
    assert "line 2</span> hello: not imported: not an arXiv id, an arXiv URL or a DOI" in page
    assert "line 1</span> 10.1145/3366423.3380211: not imported: a DOI alone, with no title" in page
    with sessions() as session:
        imp = session.scalars(select(LibraryImport)).one()
        assert [e["arxiv_id"] for e in imp.entries] == ["1706.03762"]  # the arXiv DOI


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", 400, "not a text file"),
        (b"Dear editor, please find attached.", 400, "not BibTeX, RIS, CSL-JSON"),
        (b"%" + b"x" * MAX_BYTES, 413, "at most 5 MB"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
    ],
)
def test_a_file_that_is_no_library_is_refused_with_why(
    client: TestClient,
    sessions: SessionFactory,
    reader: tuple[int, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    _, token = reader
    response = _upload(client, token, files={"file": ("library.bib.txt", body, "text/plain")})
    assert response.status_code == status  # type: ignore[attr-defined]
    assert message in response.text  # type: ignore[attr-defined]
    with sessions() as session:
        assert session.scalars(select(LibraryImport)).first() is None


def test_a_forged_token_imports_nothing(
    client: TestClient, sessions: SessionFactory, reader: tuple[int, str]
) -> None:
    subscriber_id, token = reader
    forged = TOKENS.make(Purpose.UNSUBSCRIBE, TokenData(subscriber_id, 1))
    response = _upload(client, forged, page=token, data={"ids": "1706.03762"})
    assert response.status_code == 400  # type: ignore[attr-defined]
    with sessions() as session:
        assert session.scalars(select(LibraryImport)).first() is None


def test_following_a_suggested_author_and_stopping(
    client: TestClient, sessions: SessionFactory, reader: tuple[int, str]
) -> None:
    subscriber_id, token = reader
    with sessions.begin() as session:
        for n in range(2):
            session.add(
                LibrarySeed(
                    subscriber_id=subscriber_id,
                    title_key=f"t{n}",
                    title=f"T{n}",
                    authors=["Gottesman, Daniel", f"Other {n}"],
                )
            )
    page = client.get(f"/manage/{token}/library")
    assert "Follow Daniel Gottesman" in page.text
    csrf = csrf_from(page)
    done = client.post(
        f"/manage/{token}/library/follow",
        data={"csrf_token": csrf, "name": "Daniel Gottesman"},
    )
    assert "Followed. New papers by this author" in done.text
    assert "Follow Daniel Gottesman" not in done.text
    with sessions() as session:
        author = session.scalars(select(FollowedAuthor)).one()
    gone = client.post(
        f"/manage/{token}/library/unfollow", data={"csrf_token": csrf, "author": str(author.id)}
    )
    assert "You no longer follow this author." in gone.text
    with sessions() as session:
        assert session.scalars(select(FollowedAuthor)).first() is None


def test_the_preferences_page_says_when_arxiv_is_down_and_when_it_is_tried_again(
    client: TestClient, sessions: SessionFactory, reader: tuple[int, str]
) -> None:
    _, token = reader
    _upload(client, token, data={"ids": "1706.03762"})
    with sessions.begin() as session:
        imp = session.scalars(select(LibraryImport)).one()
        imp.attempts = 1
        imp.last_error = (
            "the arXiv API could not be reached (HTTP 503); trying again after 2026-06-01 12:15 UTC"
        )
    page = client.get(f"/manage/{token}").text
    assert "1 waiting for arXiv" in page
    assert "trying again after 2026-06-01 12:15 UTC. We will try again by ourselves" in page


def test_the_data_export_holds_the_library_and_the_followed_authors(
    client: TestClient, reader: tuple[int, str]
) -> None:
    _, token = reader
    _upload(client, token, files={"file": ("mine.bib", BIBTEX, "text/x-bibtex")})
    csrf = csrf_from(client.get(f"/manage/{token}/library"))
    client.post(f"/manage/{token}/library/follow", data={"csrf_token": csrf, "name": "Y. LeCun"})
    data = client.get(f"/manage/{token}/export").json()
    assert [s["title"] for s in data["library"]] == ["Quantum error correction with LDPC codes"]
    assert data["library_imports"][0]["source"] == "mine.bib"
    assert len(data["library_imports"][0]["report"]) == 3
    assert data["followed_authors"] == ["Y. LeCun"]
