"""``newsletter status``: what is pending, due and failing, as tables or one JSON object."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.app import JsonOption, app, day_option, echo_json, state

if TYPE_CHECKING:
    from rich.console import Console

    from newsletter.status import Status

DELIVERY_COLUMNS = ("pending", "claimed", "retry", "sent", "bounced", "failed", "suppressed")


@app.command()
def status(
    ctx: typer.Context,
    edition: Annotated[
        date | None,
        day_option(
            help_text="Only the deliveries of this edition, YYYY-MM-DD (default: every edition)."
        ),
    ] = None,
    json_output: JsonOption = False,
    failures: Annotated[
        int,
        typer.Option(
            min=0, max=1000, metavar="N", help="How many of the newest failures to show (0-1000)."
        ),
    ] = 10,
) -> None:
    """Show subscribers, the delivery queue, the last editions and the newest failures.

    "Due now" is what a `newsletter deliver` would claim at once; "scheduled later"
    waits for a send hour or a retry backoff; a claimed delivery whose lease expired
    belongs to a worker that died and is claimed again by the next one. Exit status 4
    when the database cannot be reached or is not migrated, 1 when --edition names an
    edition that was never planned.

    Examples:
      newsletter status
      newsletter status --edition 2026-05-29
      newsletter status --json | jq .queue.due_now
    """
    from newsletter import status as stats
    from newsletter.errors import EditionError
    from newsletter.models import utcnow

    service = state(ctx).service()
    try:
        with service.sessions() as session:
            day = edition
            edition_id = None
            if day is not None:
                edition_id = stats.find_edition_id(session, day)
                if edition_id is None:
                    raise EditionError(f"edition {day} has not been planned")
            figures = stats.status(
                session, now=utcnow(), edition_id=edition_id, day=day, failures_limit=failures
            )
    finally:
        service.close()
    if json_output:
        echo_json(figures.as_dict())
        return
    from rich.console import Console

    render(figures, Console())


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") + " UTC" if moment else "never"


def render(figures: Status, console: Console) -> None:
    """Print the status as rich tables (readable at 80 columns)."""
    from rich import box
    from rich.columns import Columns
    from rich.table import Table

    def table(title: str) -> Table:
        return Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            padding=(0, 1),
        )

    people = table("Subscribers")
    people.add_column("status")
    people.add_column("count", justify="right")
    for name, count in figures.subscribers.items():
        people.add_row(name, str(count))
    people.add_row("total", str(sum(figures.subscribers.values())), style="bold")

    scope = f"edition {figures.edition}" if figures.edition else "all editions"
    queue = table(f"Deliveries ({scope})")
    queue.add_column("state")
    queue.add_column("count", justify="right")
    q, d = figures.queue, figures.deliveries
    for label, count in (
        ("due now", q.due_now),
        ("scheduled later", q.scheduled_later),
        ("claimed, lease live", q.claimed_live),
        ("claimed, lease expired", q.claimed_expired),
        ("retry", d["retry"]),
        ("failed", d["failed"]),
        ("bounced", d["bounced"]),
        ("suppressed", d["suppressed"]),
        ("sent", d["sent"]),
        ("sent today", q.sent_today),
    ):
        alarm = count and label in ("failed", "bounced", "claimed, lease expired")
        queue.add_row(label, str(count), style="bold red" if alarm else None)
    console.print(Columns([people, queue], padding=(0, 4)))

    if figures.editions:
        editions = table("Editions")
        editions.add_column("date", no_wrap=True)
        editions.add_column("status", no_wrap=True)
        for name in DELIVERY_COLUMNS:
            editions.add_column(SHORT.get(name, name), justify="right")
        editions.add_column("total", justify="right")
        for row in figures.editions:
            editions.add_row(
                row.day.isoformat(),
                row.status,
                *(str(row.counts[name]) for name in DELIVERY_COLUMNS),
                str(row.total),
            )
        console.print(editions)
    else:
        console.print("Editions: none planned yet")

    if figures.failures:
        failed = table("Newest failures")
        failed.add_column("edition", no_wrap=True)
        failed.add_column("email", overflow="fold", max_width=26)
        failed.add_column("status", no_wrap=True)
        failed.add_column("tries", justify="right")
        failed.add_column("reply", overflow="fold", min_width=16)
        failed.add_column("next", no_wrap=True)
        for failure in figures.failures:
            failed.add_row(
                failure.day.strftime("%m-%d"),
                failure.email,
                f"{failure.status} {failure.code or ''}".strip(),
                str(failure.attempts),
                failure.reply,
                failure.next_attempt_at.strftime("%m-%d %H:%M") if failure.next_attempt_at else "",
            )
        console.print(failed)
    else:
        console.print("Newest failures: none")

    if figures.mail_failures:
        mails = table(f"Account mails not sent ({figures.mail_failures_day} in the last 24 h)")
        mails.add_column("when", no_wrap=True)
        mails.add_column("mail", no_wrap=True)
        mails.add_column("email", overflow="fold", max_width=26)
        mails.add_column("reply", overflow="fold", min_width=16)
        for mail in figures.mail_failures:
            mails.add_row(
                mail.at.strftime("%m-%d %H:%M"),
                mail.template,
                mail.email,
                f"{mail.code or ''} {mail.reason}".strip(),
            )
        console.print(mails)

    activity = figures.activity
    console.print(
        f"last ingest: {_when(activity.last_ingest)}\n"
        f"last plan:   {_when(activity.last_plan)}\n"
        f"last sent:   {_when(activity.last_sent)}",
        highlight=False,
    )


SHORT = {
    "pending": "pend",
    "claimed": "claim",
    "bounced": "bnc",
    "failed": "fail",
    "suppressed": "supp",
}
