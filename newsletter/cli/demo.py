"""``newsletter demo``: one whole personalised edition, end to end, with nothing to set up.

A fresh SQLite database in DIR, migrated; five real days of arXiv listings; a few
subscribers with different interests; an edition planned and sent through a local
SMTP server that writes every message into the Maildir DIR/maildir.

Each step says what it does before it starts (embedding the papers, with the semantic
extra, takes a minute or more) and draws progress bars on a terminal. The demo's
settings, with a secret key of its own, are written to DIR/demo.toml, so
``newsletter --config DIR/demo.toml serve`` serves the pages its mails link to.
"""

from __future__ import annotations

import json
import mailbox
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import NotRequired, TypedDict

from sqlalchemy import func, select

from newsletter.mail.capture import MaildirServer
from newsletter.migrations import upgrade
from newsletter.models import Paper
from newsletter.progress import ProgressHook
from newsletter.resources import demo_feed_dir
from newsletter.service import Service
from newsletter.settings import load_settings
from newsletter.subscribers.roster import build_input, upsert_subscriber


class DemoSubscriber(TypedDict):
    email: str
    name: str
    topics: list[str]
    keywords: NotRequired[list[str]]
    frequency: NotRequired[str]
    timezone: NotRequired[str]


# Different people, different interests: the issues they get should differ too.
DEMO_SUBSCRIBERS: tuple[DemoSubscriber, ...] = (
    {
        "email": "ada@example.org",
        "name": "Ada Lovelace",
        "topics": ["cs.CL"],
        "keywords": ["large language models", "reasoning"],
    },
    {
        "email": "grace@example.org",
        "name": "Grace Hopper",
        "topics": ["cs.CV"],
        "keywords": ["diffusion", "video generation"],
    },
    {"email": "alan@example.org", "name": "Alan Turing", "topics": ["cs.RO"]},
    {
        "email": "radia@example.org",
        "name": "Radia Perlman",
        "topics": ["cs.CR"],
        "keywords": ["privacy"],
    },
    {
        "email": "barbara@example.org",
        "name": "Barbara Liskov",
        "topics": ["cs.SE"],
        "keywords": ["program repair", "code generation"],
    },
    {
        "email": "claude@example.org",
        "name": "Claude Shannon",
        "topics": ["cs.IT", "stat.ML"],
        "frequency": "weekly",
    },
    {
        "email": "juergen@example.org",
        "name": "Jürgen Müller",
        "topics": ["cs.LG"],
        "keywords": ["reinforcement learning"],
        "timezone": "Europe/Berlin",
    },
)

_DEMO_FILES = (
    "newsletter.db",
    "newsletter.db-wal",
    "newsletter.db-shm",
    "preview.html",
    "demo.toml",
)
DEMO_URL = "http://127.0.0.1:8000"  # where `newsletter serve` listens by default


@dataclass(frozen=True)
class DemoResult:
    maildir: Path
    preview: Path
    messages: int
    config: Path  # the demo's settings: `newsletter --config THIS serve`


def _write_config(directory: Path) -> Path:
    """The demo's settings as a TOML file, with a fresh secret key (never the placeholder,
    which ``serve`` refuses): the same database, links and model as the demo's run."""
    path = directory / "demo.toml"
    values = {
        "database_url": f"sqlite:///{directory / 'newsletter.db'}",
        "secret_key": secrets.token_urlsafe(48),
        "public_url": DEMO_URL,
        "model_dir": str(directory / "models"),
    }
    lines = [
        "# Written by `newsletter demo`: its settings, so that",
        f"# `newsletter --config {path} serve` opens the links in its mails.",
        *(f"{key} = {json.dumps(value)}" for key, value in values.items()),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _every(seconds: float, echo: Callable[[str], None], what: str) -> ProgressHook:
    """A progress hook that says how far it is at most every ``seconds``: without a
    terminal there are no bars, and a long step would otherwise say nothing."""
    done, last = [0], [time.perf_counter()]

    def hook(advance: int, total: int | None) -> None:
        done[0] += advance
        now = time.perf_counter()
        if now - last[0] >= seconds and total:
            last[0] = now
            echo(f"      {what}: {done[0]:,} of {total:,}")

    return hook


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it (shorter to type)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _reset(directory: Path) -> None:
    """Remove what an earlier demo left in DIR (only the files the demo makes)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in _DEMO_FILES:
        (directory / name).unlink(missing_ok=True)
    shutil.rmtree(directory / "maildir", ignore_errors=True)
    shutil.rmtree(directory / "models", ignore_errors=True)


def _html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else ""


def run_demo(directory: Path, *, echo: Callable[[str], None] = print) -> DemoResult:
    """Run the demo in ``directory`` and report what happened through ``echo`` (a line
    before each step; progress bars on stderr when it is a terminal)."""
    from newsletter.cli.progress import progress_bars, wanted

    started = time.perf_counter()
    directory = directory.resolve()
    _reset(directory)
    config = _write_config(directory)
    maildir = directory / "maildir"
    feed = sorted(demo_feed_dir().glob("*.jsonl.gz"))
    with MaildirServer(maildir) as server, progress_bars(enabled=wanted()) as bar:
        settings = load_settings(
            config,
            overrides={
                "database_url": f"sqlite:///{directory / 'newsletter.db'}",
                "smtp_host": server.host,
                "smtp_port": server.port,
                "smtp_tls": "none",
                "smtp_username": None,
                "smtp_password": None,
                "public_url": DEMO_URL,
                "model_dir": directory / "models",
            },
        )
        service = Service.open(settings, check_schema=False)
        try:
            echo(f"[1/5] database {_shown(directory / 'newsletter.db')}: migrating")
            upgrade(service.engine)
            service.sync_topics()
            embedding = (
                ", embedding each paper (the semantic extra: a minute or more)"
                if service.semantic
                else ""
            )
            echo(f"[2/5] ingesting {len(feed)} days of real arXiv listings{embedding}")
            today = datetime.now(UTC).date()
            for path in feed:
                summary = service.ingest(
                    path,
                    today=today,
                    progress=bar(f"ingest {path.name}"),
                    embed_progress=(
                        (bar(f"embed {path.name}") or _every(10.0, echo, "papers embedded"))
                        if embedding
                        else None
                    ),
                )
                echo(f"      {path.name}: {summary}")
            with service.sessions.begin() as session:
                for raw in DEMO_SUBSCRIBERS:
                    upsert_subscriber(session, build_input(service.catalogue, **raw))
            echo(f"[3/5] subscribers: {len(DEMO_SUBSCRIBERS)} added")
            with service.sessions() as session:
                edition = session.scalar(select(func.max(Paper.listed_on)))
            if edition is None:
                raise RuntimeError("the demo feed is empty")
            echo(f"[4/5] planning the edition of {edition}: ranking every paper for each reader")
            plan = service.plan(edition, progress=bar("plan"))
            echo(f"      {plan}")
            echo(f"[5/5] sending through a local SMTP server ({server.host}:{server.port})")
            sent = service.send(edition, progress=bar("send"))
            echo(f"      send: {sent} (SMTP {server.host}:{server.port})")
        finally:
            service.close()
        received = server.received
    box = mailbox.Maildir(maildir, create=False)
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(box.get_bytes(key)) for key in sorted(box.keys())]
    preview = directory / "preview.html"
    whose = ""
    if messages:
        first = min(messages, key=lambda m: str(m["To"]))
        preview.write_text(_html_part(first), encoding="utf-8")
        whose = f" of {first['To']}'s issue"
    echo("")
    width = max(len(str(e)) for e, _, _ in plan.top_picks) if plan.top_picks else 10
    echo(f"{'subscriber':<{width}}  {'score':>5}  top paper")
    for email, title, score in sorted(plan.top_picks):
        shown = title if len(title) <= 70 else title[:69] + "…"
        echo(f"{email:<{width}}  {score:5.3f}  {shown}")
    echo("")
    echo(f"{received} messages delivered to the Maildir {_shown(maildir)} (new/)")
    echo(f"HTML preview{whose}: {_shown(preview)}")
    echo("")
    echo("The links in these mails (read online, more/less like this, preferences,")
    echo(f"unsubscribe) point to {DEMO_URL}. To make them work, serve the")
    echo("pages with the demo's settings and leave it running:")
    echo(f"  newsletter --config {_shown(config)} serve")
    echo("The admin area (figures, subscribers, preview) is then at /admin, after")
    echo(f"  newsletter --config {_shown(config)} admin create-user YOUR-NAME")
    echo("")
    echo(f"done in {time.perf_counter() - started:.1f} s; the SMTP server is stopped.")
    return DemoResult(maildir=maildir, preview=preview, messages=received, config=config)
