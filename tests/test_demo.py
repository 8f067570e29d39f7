"""The README's first command: the demo runs end to end, twice, and leaves nothing running."""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest

from newsletter.cli.demo import DEMO_SUBSCRIBERS, run_demo

pytestmark = pytest.mark.slow  # runs the whole demo


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
