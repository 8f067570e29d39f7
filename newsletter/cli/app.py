"""The Typer app, its global options and what every command shares.

Heavy modules (SQLAlchemy models, Alembic, scikit-learn, the SMTP stack, FastAPI) are
imported inside the commands, so ``newsletter --help`` starts fast.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from newsletter import __version__
from newsletter.cli.exitcodes import EPILOG, exit_code_for
from newsletter.errors import NewsletterError
from newsletter.papers.sources import parse_day

if TYPE_CHECKING:
    from newsletter.papers.sources import Problem
    from newsletter.service import Service
    from newsletter.settings import Settings


class State:
    """Per-invocation state: the settings are built lazily, once."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        from newsletter.settings import load_settings

        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    def service(self, *, check_schema: bool = True) -> Service:
        from newsletter.service import Service

        return Service.open(self.settings(), check_schema=check_schema)


def state(ctx: typer.Context) -> State:
    found = ctx.find_object(State)
    if found is None:  # a command invoked without the root group (never from the shell)
        found = ctx.obj = State(None)
    return found


def make_app(help_text: str, **kwargs: Any) -> typer.Typer:
    """A (sub)command group with the settings every group of this CLI shares."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        add_completion=False,
        **kwargs,
    )


app = make_app(
    """Personalised research-paper newsletter: ingest, plan, render and send.

    Every command has --help with examples. Settings come from config/newsletter.toml,
    --config FILE and NEWSLETTER_* variables.

    Examples:
      newsletter db upgrade
      newsletter ingest listings/2026-05-29.jsonl && newsletter plan && newsletter send
      newsletter status
      newsletter --config /etc/newsletter.toml run
    """,
    epilog=EPILOG,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"newsletter, version {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", dir_okay=False, help="A TOML file of settings (also NEWSLETTER_CONFIG)."
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Build the per-invocation state from the global options."""
    ctx.obj = State(config)


# --- shared options and helpers ---------------------------------------------------------


def parse_day_option(value: str) -> date:
    """A ``YYYY-MM-DD`` day the commands can work with (``parse_day``'s range): anything
    else is a usage error naming the option (exit status 2), never a traceback."""
    try:
        return parse_day(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def day_option(*names: str, help_text: str) -> Any:
    """The one kind of date option (``--edition``, ``--since``): ``parse_day_option``."""
    return typer.Option(*names, parser=parse_day_option, metavar="DATE", help=help_text)


EditionOption = Annotated[
    date | None,
    day_option("--edition", help_text="Edition date, YYYY-MM-DD (default: today, UTC)."),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object (for scripts) instead of text.")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar (it is drawn only on a terminal).")
]


def today_utc() -> date:
    return datetime.now(UTC).date()


def edition_day(value: date | None) -> date:
    return value if value is not None else today_utc()


def echo_json(data: Any) -> None:
    """One JSON object on stdout; dates and times as ISO 8601."""

    def default(value: Any) -> Any:
        if isinstance(value, date | datetime):
            return value.isoformat()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"not JSON serialisable: {value!r}")

    typer.echo(json.dumps(data, default=default, ensure_ascii=False))


def report_problems(problems: Sequence[Problem], *, limit: int = 50) -> None:
    for problem in problems[:limit]:
        typer.echo(f"skipped {problem}", err=True)
    if len(problems) > limit:
        typer.echo(f"... and {len(problems) - limit} more skipped", err=True)


def configure_logging(settings: Settings) -> None:
    """One line per event on stderr, plain or JSON (setting log_json)."""
    from newsletter.logs import configure_logging as configure

    configure(json_lines=settings.log_json)


def reflow(text: str) -> str:
    """Join the lines of each prose paragraph of a docstring, so the help wraps them to
    the terminal; a paragraph with indented lines (the examples) is kept as written."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        paragraph
        if any(line.startswith(" ") for line in paragraph.splitlines()[1:])
        else " ".join(paragraph.splitlines())
        for paragraph in paragraphs
    )


def _reflow_tree(command: TyperCommand | TyperGroup) -> None:
    if command.help:
        command.help = reflow(command.help)
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            _reflow_tree(sub)  # type: ignore[arg-type]


def command() -> TyperGroup:
    """The click command tree Typer builds (for the console script and the tests)."""
    import newsletter.cli.commands  # noqa: F401  (registers every command on ``app``)

    tree = typer.main.get_command(app)
    if not isinstance(tree, TyperGroup):
        raise TypeError("the newsletter app is a group of commands")
    _reflow_tree(tree)
    return tree


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: domain errors become one readable line and a documented
    exit status (see ``ExitCode``)."""
    try:
        command().main(
            args=list(argv) if argv is not None else None,
            prog_name="newsletter",
            standalone_mode=True,
        )
    except NewsletterError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exit_code_for(exc))
