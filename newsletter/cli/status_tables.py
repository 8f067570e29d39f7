"""The tables of ``newsletter status`` (rich), one function per table, readable at 80
columns; the command itself (newsletter.cli.commands.status) only gathers the figures."""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from newsletter.status import Status

DELIVERY_COLUMNS = ("pending", "claimed", "retry", "sent", "bounced", "failed", "suppressed")
SHORT = {
    "pending": "pend",
    "claimed": "claim",
    "bounced": "bnc",
    "failed": "fail",
    "suppressed": "supp",
}
ALARMS = ("failed", "bounced", "claimed, lease expired")


def render(figures: Status, console: Console) -> None:
    """Print the status as rich tables."""
    console.print(Columns([_people(figures), _queue(figures)], padding=(0, 4)))
    _editions(figures, console)
    _failures(figures, console)
    _mail_failures(figures, console)
    activity = figures.activity
    console.print(
        f"last ingest: {_when(activity.last_ingest)}\n"
        f"last plan:   {_when(activity.last_plan)}\n"
        f"last sent:   {_when(activity.last_sent)}",
        highlight=False,
    )


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") + " UTC" if moment else "never"


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1)
    )


def _people(figures: Status) -> Table:
    people = _table("Subscribers")
    people.add_column("status")
    people.add_column("count", justify="right")
    for name, count in figures.subscribers.items():
        people.add_row(name, str(count))
    people.add_row("total", str(sum(figures.subscribers.values())), style="bold")
    return people


def _queue(figures: Status) -> Table:
    scope = f"edition {figures.edition}" if figures.edition else "all editions"
    queue = _table(f"Deliveries ({scope})")
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
        alarm = count and label in ALARMS
        queue.add_row(label, str(count), style="bold red" if alarm else None)
    return queue


def _editions(figures: Status, console: Console) -> None:
    if not figures.editions:
        console.print("Editions: none planned yet")
        return
    editions = _table("Editions")
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


def _failures(figures: Status, console: Console) -> None:
    if not figures.failures:
        console.print("Newest failures: none")
        return
    failed = _table("Newest failures")
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


def _mail_failures(figures: Status, console: Console) -> None:
    if not figures.mail_failures:
        return
    mails = _table(f"Account mails not sent ({figures.mail_failures_day} in the last 24 h)")
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
