"""``newsletter db``: the schema, made and changed only through Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from newsletter.cli.app import app, make_app, state

db_app = make_app(
    """Create and migrate the database schema.

    Examples:
      newsletter db upgrade
      newsletter db current
    """
)
app.add_typer(db_app, name="db")


@contextmanager
def bad_revision() -> Iterator[None]:
    """A REVISION Alembic cannot reach is a usage error (exit 2), not a traceback."""
    from alembic.util import CommandError

    try:
        yield
    except CommandError as exc:
        raise typer.BadParameter(str(exc), param_hint="'REVISION'") from None


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to reach.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: the newest).

    Examples:
      newsletter db upgrade
      newsletter db upgrade +1
    """
    from newsletter.migrations import current_revision, upgrade

    service = state(ctx).service(check_schema=False)
    try:
        with bad_revision():
            upgrade(service.engine, revision)
        service.sync_topics()
        typer.echo(f"database at revision {current_revision(service.engine)}")
    finally:
        service.close()


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="The revision to go back to, or 'base'.")],
) -> None:
    """Migrate the database down to REVISION ('base' removes every table).

    Examples:
      newsletter db downgrade -- -1
      newsletter db downgrade base
    """
    from newsletter.migrations import current_revision, downgrade

    service = state(ctx).service(check_schema=False)
    try:
        with bad_revision():
            downgrade(service.engine, revision)
        typer.echo(f"database at revision {current_revision(service.engine) or 'base'}")
    finally:
        service.close()


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Print the database's schema revision and the newest one.

    Examples:
      newsletter db current
    """
    from newsletter.migrations import current_revision, head_revision

    service = state(ctx).service(check_schema=False)
    try:
        typer.echo(f"current: {current_revision(service.engine) or 'none'}")
        typer.echo(f"newest:  {head_revision()}")
    finally:
        service.close()
