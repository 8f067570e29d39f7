"""The tables of ``newsletter status`` (rich), one function per table, readable at 80
columns; the command itself (newsletter.cli.commands.status) only gathers the figures."""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.columns import Columns
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from newsletter.status import STUCK_AFTER, Status

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
    _relay(figures, console)
    _stuck(figures, console)
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


def _relay(figures: Status, console: Console) -> None:
    error = figures.relay_error
    if error is None:
        console.print("Relay: no errors in the last 14 days", highlight=False)
        return
    if figures.relay_failing:
        headline = "[bold red]Relay: failing[/] (nothing accepted since its last error)"
    else:
        headline = "Relay: working (issues were accepted after its last error)"
    console.print(headline, highlight=False)
    console.print(
        f"  last error {_when(error.at)}, {error.kind}"
        + (f", {error.deliveries} deliveries" if error.deliveries else "")
        + f"; {error.last_24h} in the last 24 h",
        highlight=False,
    )
    console.print(Padding(Text(error.text, overflow="fold"), (0, 0, 0, 2)))


def _stuck(figures: Status, console: Console) -> None:
    if not figures.stuck:
        return
    stuck = _table(f"Stuck in sending (due over {STUCK_AFTER.seconds // 60} min, none sent since)")
    stuck.title_style = "bold red"
    stuck.add_column("edition", no_wrap=True)
    stuck.add_column("overdue", justify="right")
    stuck.add_column("due since", no_wrap=True)
    stuck.add_column("last sent", no_wrap=True)
    for row in figures.stuck:
        stuck.add_row(
            row.day.isoformat(), str(row.overdue), _when(row.due_since), _when(row.last_sent)
        )
    console.print(stuck)
    console.print(
        "  Is a worker running (`newsletter deliver`, the scheduler)? Is the relay up?",
        highlight=False,
        markup=False,
    )


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


def _entry(console: Console, head: str, detail: str) -> None:
    """One failure in two parts: a line of facts, then the reply, folded at any width."""
    console.print(Padding(Text(head, overflow="fold"), (0, 0, 0, 2)), highlight=False)
    if detail:
        console.print(Padding(Text(detail, overflow="fold"), (0, 0, 0, 4)), highlight=False)


def _failures(figures: Status, console: Console) -> None:
    # A list, not a table: a relay's reply is often longer than the whole screen, and
    # an address can be too, so each gets the full width (``status`` fits 80 columns).
    if not figures.failures:
        console.print("Newest failures: none")
        return
    console.print(Text("Newest failures", style="italic"))
    for failure in figures.failures:
        status = f"{failure.status} {failure.code or ''}".strip()
        tries = f"{failure.attempts} {'try' if failure.attempts == 1 else 'tries'}"
        when = (
            f", next {failure.next_attempt_at.strftime('%m-%d %H:%M')}"
            if failure.next_attempt_at and failure.status == "retry"
            else ""
        )
        _entry(
            console,
            f"{failure.day.isoformat()}  {status}, {tries}{when}  {failure.email}",
            failure.reply,
        )


def _mail_failures(figures: Status, console: Console) -> None:
    if not figures.mail_failures:
        return
    console.print(
        Text(
            f"Account mails not sent ({figures.mail_failures_day} in the last 24 h)",
            style="italic",
        )
    )
    for mail in figures.mail_failures:
        _entry(
            console,
            f"{mail.at.strftime('%m-%d %H:%M')}  {mail.template}  {mail.email}",
            f"{mail.code or ''} {mail.reason}".strip(),
        )
