"""Fixtures of the web tests: the real app on each database, and a real SMTP server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from newsletter.mail.capture import MaildirServer
from newsletter.settings import Settings
from newsletter.web.app import create_app
from newsletter.web.options import WebOptions
from tests.conftest import make_settings
from tests.web.helpers import Mail, read_mail

PUBLIC_URL = "http://testserver"


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "maildir"


@pytest.fixture
def mail_server(maildir: Path) -> Iterator[MaildirServer]:
    with MaildirServer(maildir) as server:
        yield server


@pytest.fixture
def web_settings(database_url: str, mail_server: MaildirServer) -> Settings:
    return make_settings(
        database_url,
        smtp_host=mail_server.host,
        smtp_port=mail_server.port,
        public_url=PUBLIC_URL,
        from_address="Paper Newsletter <news@example.org>",
    )


@pytest.fixture
def options() -> WebOptions:
    """Generous limits, so only the tests about limits meet them."""
    return WebOptions(
        subscribe_per_ip="1000/minute", mails_per_address="1000/minute", posts_per_ip="1000/minute"
    )


@pytest.fixture
def client(engine: Engine, web_settings: Settings, options: WebOptions) -> Iterator[TestClient]:
    with TestClient(create_app(web_settings, options=options)) as test_client:
        yield test_client


@pytest.fixture
def mails(maildir: Path) -> Callable[[], list[Mail]]:
    def read() -> list[Mail]:
        return read_mail(maildir) if maildir.exists() else []

    return read
