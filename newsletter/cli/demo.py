"""``newsletter demo``: one whole personalised edition, end to end, with nothing to set up.

A fresh SQLite database in DIR, migrated; five real days of arXiv listings; a few
subscribers with different interests; an edition planned and sent through a local
SMTP server that writes every message into the Maildir DIR/maildir.
"""

from __future__ import annotations

import mailbox
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
from newsletter.resources import demo_feed_dir
from newsletter.service import Service
from newsletter.settings import DEMO_SECRET, load_settings
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

_DEMO_FILES = ("newsletter.db", "newsletter.db-wal", "newsletter.db-shm", "preview.html")


@dataclass(frozen=True)
class DemoResult:
    maildir: Path
    preview: Path
    messages: int


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
    """Run the demo in ``directory`` and report what happened through ``echo``."""
    started = time.perf_counter()
    directory = directory.resolve()
    _reset(directory)
    maildir = directory / "maildir"
    with MaildirServer(maildir) as server:
        settings = load_settings(
            overrides={
                "database_url": f"sqlite:///{directory / 'newsletter.db'}",
                "smtp_host": server.host,
                "smtp_port": server.port,
                "smtp_tls": "none",
                "smtp_username": None,
                "smtp_password": None,
                "secret_key": DEMO_SECRET,
                "model_dir": directory / "models",
            },
            allow_placeholder_secret=True,
        )
        service = Service.open(settings, check_schema=False)
        try:
            upgrade(service.engine)
            service.sync_topics()
            echo(f"database: {directory / 'newsletter.db'} (migrated)")
            today = datetime.now(UTC).date()
            for path in sorted(demo_feed_dir().glob("*.jsonl.gz")):
                echo(f"ingest {path.name}: {service.ingest(path, today=today)}")
            with service.sessions.begin() as session:
                for raw in DEMO_SUBSCRIBERS:
                    upsert_subscriber(session, build_input(service.catalogue, **raw))
            echo(f"subscribers: {len(DEMO_SUBSCRIBERS)} added")
            with service.sessions() as session:
                edition = session.scalar(select(func.max(Paper.listed_on)))
            if edition is None:
                raise RuntimeError("the demo feed is empty")
            plan = service.plan(edition)
            echo(f"plan: {plan}")
            sent = service.send(edition)
            echo(f"send: {sent} (SMTP {server.host}:{server.port})")
        finally:
            service.close()
        received = server.received
    box = mailbox.Maildir(maildir, create=False)
    parser = BytesParser(policy=policy.default)
    messages = [parser.parsebytes(box.get_bytes(key)) for key in sorted(box.keys())]
    preview = directory / "preview.html"
    if messages:
        first = min(messages, key=lambda m: str(m["To"]))
        preview.write_text(_html_part(first), encoding="utf-8")
    echo("")
    width = max(len(str(e)) for e, _, _ in plan.top_picks) if plan.top_picks else 10
    echo(f"{'subscriber':<{width}}  {'score':>5}  top paper")
    for email, title, score in sorted(plan.top_picks):
        shown = title if len(title) <= 70 else title[:69] + "…"
        echo(f"{email:<{width}}  {score:5.3f}  {shown}")
    echo("")
    echo(f"{received} messages delivered to the Maildir {maildir} (new/)")
    echo(f"HTML preview of one issue: {preview}")
    echo(f"done in {time.perf_counter() - started:.1f} s; the SMTP server is stopped.")
    return DemoResult(maildir=maildir, preview=preview, messages=received)
