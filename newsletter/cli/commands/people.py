"""People: ``newsletter subscribers`` and ``newsletter admin``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from newsletter.cli.app import JsonOption, app, echo_json, make_app, report_problems, state

subscribers_app = make_app(
    """Add, import and list subscribers.

    Examples:
      newsletter subscribers add ada@example.org --topic cs.CL
      newsletter subscribers import people.csv
      newsletter subscribers list --json
    """
)
app.add_typer(subscribers_app, name="subscribers")


class FrequencyName(StrEnum):
    daily = "daily"
    weekly = "weekly"


@subscribers_app.command("add")
def subscribers_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    topics: Annotated[
        list[str] | None,
        typer.Option(
            "--topic",
            show_default=False,
            metavar="TOPIC",
            help="A topic id from the catalogue (repeat).",
        ),
    ] = None,
    keywords: Annotated[
        str, typer.Option(show_default=False, help='Free keywords, ";"-separated: "a; b".')
    ] = "",
    name: Annotated[str, typer.Option(show_default=False, help="The subscriber's name.")] = "",
    timezone: Annotated[str, typer.Option(help="IANA timezone name.")] = "UTC",
    frequency: Annotated[FrequencyName, typer.Option(help="How often.")] = FrequencyName.daily,
    weekday: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            metavar="DAY",
            help="The day a weekly issue goes out: monday..sunday, mon..sun or 0..6 "
            "(new subscribers: monday).",
        ),
    ] = None,
    send_hour: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=23,
            show_default=False,
            metavar="HOUR",
            help="The hour issues go out, 0..23 on the subscriber's clock (new: 7).",
        ),
    ] = None,
    always_send: Annotated[
        bool,
        typer.Option(
            "--always-send", help="Send an issue even when nothing reaches the minimum score."
        ),
    ] = False,
    library: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            show_default=False,
            help="Seed the profile from a library (see `subscribers seed`); topics optional.",
        ),
    ] = None,
) -> None:
    """Add (or update) an active subscriber.

    Examples:
      newsletter subscribers add ada@example.org --topic cs.CL --keywords "reasoning; evaluation"
      newsletter subscribers add alan@example.org --topic cs.AI --frequency weekly --weekday fri
      newsletter subscribers add grace@example.org --keywords compilers --send-hour 6
    """
    from newsletter.subscribers.roster import build_input, split_list, upsert_subscriber

    service = state(ctx).service()
    try:
        service.sync_topics()
        data = build_input(
            service.catalogue,
            email=email,
            name=name,
            topics=tuple(topics or ()),
            keywords=split_list(keywords),
            timezone=timezone,
            frequency=frequency.value,
            always_send=always_send,
            weekday=weekday,
            send_hour=send_hour,
            allow_no_interests=library is not None,
        )
        with service.sessions.begin() as session:
            outcome = upsert_subscriber(session, data)
        typer.echo(f"{data.email}: {outcome}")
        if library is not None:
            from newsletter.cli.commands.library import seed_from_file

            raise typer.Exit(seed_from_file(service, data.email, library))
    finally:
        service.close()


@subscribers_app.command("import")
def subscribers_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A CSV with a header row.")
    ],
) -> None:
    """Import subscribers from a CSV with a header row (email, name, topics, keywords, ...).

    Examples:
      newsletter subscribers import people.csv
    """
    from newsletter.subscribers.roster import import_csv

    service = state(ctx).service()
    try:
        service.sync_topics()
        with service.sessions.begin() as session:
            summary = import_csv(session, file, service.catalogue)
        report_problems(summary.problems)
        if summary.ignored_columns:
            typer.echo(f"ignored columns: {', '.join(summary.ignored_columns)}", err=True)
        typer.echo(f"{file}: {summary}")
    finally:
        service.close()


@subscribers_app.command("list")
def subscribers_list(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List subscribers with their status and interests (tab-separated, or --json).

    Examples:
      newsletter subscribers list
      newsletter subscribers list --json | jq -r '.subscribers[].email'
    """
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from newsletter.models import Subscriber
    from newsletter.subscribers.roster import weekday_name

    service = state(ctx).service()
    try:
        with service.sessions() as session:
            rows = session.scalars(
                select(Subscriber)
                .options(selectinload(Subscriber.interests))
                .order_by(Subscriber.email)
            ).all()
            if json_output:
                echo_json(
                    {
                        "total": len(rows),
                        "subscribers": [
                            {
                                "email": s.email,
                                "name": s.name,
                                "status": s.status.value,
                                "frequency": s.frequency.value,
                                "weekday": weekday_name(s.send_weekday),
                                "send_hour": s.send_hour,
                                "timezone": s.timezone,
                                "topics": [i.topic_id for i in s.interests if i.topic_id],
                                "keywords": [i.keywords for i in s.interests if not i.topic_id],
                            }
                            for s in rows
                        ],
                    }
                )
                return
            for s in rows:
                interests = "; ".join(i.topic_id or f'"{i.keywords}"' for i in s.interests)
                typer.echo(f"{s.email}\t{s.status.value}\t{s.frequency.value}\t{interests}")
        typer.echo(f"{len(rows)} subscribers", err=True)
    finally:
        service.close()


admin_app = make_app(
    """Operators of the admin area (/admin).

    Examples:
      newsletter admin create-user alice
    """
)
app.add_typer(admin_app, name="admin")


# An operator's new password: asked for twice, unseen, when not given.
PasswordOption = Annotated[
    str,
    typer.Option(
        prompt=True,
        confirmation_prompt=True,
        hide_input=True,
        help="Asked for twice when not given (at least 10 characters).",
    ),
]


@admin_app.command("create-user")
def admin_create_user(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The operator's login name.")],
    password: PasswordOption,
) -> None:
    """Add an operator who can log in to /admin.

    Examples:
      newsletter admin create-user alice
      newsletter admin create-user bob --password "$(cat bob.secret)"
    """
    from newsletter.operators import create_operator

    service = state(ctx).service()
    try:
        with service.sessions.begin() as session:
            name = create_operator(session, username, password).username
    finally:
        service.close()
    typer.echo(f"operator {name} created")


@admin_app.command("set-password")
def admin_set_password(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The operator's login name.")],
    password: PasswordOption,
) -> None:
    """Change an operator's password; every admin session they had ends.

    Examples:
      newsletter admin set-password alice
      newsletter admin set-password bob --password "$(cat bob.secret)"
    """
    from newsletter.operators import (
        OperatorError,
        find_operator,
        normalise_username,
        set_password,
    )

    service = state(ctx).service()
    try:
        with service.sessions.begin() as session:
            operator = find_operator(session, username)
            if operator is None:
                raise OperatorError(f"no operator {normalise_username(username)!r}")
            set_password(session, operator, password)
            name = operator.username
    finally:
        service.close()
    typer.echo(f"password of {name} changed; their sessions have ended")
