"""Issues out: ``plan``, ``send``, ``deliver``, ``bounces``, ``test-send``, ``preview``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from newsletter.cli import progress
from newsletter.cli.app import (
    JsonOption,
    QuietOption,
    app,
    configure_logging,
    day_option,
    echo_json,
    state,
)
from newsletter.cli.exitcodes import ExitCode
from newsletter.errors import EditionError

if TYPE_CHECKING:
    from newsletter.delivery.outcomes import DeliverySummary
    from newsletter.service import Service

EditionOption = Annotated[
    date | None,
    day_option(
        "--edition",
        help_text="Edition date, YYYY-MM-DD (default: the newest listing day with papers).",
    ),
]


def edition_to_plan(service: Service, edition: date | None) -> date:
    """The edition asked for, else the newest listing day up to today (UTC); an
    error, before anything is written, when it would be an edition without papers."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from newsletter.models import Paper
    from newsletter.planning.latest import latest_edition_day
    from newsletter.planning.windows import earliest_reach

    with service.sessions() as session:
        if edition is None:
            newest = latest_edition_day(session, datetime.now(UTC))
            if newest is None:
                raise EditionError(
                    "no papers listed up to today: nothing to plan or send (fetch or ingest "
                    "papers first, or give --edition YYYY-MM-DD)"
                )
            return newest
        papers = session.scalar(
            select(func.count(Paper.id)).where(
                Paper.listed_on >= earliest_reach(edition), Paper.listed_on <= edition
            )
        )
    if not papers:
        raise EditionError(
            f"no papers listed from {earliest_reach(edition)} to {edition}: edition {edition} "
            "would be empty (fetch or ingest papers first, or pick another --edition)"
        )
    return edition


WorkersOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=64,
        metavar="N",
        help="Planner processes (default: setting plan_workers; PostgreSQL only, SQLite "
        "plans in one). Planners on other machines may plan the same edition at the "
        "same time.",
    ),
]


@app.command()
def plan(
    ctx: typer.Context,
    edition: EditionOption = None,
    workers: WorkersOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Rank new papers for every subscriber and write the edition's deliveries.

    Plans a batch of subscribers per transaction: stopped or killed, it keeps what it
    planned, and running it again plans the rest (nobody twice). Without --edition:
    the newest listing day that has papers.

    Examples:
      newsletter plan
      newsletter plan --edition 2026-05-29
      newsletter plan --workers 2
      newsletter plan --edition 2026-05-29 --json | jq .planned
    """
    service = state(ctx).service()
    try:
        day = edition_to_plan(service, edition)
        enabled = progress.wanted(quiet=quiet, json_output=json_output)
        with progress.progress_bar("plan", enabled=enabled) as hook:
            summary = service.plan(
                day, workers=workers or service.settings.plan_workers, progress=hook
            )
    finally:
        service.close()
    if json_output:
        echo_json(
            {
                "edition": summary.edition,
                "planned": summary.planned,
                "already_planned": summary.already_planned,
                "nothing_new": summary.nothing_new,
                "candidates": summary.candidates,
                "held_elsewhere": summary.held_elsewhere,
                "top_picks": [
                    {"email": email, "title": title, "score": score}
                    for email, title, score in summary.top_picks
                ],
            }
        )
    else:
        typer.echo(str(summary))


def report(summary: DeliverySummary, *, json_output: bool) -> None:
    """The run's summary; a refused recipient is an outcome, not a failed run."""
    if json_output:
        data: dict[str, Any] = summary.as_dict()
        data["failures"] = [{"recipient": r, "reply": reply} for r, reply in summary.failures]
        echo_json({"edition": summary.edition, **data})
        return
    for recipient, reply in summary.failures[:50]:
        typer.echo(f"failed {recipient}: {reply}", err=True)
    if len(summary.failures) > 50:
        typer.echo(f"... and {len(summary.failures) - 50} more", err=True)
    typer.echo(str(summary))


@app.command()
def send(
    ctx: typer.Context,
    edition: EditionOption = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Send the edition's due deliveries over SMTP, in this process.

    The same as `newsletter deliver --workers 1 --edition DATE` (default: the newest
    listing day that has papers).

    Examples:
      newsletter send --edition 2026-05-29
      newsletter send --json | jq .sent
    """
    service = state(ctx).service()
    try:
        enabled = progress.wanted(quiet=quiet, json_output=json_output)
        with progress.progress_bar("send", enabled=enabled) as hook:
            summary = service.send(edition_to_plan(service, edition), progress=hook)
    finally:
        service.close()
    report(summary, json_output=json_output)


@app.command()
def deliver(
    ctx: typer.Context,
    edition: Annotated[
        date | None,
        day_option(help_text="Only this edition, YYYY-MM-DD (default: every due delivery)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            metavar="N",
            help="Worker processes (default: setting deliver_workers; PostgreSQL only, "
            "SQLite runs 1).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=256,
            metavar="C",
            help="SMTP connections per worker (default: setting smtp_connections).",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Stay until nothing is left open, sleeping until retries are due."
        ),
    ] = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Send due deliveries with N worker processes of C SMTP connections each.

    Claims deliveries in batches with a lease, so several `deliver` processes (on
    several machines, with PostgreSQL) share the work; SIGTERM stops claiming, lets
    what is in flight finish and gives the rest back. Exit status 0 when done, 1 when
    the relay cannot be reached (nothing is lost: run it again).

    Examples:
      newsletter deliver
      newsletter deliver --edition 2026-05-27 --workers 3 --concurrency 8
      newsletter deliver --wait
      newsletter deliver --json --quiet > summary.json
    """
    configure_logging(state(ctx).settings())
    service = state(ctx).service()
    try:
        enabled = progress.wanted(quiet=quiet, json_output=json_output)
        with progress.progress_bar("deliver", enabled=enabled) as hook:
            summary = service.deliver(
                edition,
                workers=workers,
                concurrency=concurrency,
                wait=wait,
                progress=hook,
            )
    finally:
        service.close()
    report(summary, json_output=json_output)


@app.command()
def bounces(
    ctx: typer.Context,
    maildir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Read bounces from this Maildir (default: the bounce_mailbox settings).",
        ),
    ] = None,
) -> None:
    """Read delivery status notifications and apply the bounce rules.

    Each DSN is matched to its delivery (by VERP return path or Message-ID); hard
    bounces suppress the address once it reaches bounce_limit. Processed messages
    are marked seen, so running it again is cheap and safe. Exit status 1 when a
    message could not be processed.

    Examples:
      newsletter bounces --maildir /var/mail/bounces
      NEWSLETTER_BOUNCE_MAILBOX=imap newsletter bounces
    """
    import logging

    from newsletter.bounces.mailboxes import run_bounces

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    summary = run_bounces(state(ctx).settings(), maildir)
    typer.echo(str(summary))
    if summary.errors:
        raise typer.Exit(ExitCode.FAILURE)


# --- one issue, changing nothing ----------------------------------------------------------

AsOption = Annotated[
    str | None,
    typer.Option("--as", metavar="EMAIL", help="The issue of this subscriber."),
]
TopicOption = Annotated[
    list[str] | None,
    typer.Option(
        "--topic",
        show_default=False,
        metavar="TOPIC",
        help="Ad-hoc profile: a topic id (repeatable).",
    ),
]
KeywordsOption = Annotated[
    str,
    typer.Option(show_default=False, help='Ad-hoc profile: keywords, ";"-separated: "a; b".'),
]
IssueEditionOption = Annotated[
    date | None,
    day_option(help_text="Edition date, YYYY-MM-DD (default: the newest listing)."),
]


@app.command("test-send")
def send_test_command(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", metavar="ADDRESS", help="Where the test goes.")],
    as_email: AsOption = None,
    topics: TopicOption = None,
    keywords: KeywordsOption = "",
    edition: IssueEditionOption = None,
) -> None:
    """Mail a real issue to ADDRESS, marked "\\[TEST]", changing nothing.

    The issue of a subscriber (--as: their planned delivery, or their picks ranked
    now) or of an ad-hoc profile (--topic/--keywords), through the production
    templates, headers, DKIM and SMTP settings. No delivery is recorded, no paper
    marked sent, no subscriber touched; the links in it act for nobody.

    Examples:
      newsletter test-send --to me@example.org --as ada@example.org
      newsletter test-send --to me@example.org --topic cs.CL --keywords "reasoning; evaluation"
      newsletter test-send --to me@example.org --as ada@example.org --edition 2026-05-29
    """
    from newsletter.delivery.testsend import send_test_issue
    from newsletter.subscribers.roster import split_list

    typer.echo(
        send_test_issue(
            state(ctx).settings(),
            to=to,
            as_email=as_email,
            topics=tuple(topics or ()),
            keywords=split_list(keywords),
            edition=edition,
        )
    )


@app.command("preview")
def preview_command(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="Write the HTML to this file (default: stdout)."),
    ] = None,
    as_email: AsOption = None,
    topics: TopicOption = None,
    keywords: KeywordsOption = "",
    edition: IssueEditionOption = None,
) -> None:
    """Render a subscriber's issue (or an ad-hoc profile's) as HTML, changing nothing.

    Examples:
      newsletter preview --as ada@example.org --out issue.html
      newsletter preview --as ada@example.org --edition 2026-05-29 > issue.html
      newsletter preview --topic cs.RO --out robots.html
    """
    from newsletter.delivery.preview import preview
    from newsletter.subscribers.roster import split_list

    html = preview(
        state(ctx).settings(),
        as_email=as_email,
        topics=tuple(topics or ()),
        keywords=split_list(keywords),
        edition=edition,
        out=out,
    )
    if out is None:
        typer.echo(html)
    else:
        typer.echo(f"wrote {out}", err=True)
