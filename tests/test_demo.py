"""The README's first command: the demo runs end to end, twice, and leaves nothing running."""

from __future__ import annotations

import mailbox
import re
import socket
import threading
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from newsletter.cli.demo import DEMO_SUBSCRIBERS, run_demo
from newsletter.settings import load_settings
from newsletter.web.app import create_app

pytestmark = pytest.mark.slow  # runs the whole demo


def _plain(data: bytes) -> str:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_demo_twice(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    for _ in range(2):
        lines: list[str] = []
        result = run_demo(tmp_path / "demo", echo=lines.append)
        output = "\n".join(lines)
        assert result.messages == len(DEMO_SUBSCRIBERS)
        assert len(list((result.maildir / "new").iterdir())) == len(DEMO_SUBSCRIBERS)
        assert "<html" in result.preview.read_text()
        assert f"{len(DEMO_SUBSCRIBERS)} deliveries planned" in output
        assert f"{len(DEMO_SUBSCRIBERS)} sent, 0 to retry, 0 bounced, 0 failed" in output
        table = [line for line in lines if re.match(r"^\S+@example\.org\s+0\.\d{3}\s+\S", line)]
        assert len(table) == len(DEMO_SUBSCRIBERS)
        port = int(re.search(r"SMTP 127\.0\.0\.1:(\d+)", output).group(1))  # type: ignore[union-attr]
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "SMTP server left running"
    assert threading.active_count() == threads_before
    # Different interests give different top papers.
    assert len({line.split(None, 2)[2] for line in table}) == len(DEMO_SUBSCRIBERS)
    # Each step is announced before it runs; the preview says whose issue it is.
    steps = [line for line in lines if re.match(r"^\[\d/5\] ", line)]
    assert len(steps) == 5
    assert "HTML preview of Ada Lovelace <ada@example.org>'s issue" in output
    # The pages its links point to can be served with the settings it wrote.
    assert f"newsletter --config {result.config} serve" in output
    settings = load_settings(result.config)  # a real secret: serve would accept it
    maildir = mailbox.Maildir(result.maildir, create=False)
    text = "\n".join(_plain(maildir.get_bytes(key)) for key in maildir.iterkeys())
    manage = re.search(r"http://127\.0\.0\.1:8000(/manage/[\w.-]+)", text)
    assert manage is not None
    with TestClient(create_app(settings)) as client:
        page = client.get(manage.group(1))
    assert page.status_code == 200  # not "this link does not work"
    assert "@example.org" in page.text
