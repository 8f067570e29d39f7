"""A library given on the sign-up form (issue 16): stored on the pending subscriber, lines
that are not papers reported after the form and on the preferences page, a file that is
not a library refused with everything typed kept; nothing fetched in the request."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import (
    LibraryImport,
    LibrarySeed,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.subscribers.library_formats import MAX_BYTES
from newsletter.subscribers.library_signup import activate
from newsletter.web.routes.library import MAX_PASTED
from tests.web.helpers import Mail, add_subscriber, csrf_from, subscribe_form

pytestmark = pytest.mark.sqlite_only  # HTTP behaviour (tests/conftest.py)

Mails = Callable[[], list[Mail]]
STORED = ("2605.00001", "2605.00002")


def _post(
    client: TestClient, address: str, *, file: tuple[str, bytes] | None = None, **fields: Any
) -> Any:
    """The sign-up form as a browser sends it: multipart, with the file part even when
    no file was chosen (an empty name), after a GET for the CSRF cookie and field."""
    token = csrf_from(client.get("/"))
    name, body = file or ("", b"")
    return client.post(
        "/subscribe",
        data={**subscribe_form(address, **fields), "csrf_token": token},
        files={"library_file": (name, body, "application/octet-stream")},
        follow_redirects=False,
    )


def _store_papers(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        for number, arxiv_id in enumerate(STORED):
            session.add(
                Paper(
                    external_id=arxiv_id,
                    title=f"A stored paper number {number}",
                    abstract="An abstract.",
                    url=f"https://arxiv.org/abs/{arxiv_id}",
                    listed_on=date(2026, 5, 1),
                    content_listed_on=date(2026, 5, 1),
                )
            )


def _imports(sessions: SessionFactory, address: str) -> list[LibraryImport]:
    with sessions() as session:
        return list(
            session.scalars(
                select(LibraryImport)
                .join(Subscriber, Subscriber.id == LibraryImport.subscriber_id)
                .where(Subscriber.email == address)
                .order_by(LibraryImport.id)
            )
        )


def _count(sessions: SessionFactory, model: type[Any]) -> int:
    with sessions() as session:
        return len(session.scalars(select(model)).all())


def _textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea[^>]*name="{name}"[^>]*>(.*?)</textarea>', page, re.DOTALL)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


def _text(page: str) -> str:
    """The page as a reader reads it: no tags, spacing collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", page)).split())


def test_the_section_is_there_closed_and_the_form_is_multipart(client: TestClient) -> None:
    page = client.get("/subscribe").text
    assert 'enctype="multipart/form-data"' in page
    details = re.search(r"<details[^>]*library-signup[^>]*>", page)
    assert details is not None
    assert " open" not in details.group(0)  # collapsed until the reader opens it
    assert "Start from papers you know" in page
    assert 'name="library_ids"' in page
    assert 'name="library_file"' in page
    assert "at most 5 MB, 2000 entries" in page


def _confirmed(sessions: SessionFactory) -> None:
    """What confirming the one pending sign-up does to its staged library."""
    with sessions.begin() as session:
        assert activate(session, session.scalars(select(Subscriber)).one()) == 1


def test_pasted_ids_with_junk_lines_sign_up_and_are_reported(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    _store_papers(sessions)
    pasted = (
        f"{STORED[0]}\n"
        "read this one day\n"
        f"https://arxiv.org/abs/{STORED[1]}v2\n"
        "2605.99999\n"  # not stored: waits for the seeding job
        "10.1145/3366423.3380211\n"  # a DOI with no title: reported once resolved
    )
    response = _post(client, "ada@example.org", library_ids=pasted)

    assert response.status_code == 200, response.text
    assert "Check your inbox" in response.text
    assert "pasted list</strong>: 3 papers to import, 2 lines not." in response.text
    assert "line 2</span> read this one day: not imported: not an arXiv id" in response.text
    assert len(mails()) == 1  # the sign-up went through
    [imp] = _imports(sessions, "ada@example.org")
    assert imp.status == "staged"  # nothing matched or fetched before the confirmation
    assert _count(sessions, LibrarySeed) == 0
    _confirmed(sessions)
    [imp] = _imports(sessions, "ada@example.org")
    assert imp.status == "pending"  # the missing id waits for the seeding job
    assert [e["arxiv_id"] for e in imp.entries] == ["2605.99999"]
    outcomes = {row["where"]: row["outcome"] for row in imp.report}
    assert outcomes == {
        "line 1": "imported",
        "line 2": "not imported",
        "line 3": "imported",
        "line 5": "not imported",
    }
    with sessions() as session:
        seeds = session.scalars(select(LibrarySeed.arxiv_id).order_by(LibrarySeed.arxiv_id))
        assert list(seeds) == list(STORED)
        pending = session.scalars(select(Subscriber)).one()
        assert pending.status == SubscriberStatus.PENDING


def test_duplicates_are_skipped_and_the_report_waits_on_the_preferences_page(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    _store_papers(sessions)
    bibtex = (
        "@article{one, title = {A stored paper number 0}}\n"
        f"@article{{again, title = {{Another}}, eprint = {{{STORED[0]}}}}}\n"
        f"@article{{twice, title = {{Another}}, eprint = {{{STORED[0]}}}}}\n"
        "@misc{nothing, note = {to read}}\n"
    ).encode()
    response = _post(client, "bo@example.org", file=("references.bib", bibtex))
    assert response.status_code == 200, response.text
    # Before anything is stored only the file itself is known: line 3 repeats line 2.
    assert "references.bib</strong>: 2 papers to import, 2 lines not." in response.text
    assert "line 3</span> @article{twice}: skipped: the same paper as line 2" in response.text

    link = mails()[0].link("/confirm/")
    confirmed = client.post(link, data={"csrf_token": csrf_from(client.get(link))})
    manage = re.search(r'href="http://testserver(/manage/[^"]+)"', confirmed.text)
    assert manage is not None
    library = _text(client.get(f"{manage.group(1)}/library").text)

    assert _count(sessions, LibrarySeed) == 1
    # The stored paper's title is line 1's: lines 2 and 3 are the same paper.
    assert "references.bib: 1 imported, 3 not." in library, library
    assert "@article{again}: skipped: the same paper as line 1" in library
    assert "@article{twice}: skipped: the same paper as line 1" in library
    assert "no arXiv id, DOI or title" in library


def test_a_file_and_pasted_ids_are_two_imports(
    client: TestClient, sessions: SessionFactory
) -> None:
    response = _post(
        client, "cy@example.org", file=("ids.txt", b"2605.99998\n"), library_ids="2605.99999"
    )
    assert response.status_code == 200, response.text
    assert [i.source for i in _imports(sessions, "cy@example.org")] == ["ids.txt", "pasted list"]


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("empty.txt", b"", "the file holds no papers (it is empty)"),
        ("photo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text file"),
        ("notes.txt", b"shopping list\neggs\nmilk\n", "no line of it names a paper"),
        ("refs.bib", b"title: my papers\n", "refs.bib is not BibTeX"),
    ],
)
def test_a_file_that_is_not_a_library_is_refused_with_the_form_kept(
    client: TestClient, sessions: SessionFactory, mails: Mails, name: str, body: bytes, reason: str
) -> None:
    response = _post(
        client, "di@example.org", file=(name, body), library_ids="2605.00001", keywords="qubits"
    )

    assert response.status_code == 400
    page = response.text
    assert reason in html.unescape(page)
    assert f"Your library ({name})" in html.unescape(page)
    assert 'value="di@example.org"' in page
    assert _textarea(page, "keywords") == "qubits"
    assert _textarea(page, "library_ids") == "2605.00001"
    assert re.search(r"<details[^>]*library-signup[^>]* open>", page)
    assert f"You had chosen <strong>{name}</strong>" in page
    assert re.search(r'id="library-file"[^>]*aria-invalid="true"', page)
    assert _count(sessions, Subscriber) == 0  # nothing stored, nothing mailed
    assert mails() == []


def test_a_file_over_the_size_limit_is_refused_with_the_form_kept(
    client: TestClient, sessions: SessionFactory
) -> None:
    big = b"2605.00001\n" * (MAX_BYTES // 11 + 1)
    assert len(big) > MAX_BYTES
    response = _post(client, "ed@example.org", file=("huge.txt", big), keywords="qubits")

    assert response.status_code == 413
    assert "a library may be at most 5 MB" in response.text
    assert 'value="ed@example.org"' in response.text
    assert _textarea(response.text, "keywords") == "qubits"
    assert _count(sessions, Subscriber) == 0


def test_a_one_megabyte_bibtex_file_is_taken(client: TestClient, sessions: SessionFactory) -> None:
    entry = (
        "@article{{k{0},\n  title = {{A paper of mine, number {0}}},\n  abstract = {{{1}}}\n}}\n"
    )
    filler = "Words about the paper that make the entry as long as a real one. " * 8
    bibtex = "".join(entry.format(n, filler) for n in range(1800)).encode()
    assert 1_000_000 < len(bibtex) < MAX_BYTES

    response = _post(client, "flo@example.org", file=("big.bib", bibtex))

    assert response.status_code == 200, response.text[:500]
    assert "big.bib</strong>: 1800 papers to import." in response.text
    assert _count(sessions, LibrarySeed) == 0
    _confirmed(sessions)
    assert _count(sessions, LibrarySeed) == 1800  # own titles: nothing waits for arXiv


def test_a_suppressed_address_gets_no_library_and_the_same_page(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    with sessions.begin() as session:
        add_subscriber(session, "gil@example.org", status=SubscriberStatus.PENDING)
        session.add(Suppression(email="gil@example.org", reason="hard bounce"))

    response = _post(client, "gil@example.org", library_ids="2605.00001")

    assert response.status_code == 200
    assert "pasted list</strong>: 1 paper to import." in response.text
    assert _count(sessions, LibraryImport) == 0
    assert mails() == []


def test_a_bad_address_keeps_the_pasted_ids(client: TestClient, sessions: SessionFactory) -> None:
    pasted = "2605.00001\nhttps://arxiv.org/abs/2605.00002\n10.1145/3366423.3380211"
    response = _post(
        client, "not an address", file=("refs.bib", b"@article{a, title={T}}"), library_ids=pasted
    )

    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.text
    assert _textarea(response.text, "library_ids") == pasted
    assert re.search(r"<details[^>]*library-signup[^>]* open>", response.text)
    assert "You had chosen <strong>refs.bib</strong>" in response.text
    assert _count(sessions, LibraryImport) == 0


def test_an_active_readers_library_is_not_changed_by_a_strangers_sign_up(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    with sessions.begin() as session:
        add_subscriber(session, "fay@example.org")
    pasted = "2605.00001\njunk"

    known = _post(client, "fay@example.org", library_ids=pasted)
    new = _post(client, "gus@example.org", library_ids=pasted)

    assert _imports(sessions, "fay@example.org") == []
    assert len(_imports(sessions, "gus@example.org")) == 1
    # The same page for both: nobody learns who is subscribed.
    assert _strip_csrf(known.text).replace("fay@", "gus@") == _strip_csrf(new.text)
    assert "pasted list</strong>: 1 paper to import, 1 line not." in new.text


def _strip_csrf(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', "", page)


def test_a_later_sign_up_replaces_the_library_and_the_earlier_link(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    """Anyone can post an address: a second sign-up of a pending address with another
    library replaces the staged one (they never pile up) and comes with a new link, so
    the first mail's link cannot confirm a library its reader never sent."""
    _store_papers(sessions)
    assert _post(client, "ida@example.org", library_ids=f"{STORED[0]}\n").status_code == 200
    assert _post(client, "ida@example.org", library_ids=f"{STORED[1]}\n").status_code == 200
    [imp] = _imports(sessions, "ida@example.org")
    assert (imp.status, [e["arxiv_id"] for e in imp.entries]) == ("staged", [STORED[1]])

    first, second = (mail.link("/confirm/") for mail in mails())
    assert first != second
    stale = client.get(first)
    assert stale.status_code == 400
    assert "This link no longer works" in stale.text
    assert _count(sessions, LibrarySeed) == 0
    confirmed = client.post(second, data={"csrf_token": csrf_from(client.get(second))})
    assert "You are subscribed" in confirmed.text
    with sessions() as session:
        assert list(session.scalars(select(LibrarySeed.arxiv_id))) == [STORED[1]]


def test_a_pasted_list_over_the_limit_is_refused_not_cut(
    client: TestClient, sessions: SessionFactory, mails: Mails
) -> None:
    """Browsers count a line break as one character for maxlength and send two: a box
    filled to the limit arrives longer, and its last lines were cut off unseen."""
    line = f"{STORED[0]}\r\n"
    pasted = line * (MAX_PASTED // (len(line) - 1))  # at the limit as a browser counts
    assert len(pasted.replace("\r\n", "\n")) <= MAX_PASTED < len(pasted)
    assert _post(client, "jo@example.org", library_ids=pasted).status_code == 200

    over = pasted + f"{STORED[1]}\r\n" * 10
    response = _post(client, "kai@example.org", library_ids=over)
    assert response.status_code == 400
    assert "longer than 200,000 characters" in response.text
    assert _imports(sessions, "kai@example.org") == []
    assert len(mails()) == 1  # only the first sign-up's
