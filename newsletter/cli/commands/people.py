"""People: ``newsletter subscribers`` and ``newsletter admin``."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.app import JsonOption, app, echo_json, make_app, report_problems, state

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.models import Subscriber

subscribers_app = make_app(
    """Add, import, list, show, unsubscribe and delete subscribers.

    Examples:
      newsletter subscribers add ada@example.org --topic cs.CL
      newsletter subscribers import people.csv
      newsletter subscribers list --json
      newsletter subscribers show ada@example.org
      newsletter subscribers delete ada@example.org --yes
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
            if library is not None and not (data.topics or data.keywords):
                # Seeding alone: an existing subscriber keeps the interests they have.
                from newsletter.cli.commands.library import add_without_interests

                outcome = add_without_interests(session, data)
            else:
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


def _operator() -> str:
    """Who did it, for the record of operators' actions: the shell's user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _found(session: Session, email: str) -> Subscriber:
    from newsletter.subscribers.casework import CaseworkError, find_subscriber

    subscriber = find_subscriber(session, email)
    if subscriber is None:
        raise CaseworkError(f"no subscriber {email}")
    return subscriber


@subscribers_app.command("show")
def subscribers_show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    json_output: JsonOption = False,
) -> None:
    """Show one subscriber: status, interests, deliveries with outcomes, ratings, bounces,
    suppression and what operators did (exit 1 when there is no such subscriber).

    Examples:
      newsletter subscribers show ada@example.org
      newsletter subscribers show ada@example.org --json | jq .deliveries
    """
    from dataclasses import asdict

    from newsletter.subscribers.casework import subscriber_record

    service = state(ctx).service()
    try:
        with service.sessions() as session:
            record = subscriber_record(session, _found(session, email))
    finally:
        service.close()
    if json_output:
        echo_json(json.loads(json.dumps(asdict(record), default=str)))
        return
    echo = typer.echo
    echo(f"{record.email}{f' ({record.name})' if record.name else ''}: {record.status}")
    echo(f"  joined {_when(record.created_at)}, confirmed {_when(record.confirmed_at)}")
    echo(
        f"  {record.frequency} at {record.send_hour:02d}:00 {record.timezone}, "
        f"language {record.locale}"
    )
    if record.signup_waiting:
        echo("  a sign-up waits for its confirmation")
    if record.suppression:
        echo(f"  SUPPRESSED since {_when(record.suppression[1])}: {record.suppression[0]}")
    echo("topics:   " + ("; ".join(f"{code} ({name})" for code, name in record.topics) or "-"))
    echo(
        "keywords: "
        + ("; ".join(f"{phrase} ×{weight:g}" for phrase, weight in record.keywords) or "-")
    )
    echo(
        f"deliveries ({len(record.deliveries)} newest):"
        if record.deliveries
        else "deliveries: none"
    )
    for d in record.deliveries:
        reply = f" {d.code or ''} {d.reply}".rstrip() if d.status != "sent" else ""
        echo(f"  {d.edition} {d.status}, {d.papers} papers, {d.attempts} tries{reply}")
    if record.ratings:
        echo("ratings:")
    for r in record.ratings:
        echo(f"  {'more' if r.value > 0 else 'less'} {r.paper} {r.title[:50]}")
    if record.bounces:
        echo("bounces:")
    for b in record.bounces:
        echo(f"  {_when(b.at)} {b.kind} ({b.source}) {b.code or ''} {b.reply[:60]}".rstrip())
    if record.actions:
        echo("operators' actions:")
    for a in record.actions:
        echo(f"  {_when(a.at)} {a.action} by {a.operator}{f': {a.reason}' if a.reason else ''}")


@subscribers_app.command("unsubscribe")
def subscribers_unsubscribe(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    reason: Annotated[str, typer.Option(help="Why (kept with the record).")] = "",
) -> None:
    """Unsubscribe someone (as their unsubscribe link would): issues not sent yet are
    cancelled; their data stays (see `delete`). Recorded with your user name.

    Examples:
      newsletter subscribers unsubscribe ada@example.org --reason "asked by mail"
    """
    from newsletter.models import utcnow
    from newsletter.subscribers.casework import unsubscribe

    service = state(ctx).service()
    try:
        with service.sessions.begin() as session:
            subscriber = _found(session, email)
            done = unsubscribe(
                session, subscriber, operator=_operator(), reason=reason, now=utcnow()
            )
            address = subscriber.email
    finally:
        service.close()
    typer.echo(f"{address}: {'unsubscribed' if done else 'was not subscribed, nothing changed'}")


@subscribers_app.command("delete")
def subscribers_delete(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    reason: Annotated[str, typer.Option(help="Why (kept with the record).")] = "",
) -> None:
    """Delete everything stored about someone: interests, ratings, issues (as "delete my
    data" does); asks first unless --yes. The note that you did it keeps the address.

    Examples:
      newsletter subscribers delete ada@example.org
      newsletter subscribers delete ada@example.org --yes --reason "GDPR request 42"
    """
    from newsletter.models import utcnow
    from newsletter.subscribers.casework import delete

    service = state(ctx).service()
    try:
        with service.sessions() as session:
            address = _found(session, email).email
        if not yes and not typer.confirm(
            f"Delete {address} and everything stored about them?", default=False
        ):
            typer.echo("nothing deleted", err=True)
            raise typer.Exit(1)
        with service.sessions.begin() as session:
            delete(
                session, _found(session, address), operator=_operator(), reason=reason, now=utcnow()
            )
    finally:
        service.close()
    typer.echo(f"{address}: deleted")


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
