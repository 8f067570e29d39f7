"""`newsletter subscribers add --library` / `seed` / `follow`, in process, against a real
SQLite database and a local server standing in for the arXiv API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.db import make_engine, make_session_factory
from newsletter.models import Delivery, DeliveryItem, LibraryImport, LibrarySeed, Paper
from tests.conftest import DAILY, TEST_SECRET
from tests.library.atom import empty_feed
from tests.sources.fakeserver import FakeServer, Reply

SEED_DAY = DAILY / "2026-05-26.jsonl"
EDITION = "2026-05-27"
SEED_TOPIC = "cs.IT"  # information theory: about 2% of the listings


def _topic_ids(count: int) -> list[str]:
    ids = []
    for line in SEED_DAY.read_text().splitlines():
        record = json.loads(line)
        if record["categories"][0] == SEED_TOPIC and record["id"] not in ids:
            ids.append(record["id"])
    return ids[:count]


@pytest.fixture
def fake_arxiv() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cli(tmp_path: Path, fake_arxiv: FakeServer) -> tuple[CliRunner, dict[str, str]]:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        "[sources.arxiv]\n"
        'kind = "arxiv_api"\n'
        f'base_url = "{fake_arxiv.url}/api/query"\n'
        'categories = ["cs.GR"]\n'
        "delay_seconds = 0\n"
    )
    env = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NEWSLETTER_SECRET_KEY": TEST_SECRET,
        "NEWSLETTER_SEMANTIC": "false",
        "NEWSLETTER_CONFIG": str(config),
        "NEWSLETTER_SOURCE_RETRIES": "0",
        "NEWSLETTER_SOURCE_BACKOFF_SECONDS": "0",
    }
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    return runner, env


@pytest.mark.slow
def test_seeded_from_a_list_of_ids_the_first_issue_ranks_their_topic_first(
    tmp_path: Path, cli: tuple[CliRunner, dict[str, str]], fake_arxiv: FakeServer
) -> None:
    runner, env = cli
    for day in (SEED_DAY, DAILY / f"{EDITION}.jsonl"):
        assert runner.invoke(app, ["ingest", str(day)], env=env).exit_code == 0
    seeds = _topic_ids(6)
    library = tmp_path / "ids.txt"
    library.write_text(
        "# my reading list\n"
        + "\n".join(f"https://arxiv.org/abs/{i}v1" if n % 2 else i for n, i in enumerate(seeds))
        + f"\n{seeds[0]}\n"  # a duplicate
        "not an id at all\n"
        "2605.99999\n"  # well formed, unknown to arXiv
    )
    fake_arxiv.add(Reply(body=empty_feed()))

    result = runner.invoke(
        app, ["subscribers", "add", "ada@example.org", "--library", str(library)], env=env
    )

    assert result.exit_code == 1, result.output  # some lines were not imported
    assert "ada@example.org: created" in result.stdout
    assert "6 seeds imported, 1 skipped, 2 not imported, 0 waiting" in result.stdout
    problems = [line.removeprefix(f"{library}:") for line in result.stderr.splitlines()]
    assert problems == [
        "line 8: skipped: the same paper as line 2",
        "line 9: not imported: not an arXiv id, an arXiv URL or a DOI",
        "line 10: not imported: unknown arXiv id 2605.99999",
    ]
    # Only the id the database lacks was asked for.
    assert [r.query.get("id_list") for r in fake_arxiv.requests] == ["2605.99999"]

    assert runner.invoke(app, ["plan", "--edition", EDITION], env=env).exit_code == 0
    engine = make_engine(env["NEWSLETTER_DATABASE_URL"])
    try:
        with make_session_factory(engine)() as session:
            picks = session.execute(
                select(Paper.categories, Paper.external_id)
                .join(DeliveryItem, DeliveryItem.paper_id == Paper.id)
                .join(Delivery, Delivery.id == DeliveryItem.delivery_id)
                .order_by(DeliveryItem.rank)
            ).all()
            listed = session.scalars(
                select(Paper.categories).where(Paper.listed_on == EDITION)
            ).all()
    finally:
        engine.dispose()
    assert picks, "the seeded subscriber got no issue"
    assert not {i for _, i in picks} & set(seeds)  # papers they hold are not offered
    top = [SEED_TOPIC in categories for categories, _ in picks[:3]]
    assert all(top), picks
    share = sum(SEED_TOPIC in c for c, _ in picks) / len(picks)
    base = sum(SEED_TOPIC in c for c in listed) / len(listed)
    assert share >= 4 * base, (share, base)


@pytest.mark.sqlite_only
def test_the_arxiv_api_down_leaves_the_import_pending_and_seed_pending_finishes_it(
    tmp_path: Path, cli: tuple[CliRunner, dict[str, str]], fake_arxiv: FakeServer
) -> None:
    runner, env = cli
    runner.invoke(app, ["subscribers", "add", "ada@example.org", "--topic", "cs.GR"], env=env)
    library = tmp_path / "lib.txt"
    library.write_text("1501.05039\n")
    fake_arxiv.add(Reply(status=503, body=b"down"))

    result = runner.invoke(app, ["subscribers", "seed", "ada@example.org", str(library)], env=env)

    assert result.exit_code == 1
    assert "0 seeds imported, 0 skipped, 0 not imported, 1 waiting" in result.stdout
    assert "the arXiv API could not be reached" in result.stderr
    assert "trying again after" in result.stderr
    engine = make_engine(env["NEWSLETTER_DATABASE_URL"])
    try:
        factory = make_session_factory(engine)
        with factory.begin() as session:
            imp = session.scalars(select(LibraryImport)).one()
            assert (imp.status, imp.attempts) == ("pending", 1)
            imp.next_attempt_at = None  # the pause is over
        from tests.library.atom import RECORDED

        fake_arxiv.add(Reply(body=RECORDED.read_bytes()))
        result = runner.invoke(app, ["subscribers", "seed-pending"], env=env)
        assert result.exit_code == 0, result.output
        assert "1 library imports looked at: 1 done, 0 still waiting" in result.stdout
        with factory() as session:
            imp = session.scalars(select(LibraryImport)).one()
            assert (imp.status, imp.last_error) == ("done", None)
            seed = session.scalars(select(LibrarySeed)).one()
            assert seed.arxiv_id == "1501.05039"
            assert seed.paper_id is not None
    finally:
        engine.dispose()


@pytest.mark.sqlite_only
def test_follow_stores_names_once_and_refuses_a_non_name(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    runner, env = cli
    runner.invoke(app, ["subscribers", "add", "ada@example.org", "--topic", "cs.LG"], env=env)
    result = runner.invoke(
        app, ["subscribers", "follow", "ada@example.org", "LeCun, Yann", "Y. LeCun"], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["following Yann LeCun", "already following Yann LeCun"]
    listed = runner.invoke(app, ["subscribers", "follow", "ada@example.org"], env=env)
    assert listed.stdout.splitlines() == ["following\tYann LeCun"]
    bad = runner.invoke(app, ["subscribers", "follow", "ada@example.org", "..."], env=env)
    # main() prints NewsletterErrors as "error: ..." with exit status 1 (tests/test_cli.py)
    assert "not an author's name: '...'" in str(bad.exception)


@pytest.mark.sqlite_only
def test_add_with_a_library_keeps_an_existing_subscribers_topics(
    tmp_path: Path, cli: tuple[CliRunner, dict[str, str]]
) -> None:
    runner, env = cli
    runner.invoke(app, ["subscribers", "add", "ada@example.org", "--topic", "cs.CL"], env=env)
    library = tmp_path / "lib.bib"
    library.write_text("@article{a, title={A paper of my own}}\n")
    result = runner.invoke(
        app, ["subscribers", "add", "ada@example.org", "--library", str(library)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "ada@example.org: kept as they are" in result.stdout
    listed = runner.invoke(app, ["subscribers", "list", "--json"], env=env)
    (ada,) = json.loads(listed.stdout)["subscribers"]
    assert ada["topics"] == ["cs.CL"]
