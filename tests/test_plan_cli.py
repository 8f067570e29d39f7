"""``newsletter plan`` and ``send`` without --edition: the newest listing day with
papers, or a clear refusal when there is none (never an empty edition written)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from newsletter.cli.app import main
from newsletter.cli.exitcodes import ExitCode
from newsletter.db import SessionFactory
from newsletter.models import Edition
from tests.conftest import DAILY, TEST_SECRET

pytestmark = pytest.mark.sqlite_only


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """The console entry point in process (domain errors become its exit status)."""
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", TEST_SECRET)

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit:
            main(list(args))
        captured = capsys.readouterr()
        return Result(int(exit.value.code or 0), captured.out, captured.err)

    return invoke


def editions(sessions: SessionFactory) -> int:
    with sessions() as session:
        return session.scalar(select(func.count(Edition.id))) or 0


@pytest.mark.parametrize("command", ["plan", "send"])
def test_without_papers_plan_and_send_refuse(
    run: Callable[..., Result], sessions: SessionFactory, command: str
) -> None:
    result = run(command)
    assert result.exit_code == ExitCode.FAILURE, result.stderr
    assert "no papers listed up to today" in result.stderr
    assert "--edition" in result.stderr
    assert editions(sessions) == 0


def test_plan_without_edition_plans_the_newest_listing_day(
    run: Callable[..., Result], sessions: SessionFactory
) -> None:
    for day in ("2026-05-25", "2026-05-27"):
        assert run("ingest", str(DAILY / f"{day}.jsonl")).exit_code == 0
    assert run("subscribers", "add", "ada@example.org", "--topic", "cs.CL").exit_code == 0
    result = run("plan", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["edition"], summary["planned"]) == ("2026-05-27", 1)


def test_plan_refuses_an_edition_without_papers(
    run: Callable[..., Result], sessions: SessionFactory
) -> None:
    assert run("ingest", str(DAILY / "2026-05-27.jsonl")).exit_code == 0
    result = run("plan", "--edition", "2026-07-01")
    assert result.exit_code == ExitCode.FAILURE, result.stderr
    assert "no papers listed from 2026-06-18 to 2026-07-01" in result.stderr
    assert editions(sessions) == 0
