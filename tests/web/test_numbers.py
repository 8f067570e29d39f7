"""Numbers in paths and queries the other tests do not reach: a 400 page, never a 500
(issue 12, item 7). The forms, the feedback path and the API have theirs in
test_subscribe, test_feedback, test_forms and test_api."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.db import SessionFactory
from newsletter.models import Feedback
from newsletter.tokens import Purpose, TokenData, Tokens
from tests.conftest import TEST_SECRET
from tests.web.helpers import add_delivery, add_subscriber, csrf_from
from tests.web.test_admin import admin, operator  # noqa: F401 - fixtures

NOT_NUMBERS = ["²", "٣", "３", "1_0", "+1", "-1", "0", "99999999999999999999", "2147483648"]


@pytest.mark.parametrize("paper_id", NOT_NUMBERS)
def test_undoing_feedback_on_no_paper_id_is_a_400_page(
    client: TestClient, sessions: SessionFactory, paper_id: str
) -> None:
    with sessions.begin() as session:
        reader = add_subscriber(session, "reader@example.org")
        item = add_delivery(session, reader).items[0]
        session.add(Feedback(subscriber_id=reader.id, paper_id=item.paper_id, value=1))
        manage = Tokens(TEST_SECRET).make(Purpose.MANAGE, TokenData(reader.id, 1))
    response = client.post(
        f"/manage/{manage}/feedback/{paper_id}/undo",
        data={"csrf_token": csrf_from(client.get("/"))},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "malformed" in response.text
    with sessions() as session:
        assert len(session.scalars(select(Feedback)).all()) == 1


@pytest.mark.parametrize("page", NOT_NUMBERS)
def test_a_subscribers_page_that_is_no_number_is_a_400_page(admin: TestClient, page: str) -> None:
    response = admin.get("/admin/subscribers", params={"page": page})
    assert response.status_code == 400
    assert "malformed" in response.text


@pytest.mark.parametrize("declared", [b"\xb2", b"\xb3\xb9", b"-1", b"1e3", b" 5"])
def test_a_content_length_that_is_no_number_is_refused_not_a_500(declared: bytes) -> None:
    import asyncio

    from newsletter.web.security import BodyLimit

    async def app(scope: object, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": [(b"content-length", declared)]}
    asyncio.run(BodyLimit(app, max_bytes=100)(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413


def test_the_too_large_page_never_shows_more_than_the_limit() -> None:
    from newsletter.web.security import _size

    # Rounded down (a page saying 2 MB for 1.5 would invite a refused upload).
    assert [_size(n) for n in (65_536, 1_572_864, 5 * 1_048_576 + 65_536, 100)] == [
        "64 KB",
        "1.5 MB",
        "5 MB",
        "100 bytes",
    ]
