"""The admin's CSV import (the CLI's import behind a form), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from sqlalchemy.orm import selectinload

from newsletter.db import SessionFactory
from newsletter.models import Frequency, Interest, Subscriber, SubscriberStatus
from newsletter.web.options import WebOptions
from tests.web.helpers import add_subscriber, csrf_from
from tests.web.test_admin import admin, operator  # noqa: F401 - fixtures

LIMIT = 4096
GOOD = (
    "email,name,topics,keywords,timezone,frequency,company\r\n"
    "ada@example.org,Ada Lovelace,cs.CL;cs.LG,,Europe/London,daily,ACME\r\n"
    'alan@example.org,"Turing, Alan",,program synthesis; proofs,UTC,weekly,\r\n'
)
BAD = (
    "email,name,topics\n"
    "ada@example.org,Ada,cs.CL\n"
    "not-an-address,Nobody,cs.CL\n"
    "grace@example.org,Grace,cs.XX\n"
    "edsger@example.org,<b>Edsger</b>,cs.DS\n"
)


@pytest.fixture
def options() -> WebOptions:
    return WebOptions(
        subscribe_per_ip="1000/minute",
        mails_per_address="1000/minute",
        posts_per_ip="1000/minute",
        max_import_bytes=LIMIT,
    )


def upload(
    client: TestClient, content: bytes, *, filename: str = "people.csv", token: str | None = ""
) -> Any:
    """POST a file to the import form, with this browser's CSRF token unless told otherwise."""
    if token == "":
        token = csrf_from(client.get("/admin/login"))
    data = {"csrf_token": token} if token is not None else {}
    return client.post(
        "/admin/subscribers/import",
        data=data,
        files={"file": (filename, content, "text/csv")},
        follow_redirects=False,
    )


def tile(html: str, name: str) -> int:
    match = re.search(rf'id="import-{name}">(\d+)<', html)
    assert match, f"no {name} figure on the page"
    return int(match.group(1))


def problems(html: str) -> dict[str, str]:
    return dict(re.findall(r'<td class="num line">(\d+)</td><td class="reason">([^<]*)</td>', html))


def people(sessions: SessionFactory) -> dict[str, Subscriber]:
    with sessions() as session:
        return {s.email: s for s in session.scalars(select(Subscriber))}


def test_the_subscribers_page_has_the_upload_form(admin: TestClient) -> None:
    page = admin.get("/admin/subscribers")
    assert 'action="/admin/subscribers/import" enctype="multipart/form-data"' in page.text
    assert 'name="csrf_token"' in page.text.split('id="import"')[1]
    assert "become <em>active</em> subscribers at once" in page.text
    assert "up to 4 KB" in page.text
    assert '<a href="/admin/topics"' in page.text


def test_a_good_file_with_a_bom_creates_active_subscribers(
    admin: TestClient,
    sessions: SessionFactory,
) -> None:
    response = upload(admin, "\ufeff".encode() + GOOD.encode())
    assert response.status_code == 200
    html = response.text
    assert (tile(html, "created"), tile(html, "updated"), tile(html, "skipped")) == (2, 0, 0)
    assert "Ignored columns: <code>company</code>" in html
    assert "Imported people.csv" in html
    stored = people(sessions)
    assert set(stored) == {"ada@example.org", "alan@example.org"}
    ada, alan = stored["ada@example.org"], stored["alan@example.org"]
    assert ada.status == SubscriberStatus.ACTIVE
    assert ada.confirmed_at is not None
    assert ada.timezone == "Europe/London"
    assert alan.name == "Turing, Alan"
    assert alan.frequency.value == "weekly"
    listing = admin.get("/admin/subscribers?q=turing").text
    assert "alan@example.org" in listing
    assert "program synthesis; proofs" in listing

    again = upload(admin, GOOD.encode()).text
    assert (tile(again, "created"), tile(again, "unchanged")) == (0, 2)


def test_bad_rows_are_skipped_by_line_and_the_good_ones_imported(
    admin: TestClient,
    sessions: SessionFactory,
) -> None:
    with sessions.begin() as session:
        add_subscriber(session, "ada@example.org", status=SubscriberStatus.UNSUBSCRIBED)
    html = upload(admin, BAD.encode(), filename="<script>x.csv").text
    assert (tile(html, "created"), tile(html, "updated"), tile(html, "skipped")) == (1, 1, 2)
    found = problems(html)
    assert set(found) == {"3", "4"}
    assert "invalid address" in found["3"]
    assert "unknown topic" in found["4"]
    assert "Imported &lt;script&gt;x.csv" in html
    assert "<script>" not in html
    stored = people(sessions)
    assert set(stored) == {"ada@example.org", "edsger@example.org"}
    # An import never subscribes again someone who left; it only updates their choices.
    assert stored["ada@example.org"].status == SubscriberStatus.UNSUBSCRIBED
    assert stored["edsger@example.org"].name == "<b>Edsger</b>"
    assert "&lt;b&gt;Edsger&lt;/b&gt;" in admin.get("/admin/subscribers").text


def test_the_list_of_problems_is_bounded(admin: TestClient) -> None:
    rows = "".join(f"bad{i}\n" for i in range(70))
    html = upload(admin, ("email\n" + rows).encode()).text
    assert tile(html, "skipped") == 70
    assert len(problems(html)) == 50
    assert "…and 20 more skipped rows not shown" in html


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a CSV file"),
        ("email\ngérard@example.org\n".encode("latin-1"), "not UTF-8 text"),
        (b"name,topics\nAda,cs.CL\n", "must have an &#39;email&#39; column"),
        (b"", "upload was empty"),
    ],
)
def test_files_that_are_not_a_subscriber_csv_are_refused(
    admin: TestClient,
    sessions: SessionFactory,
    content: bytes,
    message: str,
) -> None:
    response = upload(admin, content)
    assert response.status_code == 400
    assert message in response.text
    assert 'id="import-result"' not in response.text
    assert people(sessions) == {}


def test_an_oversize_file_is_refused_with_a_clear_message(
    admin: TestClient,
    sessions: SessionFactory,
) -> None:
    row = "someone@example.org,,cs.CL\n"
    content = ("email,name,topics\n" + row * (LIMIT // len(row) + 1)).encode()
    assert LIMIT < len(content) < LIMIT + 1024
    response = upload(admin, content)
    assert response.status_code == 413
    assert "The file is larger than 4 KB" in response.text
    # Far over the limit the body is cut off before it is even parsed.
    huge = upload(admin, b"email\n" + b"x@example.org\n" * 20_000)
    assert huge.status_code == 413
    assert people(sessions) == {}


@pytest.mark.parametrize("token", [None, "forged"])
def test_an_import_without_the_csrf_token_is_refused(
    admin: TestClient,
    sessions: SessionFactory,
    token: str | None,
) -> None:
    response = upload(admin, GOOD.encode(), token=token)
    assert response.status_code == 403
    assert people(sessions) == {}


def test_strangers_cannot_import(client: TestClient, sessions: SessionFactory) -> None:
    response = upload(client, GOOD.encode())
    assert response.status_code == 303
    assert response.headers["location"].startswith("/admin/login")
    assert client.get("/admin/subscribers/import", follow_redirects=False).status_code == 303
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_an_export_imports_back_unchanged_and_keeps_the_schedule(
    admin: TestClient, sessions: SessionFactory
) -> None:
    weekly = (
        "email,name,topics,keywords,timezone,frequency,weekday,send_hour\n"
        "ada@example.org,Ada,cs.CL; cs.LG,proof search,Europe/London,weekly,fri,18\n"
        "alan@example.org,Alan,,program synthesis,UTC,daily,,\n"
    )
    assert tile(upload(admin, weekly.encode()).text, "created") == 2
    ada = people(sessions)["ada@example.org"]
    assert (ada.send_weekday, ada.send_hour) == (4, 18)
    assert people(sessions)["alan@example.org"].send_hour == 7  # the default hour

    exported = admin.get("/admin/subscribers.csv").content
    back = upload(admin, exported, filename="export.csv").text
    assert (tile(back, "created"), tile(back, "updated"), tile(back, "unchanged")) == (0, 0, 2)
    assert tile(back, "skipped") == 0
    ada = people(sessions)["ada@example.org"]
    assert (ada.send_weekday, ada.send_hour, ada.frequency.value) == (4, 18, "weekly")


def test_the_export_reads_subscribers_in_batches(sessions: SessionFactory) -> None:
    from newsletter.web.admin.stats import all_subscribers

    with sessions() as session:
        for n in range(5):
            add_subscriber(session, f"reader{n}@example.org", topics=("cs.CL",))
        session.commit()
    rows = list(all_subscribers(sessions, batch=2))
    assert [row.email for row in rows] == [f"reader{n}@example.org" for n in reversed(range(5))]
    assert len({row.id for row in rows}) == 5
    assert [r.email for r in all_subscribers(sessions, search="reader3", batch=2)] == [
        "reader3@example.org"
    ]


# Issue 12, item 4: export, then import into a fresh database, changes nobody's status,
# consent, name or interests (an import once made everyone active and kept the export's
# formula-protection quote as data).

WHEN = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
PEOPLE: list[dict[str, Any]] = [
    {
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "status": SubscriberStatus.ACTIVE,
        "confirmed": True,
        "paused": False,
        "topics": ("cs.CL", "cs.LG"),
        "keywords": ("dense retrieval",),
    },
    {
        "email": "grace@example.org",
        "name": "Grace Hopper",
        "status": SubscriberStatus.ACTIVE,
        "confirmed": True,
        "paused": True,
        "topics": ("cs.PL",),
        "keywords": (),
    },
    {
        "email": "-left@example.org",
        "name": "=1+2",
        "status": SubscriberStatus.UNSUBSCRIBED,
        "confirmed": True,
        "paused": False,
        "topics": (),
        "keywords": ("@SUM(A1)", '=HYPERLINK("http://evil.example")'),
    },
    {
        "email": "bounced@example.org",
        "name": "@SUM(A1)",
        "status": SubscriberStatus.BOUNCED,
        "confirmed": True,
        "paused": False,
        "topics": ("cs.IR",),
        "keywords": ("+plus", "-minus"),
    },
    {
        "email": "waiting@example.org",
        "name": "'=not a formula, a name with a quote",
        "status": SubscriberStatus.PENDING,
        "confirmed": False,
        "paused": False,
        "topics": ("cs.CV",),
        "keywords": (),
    },
    {
        "email": "never@example.org",
        "name": "'quoted' Name",
        "status": SubscriberStatus.UNSUBSCRIBED,
        "confirmed": False,
        "paused": False,
        "topics": (),
        "keywords": ("'tis the season",),
    },
]


def _record(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "status": subscriber.status,
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
        "paused": subscriber.paused_at is not None,
        "topics": [i.topic_id for i in subscriber.interests if i.topic_id],
        "keywords": [i.keywords for i in subscriber.interests if i.keywords],
        "schedule": (
            subscriber.frequency,
            subscriber.timezone,
            subscriber.send_weekday,
            subscriber.send_hour,
        ),
    }


def records(sessions: SessionFactory) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        everyone = session.scalars(select(Subscriber).options(selectinload(Subscriber.interests)))
        return {s.email: _record(s) for s in everyone}


def test_an_export_imports_into_a_fresh_database_as_it_was(
    admin: TestClient, sessions: SessionFactory
) -> None:
    with sessions.begin() as session:
        for n, person in enumerate(PEOPLE):
            created = WHEN - timedelta(days=30 + n, microseconds=n)
            session.add(
                Subscriber(
                    email=person["email"],
                    name=person["name"],
                    status=person["status"],
                    created_at=created,
                    confirmed_at=created + timedelta(hours=n + 1) if person["confirmed"] else None,
                    paused_at=WHEN if person["paused"] else None,
                    frequency=Frequency.WEEKLY if n % 2 else Frequency.DAILY,
                    timezone="Asia/Kolkata" if n % 3 else "Europe/Berlin",
                    send_weekday=n % 7,
                    send_hour=(5 + n) % 24,
                    interests=[Interest(topic_id=t, weight=1.0) for t in person["topics"]]
                    + [Interest(keywords=k, weight=1.0) for k in person["keywords"]],
                )
            )
    before = records(sessions)
    export = admin.get("/admin/subscribers.csv")
    assert export.status_code == 200
    # What a spreadsheet sees: no cell starts a formula.
    cells = [cell for row in csv.reader(io.StringIO(export.text)) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
    assert "'=1+2" in cells

    with sessions.begin() as session:  # a fresh database: nobody stored
        session.execute(delete(Interest))
        session.execute(delete(Subscriber))
    html = upload(admin, export.content, filename="export.csv").text
    assert (tile(html, "created"), tile(html, "skipped")) == (len(PEOPLE), 0), problems(html)
    after = records(sessions)
    assert after == before
    active = {email for email, record in after.items() if record["status"] == "active"}
    assert active == {"ada@example.org", "grace@example.org"}
    assert after["-left@example.org"]["name"] == "=1+2"
    assert after["waiting@example.org"]["name"] == "'=not a formula, a name with a quote"


def test_an_import_never_makes_anyone_active_again(
    admin: TestClient, sessions: SessionFactory
) -> None:
    with sessions.begin() as session:
        for status in (
            SubscriberStatus.UNSUBSCRIBED,
            SubscriberStatus.BOUNCED,
            SubscriberStatus.PENDING,
        ):
            add_subscriber(session, f"{status.value}@example.org", status=status)
    plain = "email,topics\n" + "".join(
        f"{s}@example.org,cs.RO\n" for s in ("unsubscribed", "bounced", "pending")
    )
    says_active = "email,topics,status,confirmed_at\n" + "".join(
        f"{s}@example.org,cs.RO,active,2026-01-01T00:00:00+00:00\n"
        for s in ("unsubscribed", "bounced", "pending")
    )
    for content in (plain, says_active):
        html = upload(admin, content.encode()).text
        assert tile(html, "skipped") == 0, problems(html)
        stored = people(sessions)
        assert {email: s.status.value for email, s in stored.items()} == {
            "unsubscribed@example.org": "unsubscribed",
            "bounced@example.org": "bounced",
            "pending@example.org": "pending",
        }
        assert [s.confirmed_at for s in stored.values()] == [None, None, None]


def test_rows_the_file_says_are_not_active_are_imported_as_they_say(
    admin: TestClient, sessions: SessionFactory
) -> None:
    content = (
        "email,topics,status,confirmed_at\n"
        "new@example.org,cs.CL,,\n"
        "left@example.org,cs.CL,unsubscribed,2025-06-01T08:00:00+00:00\n"
        "gone@example.org,cs.CL,Bounced,\n"
        "waits@example.org,cs.CL,pending,\n"
        "typo@example.org,cs.CL,actve,\n"
        "when@example.org,cs.CL,active,yesterday\n"
    )
    html = upload(admin, content.encode()).text
    assert (tile(html, "created"), tile(html, "skipped")) == (4, 2)
    found = problems(html)
    assert "status must be one of" in found["6"]
    assert "confirmed_at must be an ISO date" in found["7"]
    stored = people(sessions)
    assert stored["new@example.org"].status == SubscriberStatus.ACTIVE
    assert stored["new@example.org"].confirmed_at is not None  # the operator vouches
    assert stored["left@example.org"].status == SubscriberStatus.UNSUBSCRIBED
    assert stored["left@example.org"].confirmed_at == datetime(2025, 6, 1, 8, tzinfo=UTC)
    assert (stored["gone@example.org"].status, stored["gone@example.org"].confirmed_at) == (
        SubscriberStatus.BOUNCED,
        None,
    )
    assert stored["waits@example.org"].status == SubscriberStatus.PENDING
