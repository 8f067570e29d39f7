"""The real console script, run as a user runs it: messages, exit codes, state left behind."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.cli.exitcodes import ExitCode
from newsletter.db import make_engine, make_session_factory
from newsletter.mail.capture import MaildirServer
from newsletter.models import Delivery, DeliveryStatus
from newsletter.resources import resource_path
from tests.conftest import DAILY, TEST_SECRET, child_environment

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    """Run ``newsletter ARGS`` in a subprocess with a clean NEWSLETTER_* environment."""
    base = child_environment()
    base["NEWSLETTER_SECRET_KEY"] = TEST_SECRET
    base["NEWSLETTER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"

    def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "newsletter", *args],
            capture_output=True,
            text=True,
            env={**base, **(env or {})},
            cwd=tmp_path,
            timeout=600,  # a hang guard, not a timing assertion (loaded CI machines)
        )

    return _run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_lists_the_commands(run: Run) -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("db", "ingest", "subscribers", "plan", "send", "demo", "topics"):
        assert command in result.stdout


def test_missing_secret_is_refused_with_the_setting_named(run: Run) -> None:
    result = run("db", "current", env={"NEWSLETTER_SECRET_KEY": ""})
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.startswith("error: invalid setting secret_key (NEWSLETTER_SECRET_KEY)")
    assert "Traceback" not in result.stderr


def test_invalid_setting_is_named(run: Run) -> None:
    result = run("db", "current", env={"NEWSLETTER_SMTP_TLS": "maybe"})
    assert result.returncode == ExitCode.CONFIG
    assert "NEWSLETTER_SMTP_TLS" in result.stderr
    assert "Traceback" not in result.stderr


def test_database_that_does_not_connect(run: Run) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    result = run("db", "upgrade", env={"NEWSLETTER_DATABASE_URL": url})
    assert result.returncode == ExitCode.DATABASE
    assert "error: cannot connect to database" in result.stderr
    assert "Traceback" not in result.stderr


def test_commands_refuse_an_unmigrated_database(run: Run) -> None:
    result = run("ingest", str(DAILY / "2026-05-27.jsonl"))
    assert result.returncode == ExitCode.DATABASE
    assert "run: newsletter db upgrade" in result.stderr


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_bad_input_is_reported_and_nothing_is_lost(run: Run, tmp_path: Path) -> None:
    assert run("db", "upgrade").returncode == 0
    feed = tmp_path / "2026-05-04.jsonl"
    feed.write_text(
        json.dumps({"id": "2605.00001", "title": "A paper about robots", "summary": "Robots."})
        + "\nnot json\n"
        + json.dumps({"id": "2605.00002"})
        + "\n"
    )
    result = run("ingest", str(feed))
    assert result.returncode == ExitCode.FAILURE  # the good line is in; two were skipped
    assert f"{feed}:2: not JSON" in result.stderr
    assert f"{feed}:3: missing 'title'" in result.stderr
    assert "1 new, 0 updated, 0 unchanged, 2 skipped" in result.stdout
    bad = run("subscribers", "add", "not-an-address", "--topic", "cs.RO")
    assert bad.returncode == 1
    assert "error: invalid address 'not-an-address'" in bad.stderr
    unknown = run("subscribers", "add", "ada@example.org", "--topic", "cs.NOPE")
    assert unknown.returncode == 1
    assert "unknown topic 'cs.NOPE'; known topics: " in unknown.stderr
    nothing = run("send", "--edition", "2026-05-04")
    assert nothing.returncode == 1
    assert "edition 2026-05-04 has not been planned" in nothing.stderr


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_subscribers_add_takes_the_weekly_schedule(run: Run) -> None:
    assert run("db", "upgrade").returncode == 0
    weekly = ("--topic", "cs.CL", "--frequency", "weekly", "--weekday", "fri", "--send-hour", "18")
    assert run("subscribers", "add", "ada@example.org", *weekly).returncode == 0
    assert run("subscribers", "add", "alan@example.org", "--topic", "cs.AI").returncode == 0
    listed = json.loads(run("subscribers", "list", "--json").stdout)["subscribers"]
    schedule = {s["email"]: (s["frequency"], s["weekday"], s["send_hour"]) for s in listed}
    assert schedule == {
        "ada@example.org": ("weekly", "friday", 18),
        "alan@example.org": ("daily", "monday", 7),
    }
    # Updating without the options keeps the schedule; a bad day or hour is refused.
    assert run("subscribers", "add", "ada@example.org", "--topic", "cs.LG").returncode == 0
    listed = json.loads(run("subscribers", "list", "--json").stdout)["subscribers"]
    assert (listed[0]["weekday"], listed[0]["send_hour"]) == ("friday", 18)
    bad_day = run("subscribers", "add", "ada@example.org", "--topic", "cs.CL", "--weekday", "fun")
    assert bad_day.returncode == 1
    assert "weekday must be 0 (Monday) to 6 (Sunday)" in bad_day.stderr
    bad_hour = run("subscribers", "add", "ada@example.org", "--topic", "cs.CL", "--send-hour", "24")
    assert bad_hour.returncode == 2


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_whole_flow_with_unreachable_then_reachable_smtp(
    run: Run, tmp_path: Path, database_url: str, engine: Engine
) -> None:
    env = {"NEWSLETTER_DATABASE_URL": database_url}
    assert run("db", "upgrade", env=env).returncode == 0
    ingest = run("ingest", str(DAILY / "2026-05-27.jsonl"), env=env)
    assert ingest.returncode == 0, ingest.stderr
    assert "319 new" in ingest.stdout
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(
        "email,name,topics,keywords\n"
        "ada@example.org,Ada,cs.CL,reasoning\n"
        "grace@example.org,Grace,cs.CV,\n"
        "broken,Nobody,cs.CV,\n"
    )
    imported = run("subscribers", "import", str(csv_file), env=env)
    assert imported.returncode == 0
    assert "2 created" in imported.stdout
    assert f"{csv_file}:4: invalid address" in imported.stderr
    added = run("subscribers", "add", "alan@example.org", "--topic", "cs.AI", env=env)
    assert "alan@example.org: created" in added.stdout
    plan = run("plan", "--edition", "2026-05-27", env=env)
    assert plan.returncode == 0, plan.stderr
    assert "3 deliveries planned" in plan.stdout
    assert (
        "0 deliveries planned, 3 already planned"
        in run("plan", "--edition", "2026-05-27", env=env).stdout
    )

    port = free_port()
    down = run(
        "send",
        "--edition",
        "2026-05-27",
        env={**env, "NEWSLETTER_SMTP_HOST": "127.0.0.1", "NEWSLETTER_SMTP_PORT": str(port)},
    )
    assert down.returncode == 1
    assert f"127.0.0.1:{port}" in down.stderr
    assert "Traceback" not in down.stderr
    sessions = make_session_factory(engine)
    with sessions() as session:
        statuses = [d.status for d in session.scalars(select(Delivery))]
    assert statuses == [DeliveryStatus.PENDING] * 3

    with MaildirServer(tmp_path / "maildir") as server:
        smtp = {"NEWSLETTER_SMTP_HOST": server.host, "NEWSLETTER_SMTP_PORT": str(server.port)}
        sent = run("send", "--edition", "2026-05-27", env={**env, **smtp})
        assert sent.returncode == 0, sent.stderr
        assert "3 sent, 0 to retry, 0 bounced, 0 failed" in sent.stdout
        again = run("send", "--edition", "2026-05-27", env={**env, **smtp})
        assert "0 sent" in again.stdout
        assert server.received == 3


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_broken_template_names_the_file_and_sends_nothing(run: Run, tmp_path: Path) -> None:
    templates = tmp_path / "email"
    shutil.copytree(resource_path("templates") / "email", templates)
    (templates / "issue.mjml").write_text("<mjml><mj-body><mj-section>")
    env = {"NEWSLETTER_TEMPLATES_DIR": str(templates)}
    assert run("db", "upgrade").returncode == 0
    assert run("ingest", str(DAILY / "2026-05-27.jsonl")).returncode == 0
    assert run("subscribers", "add", "ada@example.org", "--topic", "cs.CL").returncode == 0
    assert run("plan", "--edition", "2026-05-27").returncode == 0
    with MaildirServer(tmp_path / "maildir") as server:
        smtp = {"NEWSLETTER_SMTP_HOST": server.host, "NEWSLETTER_SMTP_PORT": str(server.port)}
        result = run("send", "--edition", "2026-05-27", env={**env, **smtp})
        assert result.returncode == 1
        assert f"template {templates / 'issue.mjml'} does not compile" in result.stderr
        assert server.received == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    try:
        with make_session_factory(engine)() as session:
            statuses = [d.status for d in session.scalars(select(Delivery))]
    finally:
        engine.dispose()
    assert statuses == [DeliveryStatus.PENDING]


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_ingest_from_a_configured_source_and_usage_errors(run: Run, tmp_path: Path) -> None:
    listing = tmp_path / "papers.csv"
    listing.write_text(
        "id,title,abstract,authors,categories,date\n"
        "2605.00001,Sparse attention,We study attention.,Ada Lovelace; Alan Turing,cs.CL,"
        "2026-05-27\n",
        encoding="utf-8",
    )
    config = tmp_path / "newsletter.toml"
    config.write_text(f'[sources.local]\nkind = "csv"\npath = "{listing}"\n', encoding="utf-8")
    assert run("db", "upgrade").returncode == 0
    fetched = run("--config", str(config), "ingest", "--source", "local")
    assert fetched.returncode == 0, fetched.stderr
    assert "1 new" in fetched.stdout
    again = run("--config", str(config), "ingest", "--source", "local", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["source"], summary["new"], summary["unchanged"]) == ("local", 0, 1)
    for args in (("ingest",), ("ingest", "--since", "2026-05-01", str(listing))):
        wrong = run(*args)
        assert wrong.returncode == 2
        assert "Usage" in wrong.stderr
    unknown = run("--config", str(config), "ingest", "--source", "nowhere")
    assert unknown.returncode == ExitCode.CONFIG
    assert unknown.stderr.startswith("error:")
    assert "nowhere" in unknown.stderr


def test_deliver_bounces_and_serve_have_help_with_examples(run: Run) -> None:
    for command in ("deliver", "bounces", "serve", "ingest"):
        result = run(command, "--help")
        assert result.returncode == 0, command
        assert "Example" in result.stdout, command


def test_admin_create_user(run: Run) -> None:
    assert run("db", "upgrade").returncode == 0
    created = run("admin", "create-user", "alice", "--password", "a-long-passphrase")
    assert created.returncode == 0, created.stderr
    assert "operator alice created" in created.stdout
    again = run("admin", "create-user", "alice", "--password", "a-long-passphrase")
    assert again.returncode == 1
    assert again.stderr.startswith("error:")
    short = run("admin", "create-user", "bob", "--password", "short")
    assert short.returncode == 1
    assert "error:" in short.stderr
    changed = run("admin", "set-password", "Alice", "--password", "another-passphrase")
    assert changed.returncode == 0, changed.stderr
    assert "password of alice changed" in changed.stdout
    nobody = run("admin", "set-password", "carol", "--password", "another-passphrase")
    assert nobody.returncode == 1
    assert "no operator 'carol'" in nobody.stderr


def test_deliver_logs_one_json_object_per_event_when_asked(run: Run) -> None:
    assert run("db", "upgrade").returncode == 0
    port = free_port()  # nothing listens: the relay is unreachable
    result = run(
        "deliver",
        "--workers",
        "2",
        env={"NEWSLETTER_LOG_JSON": "true", "NEWSLETTER_SMTP_PORT": str(port)},
    )
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    warning = next(e for e in events if "single writer" in json.dumps(e))
    assert warning["level"].lower().startswith("warn")
    assert result.stderr.splitlines()[-1].startswith("error:")


@pytest.mark.slow  # the real console script, several runs (~10-30 s)
def test_ingest_fails_when_a_line_was_skipped_or_a_file_cut_short(run: Run, tmp_path: Path) -> None:
    """Every good line is kept, but the run says that something was lost (issue 12)."""
    assert run("db", "upgrade").returncode == 0
    good = DAILY / "2026-05-27.jsonl"
    lines = good.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "2026-05-28.jsonl.gz"
    compressed = gzip.compress(b"".join(lines[:200]))
    cut.write_bytes(compressed[: len(compressed) // 2])
    bad = tmp_path / "2026-05-29.jsonl"
    bad.write_bytes(b"".join(lines[200:300]).replace(b'"title": "', b'"title": "\xff', 1))
    result = run("ingest", "--json", str(good), str(cut), str(bad))
    assert result.returncode == ExitCode.FAILURE, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert [f["skipped"] for f in summary["files"]] == [0, 1, 1]
    assert f"skipped {cut}: truncated after line " in result.stderr
    assert f"skipped {bad}:1: not UTF-8 (byte 0xff at column " in result.stderr
    again = run("ingest", str(good))
    assert again.returncode == 0, again.stderr
    assert f"{good}: 0 new, 0 updated, 319 unchanged, 0 skipped" in again.stdout


def _usage_message(stderr: str) -> str:
    """The usage error's text, without the box rich draws around it."""
    return " ".join(re.sub("[│╭╮╰╯─]", " ", stderr).split())


BAD_DAYS = {
    "0001-01-01": "0001-01-01 is not between 1900-01-01 and 2999-12-31",
    "9999-12-31": "9999-12-31 is not between 1900-01-01 and 2999-12-31",
    "1899-12-31": "1899-12-31 is not between 1900-01-01 and 2999-12-31",
    "2026-02-30": "'2026-02-30' is not a YYYY-MM-DD date",
    "26-05-27": "'26-05-27' is not a YYYY-MM-DD date",
}
DAY_OPTIONS = {
    "plan": ("plan", "--edition"),
    "send": ("send", "--edition"),
    "deliver": ("deliver", "--edition"),
    "status": ("status", "--edition"),
    "test-send": ("test-send", "--to", "me@example.org", "--edition"),
    "preview": ("preview", "--edition"),
    "ingest": ("ingest", "--source", "local", "--since"),
    "embed": ("recommender", "embed", "--since"),
}


@pytest.mark.parametrize("command", DAY_OPTIONS)
@pytest.mark.parametrize("day", BAD_DAYS)
def test_every_date_option_refuses_a_day_it_cannot_work_with(
    tmp_path: Path, command: str, day: str
) -> None:
    env = {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    result = CliRunner().invoke(app, [*DAY_OPTIONS[command], day], env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    option = DAY_OPTIONS[command][-1]
    assert f"Invalid value for '{option}': {BAD_DAYS[day]}" in _usage_message(result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("status", "--failures", "99999999999999999999"),
        ("status", "--failures", "-1"),
        ("deliver", "--workers", "0"),
        ("deliver", "--concurrency", "100000"),
        ("subscribers", "add", "ada@example.org", "--send-hour", "24"),
        ("serve", "--port", "70000"),
    ],
)
def test_number_options_out_of_range_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = {"NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"Invalid value for '{args[-2]}'" in _usage_message(result.stderr)


def test_recommend_refuses_a_top_it_cannot_allocate(tmp_path: Path) -> None:
    papers = tmp_path / "papers.jsonl"
    papers.write_bytes(b"".join((DAILY / "2026-05-27.jsonl").read_bytes().splitlines(True)[:5]))
    profiles = tmp_path / "profiles.jsonl"
    profiles.write_text('{"id": "ada", "topics": ["cs.CL"]}\n')
    files = ("--papers", str(papers), "--profiles", str(profiles), "--no-semantic")
    # Not a huge top that fits an int64: before the cap, that allocated until killed.
    for top in ("1001", "99999999999999999999"):
        result = CliRunner().invoke(app, ["recommend", *files, "--top", top])
        assert result.exit_code == ExitCode.USAGE, result.output
        assert "Invalid value for '--top'" in _usage_message(result.stderr)


def test_plan_with_a_day_out_of_range_prints_no_traceback(run: Run) -> None:
    assert run("db", "upgrade").returncode == 0
    result = run("plan", "--edition", "0001-01-01")
    assert result.returncode == ExitCode.USAGE
    assert "Traceback" not in result.stderr
    assert "0001-01-01 is not between 1900-01-01 and 2999-12-31" in _usage_message(result.stderr)
    # The last day there is passes the option; with no papers it is an empty edition,
    # which plan refuses (exit 1) instead of writing it.
    latest = run("plan", "--edition", "2999-12-31")
    assert latest.returncode == ExitCode.FAILURE
    assert "edition 2999-12-31 would be empty" in latest.stderr


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_db_revision_that_does_not_exist_is_a_usage_error(tmp_path: Path, command: str) -> None:
    env = {
        "NEWSLETTER_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "NEWSLETTER_SECRET_KEY": TEST_SECRET,
    }
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    result = runner.invoke(app, ["db", command, "garbage"], env=env)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Can't locate revision identified by 'garbage'" in _usage_message(result.stderr)
    assert runner.invoke(app, ["db", "current"], env=env).stdout.startswith("current: 00")
