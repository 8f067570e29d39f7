"""``newsletter recommend``: rank papers for profiles from files, no database.

Kept in a module of its own: ranking options (semantic ranking, ...) are added here
as one more ``typer.Option`` parameter passed through to ``newsletter.planning.batch.run``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import app, state
from newsletter.cli.exitcodes import ExitCode

PROBLEMS_SHOWN = 50


@app.command()
def recommend(
    ctx: typer.Context,
    papers_file: Annotated[
        Path,
        typer.Option(
            "--papers",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="JSON Lines papers to rank (arXiv daily listing format, .gz allowed).",
        ),
    ],
    profiles_file: Annotated[
        Path,
        typer.Option(
            "--profiles",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help='JSON Lines profiles: {"id", "topics", "keywords", "liked", "disliked"}.',
        ),
    ],
    top: Annotated[
        int, typer.Option(min=1, max=1000, metavar="K", help="At most this many papers each.")
    ],
    corpus_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--corpus",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            show_default=False,
            help="More papers the model is fitted on but never recommended (repeat).",
        ),
    ] = None,
    why: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Terms explaining each pick (0: none; a pick matched by meaning alone has none).",
        ),
    ] = 3,
    semantic: Annotated[
        bool | None,
        typer.Option(
            "--semantic/--no-semantic",
            show_default=False,
            help="Rank by TF-IDF plus sentence embeddings (the default when the semantic "
            "extra is installed and the setting semantic is not false), or TF-IDF alone.",
        ),
    ] = None,
) -> None:
    """Rank papers for every profile and write JSON Lines to stdout (no database).

    Exit status 2 when an input file has problems (each is listed on stderr).

    Examples:
      newsletter recommend --papers today.jsonl --profiles people.jsonl --top 5
      newsletter recommend --papers today.jsonl --profiles people.jsonl --top 10 \\
        --corpus last-month.jsonl.gz --why 0
      newsletter recommend --papers today.jsonl --profiles people.jsonl --top 5 --no-semantic
    """
    from newsletter.papers.catalogue import load_catalogue
    from newsletter.planning.batch import RecommendInputError, load_inputs, run, write_jsonl
    from newsletter.settings import load_settings

    # Only the topic catalogue is used, so no secret key is needed.
    settings = load_settings(state(ctx).config, allow_placeholder_secret=True)
    try:
        inputs = load_inputs(
            papers=papers_file,
            profiles=profiles_file,
            corpus=tuple(corpus_files or ()),
            catalogue=load_catalogue(settings.topics_file),
        )
    except RecommendInputError as exc:
        for problem in exc.problems[:PROBLEMS_SHOWN]:
            typer.echo(str(problem), err=True)
        if len(exc.problems) > PROBLEMS_SHOWN:
            typer.echo(f"... and {len(exc.problems) - PROBLEMS_SHOWN} more problems", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    for warning in inputs.warnings:
        typer.echo(str(warning), err=True)
    chosen = settings.semantic if semantic is None else semantic
    write_jsonl(run(inputs, top=top, why=why, semantic=chosen), sys.stdout.buffer)
