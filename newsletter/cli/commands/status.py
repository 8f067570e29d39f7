"""``newsletter status``: what is pending, due and failing, as tables or one JSON object."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from newsletter.cli.app import JsonOption, app, day_option, echo_json, state


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
    """Show subscribers, the delivery queue, the relay's last error, editions stuck in
    sending, the last editions and the newest failures (fits 80 columns).

    "Due now" is what a `newsletter deliver` would claim at once; "scheduled later"
    waits for a send hour or a retry backoff; a claimed delivery whose lease expired
    belongs to a worker that died and is claimed again by the next one. The relay is
    "failing" when its newest error (unreachable, or a whole batch deferred or refused)
    came after the last issue it accepted; an edition is stuck when deliveries have been
    due for 30 minutes and none of it was sent meanwhile. Exit status 4
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

    from newsletter.cli.status_tables import render

    render(figures, Console())
