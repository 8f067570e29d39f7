"""A reader's library and followed authors: ``newsletter subscribers seed | seed-pending |
follow``, registered into the ``subscribers`` group."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from newsletter.cli.app import JsonOption, echo_json, state
from newsletter.cli.commands.people import subscribers_app

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from newsletter.models import LibraryImport
    from newsletter.service import Service
    from newsletter.subscribers.records import SubscriberInput


def _subscriber_id(service: Service, email: str) -> int:
    from sqlalchemy import select

    from newsletter.mail.addresses import normalise_email
    from newsletter.models import Subscriber
    from newsletter.subscribers.library_formats import LibraryError

    with service.sessions() as session:
        found = session.scalar(
            select(Subscriber.id).where(Subscriber.email == normalise_email(email))
        )
    if found is None:
        raise LibraryError(f"no subscriber {email!r} (add them first)")
    return found


def _print_report(label: str, imp: LibraryImport, *, json_output: bool) -> None:
    imported = sum(r["outcome"] == "imported" for r in imp.report)
    skipped = sum(r["outcome"] == "skipped" for r in imp.report)
    failed = [r for r in imp.report if r["outcome"] == "not imported"]
    waiting = len(imp.entries)
    if json_output:
        echo_json(
            {
                "imported": imported,
                "skipped": skipped,
                "not_imported": len(failed),
                "waiting": waiting,
                "status": imp.status,
                "last_error": imp.last_error,
                "report": imp.report,
            }
        )
    else:
        for row in imp.report:
            if row["outcome"] != "imported":
                typer.echo(f"{label}:{row['where']}: {row['outcome']}: {row['reason']}", err=True)
        typer.echo(
            f"{label}: {imported} seeds imported, {skipped} skipped, {len(failed)} not "
            f"imported, {waiting} waiting for the arXiv API"
        )
    if imp.last_error:
        typer.echo(f"{label}: {imp.last_error}", err=True)


def add_without_interests(session: Session, data: SubscriberInput) -> str:
    """``subscribers add EMAIL --library FILE`` without topics or keywords: a new
    subscriber is added with none (their library is their profile); a stored one is
    left as they are, interests included."""
    from sqlalchemy import select

    from newsletter.models import Subscriber
    from newsletter.subscribers.roster import upsert_subscriber

    if session.scalar(select(Subscriber.id).where(Subscriber.email == data.email)) is not None:
        return "kept as they are (no topics or keywords given)"
    return str(upsert_subscriber(session, data))


def seed_from_file(service: Service, email: str, path: Path, *, json_output: bool = False) -> int:
    """Seed ``email``'s profile from the library ``path``; the exit status (1: some
    entries were not imported or still wait for the arXiv API)."""
    from newsletter.models import LibraryImport, Subscriber, utcnow
    from newsletter.subscribers.library import new_import, resolve
    from newsletter.subscribers.library_arxiv import ArxivFetcher
    from newsletter.subscribers.library_formats import MAX_BYTES, LibraryError, parse_library

    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    subscriber_id = _subscriber_id(service, email)
    parsed = parse_library(data, name=path.name)  # LibraryError: the whole file is unusable
    with service.sessions.begin() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:  # deleted meanwhile
            raise LibraryError(f"no subscriber {email!r}")
        import_id = new_import(session, subscriber, parsed, source=path.name).id
    fetcher = ArxivFetcher(service.settings, today=utcnow().date())
    try:
        with service.sessions.begin() as session:
            imp = session.get(LibraryImport, import_id)
            if imp is not None and imp.status == "pending":
                resolve(session, imp, fetch=fetcher)
    finally:
        fetcher.close()
    with service.sessions() as session:
        imp = session.get(LibraryImport, import_id)
        if imp is None:
            return 1
        _print_report(str(path), imp, json_output=json_output)
        settled = imp.status == "done" and all(r["outcome"] != "not imported" for r in imp.report)
    return 0 if settled else 1


@subscribers_app.command("seed")
def subscribers_seed(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="BibTeX, RIS, CSL-JSON, or a text file of arXiv ids / URLs / DOIs, one a line.",
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Seed a subscriber's profile from their library: each paper counts as "more like this".

    Papers already stored are matched by arXiv id or title; other arXiv ids are fetched
    from the arXiv API (retried by `seed-pending` while it is down); entries without one
    are used with their own title and abstract. Each line that is not imported is
    reported, and the command then exits 1.

    Examples:
      newsletter subscribers seed ada@example.org library.bib
      newsletter subscribers seed ada@example.org ids.txt --json
    """
    service = state(ctx).service()
    try:
        code = seed_from_file(service, email, file, json_output=json_output)
    finally:
        service.close()
    raise typer.Exit(code)


@subscribers_app.command("seed-pending")
def subscribers_seed_pending(ctx: typer.Context) -> None:
    """Finish library imports that wait for the arXiv API (the scheduler runs this too).

    Examples:
      newsletter subscribers seed-pending
    """
    from newsletter.models import utcnow
    from newsletter.subscribers.library import process_pending
    from newsletter.subscribers.library_arxiv import ArxivFetcher

    service = state(ctx).service()
    fetcher = ArxivFetcher(service.settings, today=utcnow().date())
    try:
        summary = process_pending(service.sessions, fetcher)
    finally:
        fetcher.close()
        service.close()
    typer.echo(
        f"{summary.imports} library imports looked at: {summary.done} done, "
        f"{summary.waiting} still waiting for the arXiv API"
    )


@subscribers_app.command("follow")
def subscribers_follow(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    names: Annotated[
        list[str] | None, typer.Argument(help='Authors to follow ("Yann LeCun", "Y. LeCun").')
    ] = None,
) -> None:
    """Follow authors: their new papers are always in the subscriber's issue. Without
    names, lists who is followed and the authors their library suggests.

    Examples:
      newsletter subscribers follow ada@example.org "Yann LeCun" "Fei-Fei Li"
      newsletter subscribers follow ada@example.org
    """
    from newsletter.subscribers.library_follows import follow, followed, suggested_authors

    service = state(ctx).service()
    try:
        subscriber_id = _subscriber_id(service, email)
        with service.sessions.begin() as session:
            for name in names or ():
                author, new = follow(session, subscriber_id, name)
                typer.echo(f"{'following' if new else 'already following'} {author.name}")
            if not names:
                for author in followed(session, subscriber_id):
                    typer.echo(f"following\t{author.name}")
                for name in suggested_authors(session, subscriber_id):
                    typer.echo(f"suggested\t{name}")
    finally:
        service.close()
