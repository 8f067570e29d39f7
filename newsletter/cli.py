"""The ``newsletter`` command line: the edge where settings are built and errors shown."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy import func, select

from newsletter import __version__
from newsletter.errors import NewsletterError
from newsletter.models import Subscriber
from newsletter.service import Service
from newsletter.settings import Settings, load_settings
from newsletter.sources import Problem
from newsletter.subscribers import build_input, import_csv, split_list, upsert_subscriber

if TYPE_CHECKING:
    from newsletter.delivery import SendSummary

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Per-invocation state: the settings are built lazily, once."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    def service(self, *, check_schema: bool = True) -> Service:
        return Service.open(self.settings(), check_schema=check_schema)


pass_state = click.make_pass_decorator(State)


def today_utc() -> date:
    return datetime.now(UTC).date()


def edition_option(func: F) -> F:
    return click.option(
        "--edition",
        "edition",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="Edition date, YYYY-MM-DD (default: today, UTC).",
    )(func)


def _edition(value: datetime | None) -> date:
    return value.date() if value else today_utc()


def report_problems(problems: Sequence[Problem], *, limit: int = 50) -> None:
    for problem in problems[:limit]:
        click.echo(f"skipped {problem}", err=True)
    if len(problems) > limit:
        click.echo(f"... and {len(problems) - limit} more skipped", err=True)


@click.group()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A TOML file of settings (also NEWSLETTER_CONFIG).",
)
@click.version_option(__version__, prog_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """Personalised research-paper newsletter: ingest, plan, render and send."""
    ctx.obj = State(config)


@cli.group()
def db() -> None:
    """Create and migrate the database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_state
def db_upgrade(state: State, revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from newsletter.migrations import current_revision, upgrade

    service = state.service(check_schema=False)
    try:
        upgrade(service.engine, revision)
        service.sync_topics()
        click.echo(f"database at revision {current_revision(service.engine)}")
    finally:
        service.close()


@db.command("downgrade")
@click.argument("revision")
@pass_state
def db_downgrade(state: State, revision: str) -> None:
    """Migrate the database down to REVISION ('base' removes every table)."""
    from newsletter.migrations import current_revision, downgrade

    service = state.service(check_schema=False)
    try:
        downgrade(service.engine, revision)
        click.echo(f"database at revision {current_revision(service.engine) or 'base'}")
    finally:
        service.close()


@db.command("current")
@pass_state
def db_current(state: State) -> None:
    """Print the database's schema revision and the newest one."""
    from newsletter.migrations import current_revision, head_revision

    service = state.service(check_schema=False)
    try:
        click.echo(f"current: {current_revision(service.engine) or 'none'}")
        click.echo(f"newest:  {head_revision()}")
    finally:
        service.close()


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--source",
    "source_name",
    metavar="NAME",
    help="Fetch from the source configured as [sources.NAME] instead of FILES.",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="With --source: papers from this date on (default: where the last run stopped).",
)
@pass_state
def ingest(
    state: State, files: tuple[Path, ...], source_name: str | None, since: datetime | None
) -> None:
    """Ingest papers from JSON Lines FILES (arXiv daily listing format, .gz allowed),
    or fetch them from a configured --source (arXiv API, OAI-PMH, Hugging Face daily
    papers, CSV, JSONL). A failed fetch commits nothing.

    \b
    Examples:
      newsletter ingest listings/2026-05-29.jsonl.gz
      newsletter ingest --source arxiv --since 2026-05-25
    """
    if bool(files) == bool(source_name):
        raise click.UsageError("give FILES or --source NAME, not both")
    if since is not None and not source_name:
        raise click.UsageError("--since needs --source")
    service = state.service()
    try:
        if source_name:
            from newsletter.fetch import fetch_source

            fetched = fetch_source(
                service.sessions,
                service.settings,
                source_name,
                since=since.date() if since else None,
            )
            report_problems(fetched.problems)
            click.echo(str(fetched))
            return
        for path in files:
            summary = service.ingest(path, today=today_utc())
            report_problems(summary.problems)
            click.echo(f"{path}: {summary}")
    finally:
        service.close()


@cli.group()
def subscribers() -> None:
    """Add, import and list subscribers."""


@subscribers.command("add")
@click.argument("email")
@click.option("--topic", "topics", multiple=True, help="A topic id from the catalogue (repeat).")
@click.option("--keywords", default="", help='Free keywords, ";"-separated: "a; b".')
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA timezone name.")
@click.option(
    "--frequency", type=click.Choice(["daily", "weekly"]), default="daily", show_default=True
)
@click.option(
    "--always-send", is_flag=True, help="Send an issue even when nothing reaches the minimum score."
)
@pass_state
def subscribers_add(
    state: State,
    email: str,
    topics: tuple[str, ...],
    keywords: str,
    name: str,
    timezone: str,
    frequency: str,
    always_send: bool,
) -> None:
    """Add (or update) an active subscriber."""
    service = state.service()
    try:
        service.sync_topics()
        data = build_input(
            service.catalogue,
            email=email,
            name=name,
            topics=topics,
            keywords=split_list(keywords),
            timezone=timezone,
            frequency=frequency,
            always_send=always_send,
        )
        with service.sessions.begin() as session:
            outcome = upsert_subscriber(session, data)
        click.echo(f"{data.email}: {outcome}")
    finally:
        service.close()


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_state
def subscribers_import(state: State, file: Path) -> None:
    """Import subscribers from a CSV with a header row (email, name, topics, keywords, ...)."""
    service = state.service()
    try:
        service.sync_topics()
        with service.sessions.begin() as session:
            summary = import_csv(session, file, service.catalogue)
        report_problems(summary.problems)
        if summary.ignored_columns:
            click.echo(f"ignored columns: {', '.join(summary.ignored_columns)}", err=True)
        click.echo(f"{file}: {summary}")
    finally:
        service.close()


@subscribers.command("list")
@pass_state
def subscribers_list(state: State) -> None:
    """List subscribers with their status and interests."""
    service = state.service()
    try:
        with service.sessions() as session:
            rows = session.scalars(select(Subscriber).order_by(Subscriber.email)).all()
            for s in rows:
                interests = "; ".join(i.topic_id or f'"{i.keywords}"' for i in s.interests)
                click.echo(f"{s.email}\t{s.status.value}\t{s.frequency.value}\t{interests}")
            total = session.scalar(select(func.count(Subscriber.id)))
        click.echo(f"{total} subscribers", err=True)
    finally:
        service.close()


@cli.command()
@pass_state
def topics(state: State) -> None:
    """List the topic catalogue."""
    from newsletter.catalogue import load_catalogue

    for topic in load_catalogue(state.settings().topics_file).values():
        click.echo(f"{topic.id}\t{topic.name}")


@cli.command()
@edition_option
@pass_state
def plan(state: State, edition: datetime | None) -> None:
    """Rank new papers for every subscriber and write the edition's deliveries."""
    service = state.service()
    try:
        summary = service.plan(_edition(edition))
        click.echo(str(summary))
    finally:
        service.close()


def _configure_logging(settings: Settings) -> None:
    """One line per event on stderr, plain or JSON (setting log_json)."""
    from newsletter.web.observability import configure_logging

    configure_logging(json_lines=settings.log_json)


def _report(summary: SendSummary) -> None:
    for recipient, reply in summary.failures[:50]:
        click.echo(f"failed {recipient}: {reply}", err=True)
    if len(summary.failures) > 50:
        click.echo(f"... and {len(summary.failures) - 50} more", err=True)
    # A refused recipient is an outcome, recorded per delivery, not a failed run.
    click.echo(str(summary))


@cli.command()
@edition_option
@pass_state
def send(state: State, edition: datetime | None) -> None:
    """Send the edition's due deliveries over SMTP, in this process.

    The same as `newsletter deliver --workers 1 --edition DATE` (default: today).
    """
    service = state.service()
    try:
        _report(service.send(_edition(edition)))
    finally:
        service.close()


@cli.command()
@click.option(
    "--edition",
    "edition",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Only this edition, YYYY-MM-DD (default: every due delivery).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (default: setting deliver_workers; PostgreSQL only, SQLite runs 1).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="SMTP connections per worker (default: setting smtp_connections).",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Stay until nothing is left open, sleeping until retries are due.",
)
@pass_state
def deliver(
    state: State,
    edition: datetime | None,
    workers: int | None,
    concurrency: int | None,
    wait: bool,
) -> None:
    """Send due deliveries with N worker processes of C SMTP connections each.

    Claims deliveries in batches with a lease, so several `deliver` processes (on
    several machines, with PostgreSQL) share the work; SIGTERM stops claiming, lets
    what is in flight finish and gives the rest back. Exit status 0 when done, 1 when
    the relay cannot be reached (nothing is lost: run it again).

    \b
    Examples:
      newsletter deliver
      newsletter deliver --edition 2026-05-27 --workers 3 --concurrency 8
      newsletter deliver --wait
    """
    _configure_logging(state.settings())
    service = state.service()
    try:
        _report(
            service.deliver(
                edition.date() if edition else None,
                workers=workers,
                concurrency=concurrency,
                wait=wait,
            )
        )
    finally:
        service.close()


@cli.command()
@click.option(
    "--maildir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Read bounces from this Maildir (default: the bounce_mailbox settings).",
)
@pass_state
def bounces(state: State, maildir: Path | None) -> None:
    """Read delivery status notifications and apply the bounce rules.

    Each DSN is matched to its delivery (by VERP return path or Message-ID); hard
    bounces suppress the address once it reaches bounce_limit. Processed messages
    are marked seen, so running it again is cheap and safe.

    \b
    Examples:
      newsletter bounces --maildir /var/mail/bounces
      NEWSLETTER_BOUNCE_MAILBOX=imap newsletter bounces
    """
    import logging

    from newsletter.bounces import run_bounces

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    summary = run_bounces(state.settings(), maildir)
    click.echo(str(summary))
    if summary.errors:
        sys.exit(1)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@pass_state
def serve(state: State, host: str, port: int) -> None:
    """Serve the subscriber web pages (sign-up, preferences, feedback, unsubscribe).

    \b
    Example:
      newsletter serve --host 0.0.0.0 --port 8000
    """
    from newsletter.web import serve as serve_web

    serve_web(state.settings(), host, port)


@cli.command()
@click.option(
    "--papers",
    "papers_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines papers to rank (arXiv daily listing format, .gz allowed).",
)
@click.option(
    "--profiles",
    "profiles_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON Lines profiles: {"id", "topics", "keywords", "liked", "disliked"}.',
)
@click.option(
    "--top", type=click.IntRange(min=1), required=True, help="At most this many papers each."
)
@click.option(
    "--corpus",
    "corpus_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="More papers the model is fitted on but never recommended (repeat).",
)
@click.option(
    "--why",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Terms explaining each pick (0: none).",
)
@pass_state
def recommend(
    state: State,
    papers_file: Path,
    profiles_file: Path,
    top: int,
    corpus_files: tuple[Path, ...],
    why: int,
) -> None:
    """Rank papers for every profile and write JSON Lines to stdout (no database)."""
    from newsletter.catalogue import load_catalogue
    from newsletter.recommend import RecommendInputError, load_inputs, run, write_jsonl

    # Only the topic catalogue is used, so no secret key is needed.
    settings = load_settings(state.config, allow_placeholder_secret=True)
    try:
        inputs = load_inputs(
            papers=papers_file,
            profiles=profiles_file,
            corpus=corpus_files,
            catalogue=load_catalogue(settings.topics_file),
        )
    except RecommendInputError as exc:
        for problem in exc.problems[:50]:
            click.echo(str(problem), err=True)
        if len(exc.problems) > 50:
            click.echo(f"... and {len(exc.problems) - 50} more problems", err=True)
        sys.exit(2)
    for warning in inputs.warnings:
        click.echo(str(warning), err=True)
    write_jsonl(run(inputs, top=top, why=why), sys.stdout.buffer)


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Where the demo database, Maildir and preview go.",
)
def demo(directory: Path) -> None:
    """Run a whole edition end to end: SQLite, real arXiv papers, a local SMTP Maildir."""
    from newsletter.demo import run_demo

    run_demo(directory, echo=click.echo)


@cli.group()
def recommender() -> None:
    """The stored recommender model."""


@recommender.command("refit")
@pass_state
def recommender_refit(state: State) -> None:
    """Fit the TF-IDF model on the newest papers now (it is otherwise refitted as it ages)."""
    service = state.service()
    try:
        click.echo(service.refit())
    finally:
        service.close()


@cli.command("run")
@pass_state
def run(state: State) -> None:
    """Run the scheduler: ingest, plan, deliver, refit and purge on schedule.

    Each subscriber's issue goes out at their own send hour in their own timezone.
    Blocks until SIGTERM or Ctrl-C (jobs in progress finish first). One scheduler is
    active per database: a second `newsletter run` (on this or another machine) waits
    as a standby and takes over when the first stops or dies.

    \b
    Examples:
      newsletter run
      NEWSLETTER_CONFIG=/etc/newsletter.toml newsletter run
    """
    from newsletter.scheduler import run_scheduler

    _configure_logging(state.settings())
    run_scheduler(state.settings())


def _issue_options(func: F) -> F:
    func = click.option(
        "--edition",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="Edition date, YYYY-MM-DD (default: the newest listing).",
    )(func)
    func = click.option(
        "--keywords", default="", help='Ad-hoc profile: keywords, ";"-separated: "a; b".'
    )(func)
    func = click.option(
        "--topic", "topics", multiple=True, help="Ad-hoc profile: a topic id (repeatable)."
    )(func)
    return click.option(
        "--as", "as_email", default=None, metavar="EMAIL", help="The issue of this subscriber."
    )(func)


@cli.command("test-send")
@click.option("--to", "to", required=True, metavar="ADDRESS", help="Where the test goes.")
@_issue_options
@pass_state
def test_send_command(
    state: State,
    to: str,
    as_email: str | None,
    topics: tuple[str, ...],
    keywords: str,
    edition: datetime | None,
) -> None:
    """Mail a real issue to ADDRESS, marked "[TEST]", changing nothing.

    The issue of a subscriber (--as: their planned delivery, or their picks ranked
    now) or of an ad-hoc profile (--topic/--keywords), through the production
    templates, headers, DKIM and SMTP settings. No delivery is recorded, no paper
    marked sent, no subscriber touched; the links in it act for nobody.

    \b
    Examples:
      newsletter test-send --to me@example.org --as ada@example.org
      newsletter test-send --to me@example.org --topic cs.CL --keywords "reasoning; evaluation"
      newsletter test-send --to me@example.org --as ada@example.org --edition 2026-05-29
    """
    from newsletter.testsend import send_test_issue

    click.echo(
        send_test_issue(
            state.settings(),
            to=to,
            as_email=as_email,
            topics=topics,
            keywords=split_list(keywords),
            edition=edition.date() if edition else None,
        )
    )


@cli.command("preview")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the HTML to this file (default: stdout).",
)
@_issue_options
@pass_state
def preview_command(
    state: State,
    out: Path | None,
    as_email: str | None,
    topics: tuple[str, ...],
    keywords: str,
    edition: datetime | None,
) -> None:
    """Render a subscriber's issue (or an ad-hoc profile's) as HTML, changing nothing.

    \b
    Examples:
      newsletter preview --as ada@example.org --out issue.html
      newsletter preview --as ada@example.org --edition 2026-05-29 > issue.html
      newsletter preview --topic cs.RO --out robots.html
    """
    from newsletter.preview import preview

    html = preview(
        state.settings(),
        as_email=as_email,
        topics=topics,
        keywords=split_list(keywords),
        edition=edition.date() if edition else None,
        out=out,
    )
    if out is None:
        click.echo(html)
    else:
        click.echo(f"wrote {out}", err=True)


@cli.group()
def admin() -> None:
    """Operators of the admin area (/admin)."""


@admin.command("create-user")
@click.argument("username")
@click.password_option(help="Asked for twice when not given (at least 10 characters).")
@pass_state
def admin_create_user(state: State, username: str, password: str) -> None:
    """Add an operator who can log in to /admin.

    \b
    Examples:
      newsletter admin create-user alice
    """
    from newsletter.operators import create_operator

    service = state.service()
    try:
        with service.sessions.begin() as session:
            name = create_operator(session, username, password).username
    finally:
        service.close()
    click.echo(f"operator {name} created")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: domain errors become one readable line and exit status 1."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="newsletter")
    except NewsletterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
