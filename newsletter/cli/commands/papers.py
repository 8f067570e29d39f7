"""Papers in: ``newsletter ingest``, ``newsletter topics``, ``newsletter recommender``."""

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
    day_option,
    echo_json,
    make_app,
    report_problems,
    state,
    today_utc,
)
from newsletter.cli.exitcodes import ExitCode

if TYPE_CHECKING:
    from newsletter.papers.ingest import IngestSummary


def ingest_dict(summary: IngestSummary) -> dict[str, Any]:
    return {
        "new": summary.new,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "skipped": summary.skipped,
        "problems": [str(problem) for problem in summary.problems],
    }


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            exists=True,
            dir_okay=False,
            show_default=False,
            metavar="FILES",
            help="JSON Lines listings.",
        ),
    ] = None,
    source_name: Annotated[
        str | None,
        typer.Option(
            "--source",
            metavar="NAME",
            help="Fetch from the source configured as \\[sources.NAME] instead of FILES.",
        ),
    ] = None,
    since: Annotated[
        date | None,
        day_option(
            help_text="With --source: papers from this date on (default: where the last run "
            "stopped)."
        ),
    ] = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Ingest papers from FILES or from a configured --source.

    FILES are JSON Lines in the arXiv daily listing format (.gz allowed); a --source
    is fetched (arXiv API, OAI-PMH, Hugging Face daily papers, CSV, JSONL). A failed
    fetch commits nothing. A bad line or record is reported (FILE:LINE: reason) and
    skipped, and every good one is ingested, also from a file cut short; exit status
    1 when anything was skipped or a file could not be read to its end.

    Examples:
      newsletter ingest listings/2026-05-29.jsonl.gz
      newsletter ingest --source arxiv --since 2026-05-25
      newsletter ingest --json listings/*.jsonl | jq .new
    """
    if bool(files) == bool(source_name):
        ctx.fail("give FILES or --source NAME, not both")
    if since is not None and not source_name:
        ctx.fail("--since needs --source")
    show = progress.wanted(quiet=quiet, json_output=json_output)
    service = state(ctx).service()
    try:
        if source_name:
            from newsletter.papers.fetch import fetch_source

            with progress.progress_bars(enabled=show) as bar:
                fetched = fetch_source(
                    service.sessions,
                    service.settings,
                    source_name,
                    since=since,
                    progress=bar(f"ingest {source_name}"),
                    embed_progress=bar("embed"),
                )
            report_problems(fetched.problems)
            if json_output:
                echo_json(
                    {
                        "source": fetched.source,
                        "fetched": fetched.fetched,
                        "requests": fetched.requests,
                        **ingest_dict(fetched),
                    }
                )
            else:
                typer.echo(str(fetched))
            if fetched.problems:
                raise typer.Exit(ExitCode.FAILURE)
            return
        results = []
        skipped = 0
        for path in files or []:
            with progress.progress_bars(enabled=show) as bar:
                summary = service.ingest(
                    path,
                    today=today_utc(),
                    progress=bar(f"ingest {path.name}"),
                    embed_progress=bar("embed"),
                )
            report_problems(summary.problems)
            skipped += summary.skipped
            if json_output:
                results.append({"path": str(path), **ingest_dict(summary)})
            else:
                typer.echo(f"{path}: {summary}")
        if json_output:
            totals = {
                key: sum(result[key] for result in results)
                for key in ("new", "updated", "unchanged", "skipped")
            }
            echo_json({**totals, "files": results})
        if skipped:
            raise typer.Exit(ExitCode.FAILURE)
    finally:
        service.close()


@app.command()
def topics(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List the topic catalogue (id and name, tab-separated).

    Examples:
      newsletter topics
      newsletter topics --json | jq -r '.topics[].id'
    """
    from newsletter.papers.catalogue import load_catalogue

    catalogue = load_catalogue(state(ctx).settings().topics_file)
    if json_output:
        echo_json({"topics": [{"id": t.id, "name": t.name} for t in catalogue.values()]})
        return
    for topic in catalogue.values():
        typer.echo(f"{topic.id}\t{topic.name}")


recommender_app = make_app(
    """The stored recommender model and the papers' sentence embeddings.

    Examples:
      newsletter recommender refit
      newsletter recommender embed --since 2026-05-01
    """
)
app.add_typer(recommender_app, name="recommender")


@recommender_app.command("refit")
def recommender_refit(ctx: typer.Context, quiet: QuietOption = False) -> None:
    """Fit the TF-IDF model on the newest papers now (it is otherwise refitted as it ages).

    Needs the setting model_dir (NEWSLETTER_MODEL_DIR).

    Examples:
      newsletter recommender refit
      NEWSLETTER_MODEL_DIR=/var/lib/newsletter/model newsletter recommender refit
    """
    service = state(ctx).service()
    try:
        with progress.progress_bar("refit", enabled=progress.wanted(quiet=quiet)) as hook:
            described = service.refit(progress=hook)
        typer.echo(described)
    finally:
        service.close()


@recommender_app.command("embed")
def recommender_embed(
    ctx: typer.Context,
    since: Annotated[
        date | None,
        day_option(help_text="Only papers listed on or after this day, YYYY-MM-DD (default: all)."),
    ] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Compute the sentence embeddings stored papers lack (semantic extra).

    New papers are embedded as they are ingested; this fills in papers ingested
    before the extra was installed, or before the model changed. Newest first, one
    transaction per batch, so it can be stopped and run again.

    Examples:
      newsletter recommender embed
      newsletter recommender embed --since 2026-05-01 --json
    """
    from newsletter.papers.embeddings import backfill

    service = state(ctx).service()
    try:
        enabled = progress.wanted(quiet=quiet, json_output=json_output)
        with progress.progress_bar("embed", enabled=enabled) as hook:
            count = backfill(service.sessions, since=since, progress=hook)
        if json_output:
            echo_json({"embedded": count})
        else:
            typer.echo(f"{count} papers embedded")
    finally:
        service.close()
