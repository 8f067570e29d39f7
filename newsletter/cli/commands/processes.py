"""Long-running processes: ``serve``, ``run``; and the ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import app, configure_logging, state


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on.")
    ] = 8000,
) -> None:
    """Serve the subscriber web pages (sign-up, preferences, feedback, unsubscribe).

    Examples:
      newsletter serve
      newsletter serve --host 0.0.0.0 --port 8000
    """
    from newsletter.web import serve as serve_web

    serve_web(state(ctx).settings(), host, port)


@app.command("run")
def run(ctx: typer.Context) -> None:
    """Run the scheduler: ingest, plan, deliver, refit and purge on schedule.

    Each subscriber's issue goes out at their own send hour in their own timezone.
    Blocks until SIGTERM or Ctrl-C (jobs in progress finish first). One scheduler is
    active per database: a second `newsletter run` (on this or another machine) waits
    as a standby and takes over when the first stops or dies.

    Examples:
      newsletter run
      NEWSLETTER_CONFIG=/etc/newsletter.toml newsletter run
    """
    from newsletter.scheduler.runner import run_scheduler

    settings = state(ctx).settings()
    configure_logging(settings)
    run_scheduler(settings)


@app.command()
def demo(
    directory: Annotated[
        Path,
        typer.Option(
            "--dir", file_okay=False, help="Where the demo database, Maildir and preview go."
        ),
    ] = Path("demo-data"),
) -> None:
    """Run a whole edition end to end: SQLite, real arXiv papers, a local SMTP Maildir.

    Examples:
      newsletter demo
      newsletter demo --dir /tmp/newsletter-demo
    """
    from newsletter.cli.demo import run_demo

    run_demo(directory, echo=typer.echo)
