"""The progress hooks of the long operations report sensible counts, and the CLI draws
them only for a person at a terminal."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from newsletter.cli import progress as cli_progress
from newsletter.db import SessionFactory
from newsletter.mail.capture import MaildirServer
from newsletter.papers.ingest import ingest_file
from newsletter.service import Service
from newsletter.subscribers.roster import build_input, upsert_subscriber
from tests.conftest import make_settings

EDITION = date(2026, 5, 27)
PEOPLE = (
    ("ada@example.org", "cs.CL"),
    ("grace@example.org", "cs.CV"),
    ("alan@example.org", "cs.AI"),
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []

    def __call__(self, advance: int, total: int | None) -> None:
        self.calls.append((advance, total))

    @property
    def done(self) -> int:
        return sum(advance for advance, _ in self.calls)

    @property
    def totals(self) -> set[int]:
        return {total for _, total in self.calls if total is not None}


@pytest.fixture
def service(database_url: str, sessions: SessionFactory, tmp_path: Path) -> Iterator[Service]:
    opened = Service.open(make_settings(database_url, model_dir=str(tmp_path / "model")))
    yield opened
    opened.close()


def populate(service: Service, daily_file: Path) -> int:
    with service.sessions.begin() as session:
        summary = ingest_file(session, daily_file, today=EDITION)
    for email, topic in PEOPLE:
        data = build_input(service.catalogue, email=email, topics=(topic,))
        with service.sessions.begin() as session:
            upsert_subscriber(session, data)
    return summary.new


def test_ingest_counts_every_distinct_paper(sessions: SessionFactory, daily_file: Path) -> None:
    hook = Recorder()
    with sessions.begin() as session:
        summary = ingest_file(session, daily_file, today=EDITION, progress=hook)
    looked_at = summary.new + summary.updated + summary.unchanged
    assert looked_at == 319
    assert hook.done == looked_at
    assert hook.totals == {looked_at}


def test_plan_deliver_and_refit_report_their_counts(
    service: Service, daily_file: Path, tmp_path: Path
) -> None:
    populate(service, daily_file)

    planning = Recorder()
    plan = service.plan(EDITION, progress=planning)
    assert plan.planned == 3
    assert planning.calls[0] == (0, 3)  # the total is known before the ranking starts
    assert planning.done == plan.planned + plan.nothing_new == 3
    assert planning.totals == {3}

    again = Recorder()
    service.plan(EDITION, progress=again)  # everyone is planned already: nothing to do
    assert again.done == 0
    assert again.totals == {0}

    delivering = Recorder()
    with MaildirServer(tmp_path / "maildir") as server:
        service.settings = service.settings.model_copy(
            update={"smtp_host": server.host, "smtp_port": server.port}
        )
        sent = service.send(EDITION, progress=delivering)
    assert sent.sent == 3
    assert delivering.calls[0] == (0, 3)
    assert delivering.done == 3
    assert delivering.totals == {3}

    fitting = Recorder()
    service.refit(progress=fitting)
    assert fitting.calls == [(1, 3), (1, 3), (1, 3)]


def test_bars_only_for_a_person_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli_progress.wanted()
    assert not cli_progress.wanted(quiet=True)
    assert not cli_progress.wanted(json_output=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not cli_progress.wanted()
    with cli_progress.progress_bar("plan", enabled=False) as hook:
        assert hook is None


def test_the_bar_draws_the_hook_counts() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with cli_progress.progress_bar("ingest today", enabled=True, console=console) as hook:
        assert hook is not None
        hook(0, 40)
        hook(25, None)
        hook(15, 40)
        console.print("checkpoint")  # a live display redraws above anything printed
    drawn = screen.getvalue()
    assert "ingest today" in drawn
    assert "40/40" in drawn


def test_deliver_with_worker_processes_reports_every_delivery(
    service: Service, daily_file: Path, tmp_path: Path
) -> None:
    populate(service, daily_file)
    service.plan(EDITION)
    hook = Recorder()
    with MaildirServer(tmp_path / "maildir") as server:
        service.settings = service.settings.model_copy(
            update={"smtp_host": server.host, "smtp_port": server.port}
        )
        # PostgreSQL runs two processes, each reporting its total when it ends; SQLite one.
        sent = service.deliver(EDITION, workers=2, progress=hook)
    assert sent.sent == 3
    assert hook.calls[0] == (0, 3)
    assert hook.done == 3
