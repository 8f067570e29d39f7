"""Helpers for the web tests: read captured mail, fill forms, make stored rows."""

from __future__ import annotations

import email
import mailbox
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)


class Page(Protocol):
    """A response with a body (httpx's or httpx2's, whichever the TestClient uses)."""

    @property
    def text(self) -> str: ...


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]

    def link(self, path: str) -> str:
        """The first link in the text part whose path starts with ``path``."""
        match = re.search(r"https?://[^\s/]+" + re.escape(path) + r"[^\s]*", self.text)
        assert match, f"no {path} link in:\n{self.text}"
        return match.group(0)


def _arrival(key: str) -> tuple[int, int]:
    # Maildir names are "<seconds>.M<usec>P<pid>Q<count>.<host>"; Q counts per writer.
    seconds, rest = key.split(".", 1)
    count = re.search(r"Q(\d+)", rest)
    return int(seconds), int(count.group(1)) if count else 0


def read_mail(maildir: Path) -> list[Mail]:
    """Every message in the Maildir, oldest first."""
    box = mailbox.Maildir(maildir, create=False)
    messages = []
    for key in sorted(box.keys(), key=_arrival):
        with box.get_file(key) as handle:
            raw = handle.read()
        message = email.message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        messages.append(
            Mail(
                to=str(message["To"]),
                subject=str(message["Subject"]),
                text=text_part.get_content() if text_part else "",
                html=html_part.get_content() if html_part else "",
                headers={k: str(v) for k, v in message.items()},
            )
        )
    return messages


def csrf_from(response: Page) -> str:
    match = CSRF_FIELD.search(response.text)
    assert match, "no CSRF field on the page"
    return match.group(1)


def post_form(client: TestClient, page: str, action: str, data: dict[str, Any]) -> Any:
    """GET ``page`` (for the CSRF cookie and field), then POST ``data`` to ``action``."""
    token = csrf_from(client.get(page))
    return client.post(action, data={**data, "csrf_token": token}, follow_redirects=False)


def subscribe_form(email_address: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": email_address,
        "topics": ["cs.CL", "cs.LG"],
        "keywords": "retrieval augmented generation\nevaluation",
        "frequency": "daily",
        "timezone": "Europe/Berlin",
        "send_hour": "7",
    }
    values.update(overrides)
    return values


def add_subscriber(
    session: Session,
    address: str,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    topics: tuple[str, ...] = ("cs.CL",),
) -> Subscriber:
    subscriber = Subscriber(
        email=address,
        status=status,
        frequency=Frequency.DAILY,
        confirmed_at=utcnow() if status == SubscriberStatus.ACTIVE else None,
        interests=[Interest(topic_id=t, weight=1.0) for t in topics],
        # A fixed link key (new subscribers get a random one) so tests can sign links.
        token_version=1,
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def add_delivery(
    session: Session,
    subscriber: Subscriber,
    *,
    day: date = date(2026, 5, 27),
    papers: int = 3,
    status: DeliveryStatus = DeliveryStatus.SENT,
    title: str = "Paper",
) -> Delivery:
    """A delivery of ``papers`` new papers (ranks 1..n) for ``subscriber``."""
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        edition = Edition(date=day)
        session.add(edition)
        session.flush()
    delivery = Delivery(edition_id=edition.id, subscriber_id=subscriber.id, status=status)
    session.add(delivery)
    session.flush()
    for rank in range(1, papers + 1):
        external = f"2605.{delivery.id:03d}{rank:02d}"
        paper = Paper(
            external_id=external,
            title=f"{title} {rank}",
            abstract="An abstract about language models and their evaluation.",
            authors=["Ada Lovelace", "Alan Turing"],
            categories=["cs.CL"],
            url=f"https://arxiv.org/abs/{external}",
            listed_on=day,
            content_listed_on=day,
        )
        session.add(paper)
        session.flush()
        session.add(
            DeliveryItem(
                delivery_id=delivery.id, rank=rank, paper_id=paper.id, score=0.5, terms=["model"]
            )
        )
    session.flush()
    return delivery


def subscriber_by_email(sessions: SessionFactory, address: str) -> Subscriber | None:
    with sessions() as session:
        return session.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()


def local_listener() -> tuple[socket.socket, str]:
    """A bound listening socket on a free local port, and its http URL (the app's
    public URL is known before the app is built)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextmanager
def uvicorn_serving(app: FastAPI, listener: socket.socket) -> Iterator[None]:
    """Serve ``app`` with uvicorn on ``listener`` in a thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    with server_running(server, listener):
        yield


@contextmanager
def server_running(server: uvicorn.Server, listener: socket.socket) -> Iterator[None]:
    """Run a uvicorn ``server`` on ``listener`` in a thread until the block ends."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
