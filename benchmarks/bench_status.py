"""What operators look at, timed against a big outbox: ``newsletter status``, a /metrics
scrape and the admin dashboard, at N subscribers with D daily editions sent.

    python benchmarks/bench_status.py [--subscribers 1000000] [--days 7] [--schema NAME]

Builds a PostgreSQL schema as an operator's database looks after D days: N subscribers
imported from a CSV and one edition planned by the real ``newsletter`` commands (as
``bench_edition.py`` does), that edition marked sent within the last hour, and D - 1
earlier editions of the same deliveries, one a day (their items left out: no view
reads them). Then each view's queries run three times on a warm cache, the best kept.

``--schema NAME`` keeps the schema and reuses it next time (building 1M x 7 days takes
about five minutes); run ``newsletter db upgrade`` against it after a migration. The
sends are dated when the schema is built: reused a day later, the last 24 hours hold
none of them (the script prints how many they hold), so build it again. Run the
same script with ``PYTHONPATH`` at an older checkout to time that checkout's queries on
the same data (before and after, back to back).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_edition import DAILY, DAYS, EDITION, POSTGRES_URL, SECRET, write_subscribers_csv

import newsletter
from newsletter import status as stats
from newsletter.db import make_engine, make_session_factory
from newsletter.models import utcnow
from newsletter.web.admin import stats as admin
from newsletter.web.observability import DatabaseCollector, send_latency


def schema_url(schema: str) -> str:
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def build(schema: str, subscribers: int, days: int) -> None:
    """The schema, as described above (the commands from this Python's ``newsletter``)."""
    url = schema_url(schema)
    env = dict(
        os.environ,
        NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_SECRET_KEY=SECRET,
        NEWSLETTER_SEMANTIC="false",
        NEWSLETTER_PUBLIC_URL="https://papers.example.org",
    )
    cli = str(Path(sys.executable).with_name("newsletter"))
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        env["NEWSLETTER_MODEL_DIR"] = str(Path(tmp) / "model")
        people = Path(tmp) / "subscribers.csv"
        write_subscribers_csv(people, subscribers)
        listings = [str(p) for day in DAYS for p in DAILY.glob(f"{day}.jsonl*")]
        for command in (
            ["db", "upgrade"],
            ["ingest", *listings],
            ["subscribers", "import", str(people)],
            ["plan", "--edition", EDITION, "--workers", "2"],
        ):
            started = time.perf_counter()
            subprocess.run([cli, *command], env=env, check=True, capture_output=True)
            print(f"  {command[0]}: {time.perf_counter() - started:.1f} s", flush=True)
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE deliveries SET status = 'sent', attempts = 1, last_smtp_code = 250,"
                    " last_smtp_reply = 'ok', due_at = now() - interval '1 hour',"
                    " sent_at = now() - random() * interval '50 minutes',"
                    " message_id = '<issue-' || id || '@example.org>'"
                )
            )
            connection.execute(text("UPDATE editions SET status = 'sent'"))
            first = connection.execute(text("SELECT id FROM editions")).scalar_one()
        for back in range(1, days):
            with engine.begin() as connection:
                edition = connection.execute(
                    text(
                        "INSERT INTO editions (date, status, created_at) VALUES"
                        " (CAST(:day AS date) - :back, 'sent', now() - :back * interval '1 day')"
                        " RETURNING id"
                    ),
                    {"day": EDITION, "back": back},
                ).scalar_one()
                connection.execute(
                    text(
                        "INSERT INTO deliveries (edition_id, subscriber_id, status, attempts,"
                        " due_at, message_id, last_smtp_code, last_smtp_reply, created_at,"
                        " sent_at) SELECT :edition, subscriber_id, status, attempts,"
                        " due_at - :back * interval '1 day', message_id || '-' || :back,"
                        " last_smtp_code, last_smtp_reply, created_at - :back * interval '1 day',"
                        " sent_at - :back * interval '1 day' FROM deliveries"
                        " WHERE edition_id = :first"
                    ),
                    {"edition": edition, "back": back, "first": first},
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            # This schema's tables only (search_path), not every schema of the database.
            connection.execute(text("VACUUM ANALYZE deliveries, editions, subscribers, interests"))
    finally:
        engine.dispose()


def on_server(statement: str, **params: object) -> object:
    """Run one statement in the server's own database (not a schema's), in a transaction
    of its own; its first row, if it returns rows."""
    engine = make_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(statement), params)
            return result.first() if result.returns_rows else None
    finally:
        engine.dispose()


def exists(schema: str) -> bool:
    found = "SELECT 1 FROM information_schema.tables WHERE table_schema = :s"
    return on_server(found, s=schema) is not None


def drop(schema: str) -> None:
    on_server(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def time_views(url: str) -> list[tuple[str, float]]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = utcnow()

    def dashboard(session: Any) -> None:
        admin.deliveries_by_status(session)
        admin.subscribers_by_status(session)
        admin.deliveries_per_day(session)
        admin.subscribers_over_time(session, today=now.date())
        admin.top_topics(session)
        admin.editions(session, limit=1)
        admin.problems(session, now=now)

    views: dict[str, Callable[[Any], object]] = {
        "newsletter status (all its queries)": lambda s: stats.status(s, now=now),
        "  deliveries by status": stats.deliveries_by_status,
        "  queue (due, claimed, sent today)": lambda s: stats.queue(s, now=now),
        "  the newest five editions' counts": lambda s: stats.editions(s, limit=5),
        "  activity (last ingest, plan, send)": stats.activity,
        "/metrics scrape (all its queries)": lambda s: list(DatabaseCollector(sessions).collect()),
        "  send latency, last 24 hours": lambda s: send_latency(s, now=now),
        "admin dashboard (all its queries)": dashboard,
        "  confirmed subscribers per day": lambda s: admin.subscribers_over_time(
            s, today=now.date()
        ),
        "  top topics": admin.top_topics,
        "admin editions page": lambda s: (admin.editions(s), admin.recent_failures(s)),
    }
    timings = []
    try:
        for name, view in views.items():
            best = float("inf")
            for _ in range(3):
                with sessions() as session:
                    started = time.perf_counter()
                    view(session)
                    best = min(best, time.perf_counter() - started)
            timings.append((name, best))
    finally:
        engine.dispose()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7, help="editions sent, one a day")
    parser.add_argument("--schema", help="keep the schema under this name and reuse it")
    args = parser.parse_args()
    schema = args.schema or f"bench_status_{os.getpid()}"
    try:
        if not (args.schema and exists(schema)):
            drop(schema)
            on_server(f'CREATE SCHEMA "{schema}"')
            print(f"building {schema}: {args.subscribers:,} subscribers, {args.days} editions")
            try:
                build(schema, args.subscribers, args.days)
            except BaseException:
                drop(schema)  # never reused half built
                raise
        url = schema_url(schema)
        engine = make_engine(url)
        with engine.connect() as connection:
            deliveries = connection.execute(text("SELECT count(*) FROM deliveries")).scalar_one()
            recent = connection.execute(
                text("SELECT count(*) FROM deliveries WHERE sent_at >= now() - interval '1 day'")
            ).scalar_one()
            size = connection.execute(
                text("SELECT pg_total_relation_size('deliveries')")
            ).scalar_one()
        engine.dispose()
        code = Path(newsletter.__file__).resolve().parents[1]
        print(f"code: {code}; {deliveries:,} deliveries, the table {size / 2**30:.1f} GB")
        print(f"sent in the last 24 hours: {recent:,}")
        print("| view | best of 3 |\n|---|---|")
        for name, seconds in time_views(url):
            print(f"| {name} | {seconds * 1000:,.0f} ms |")
    finally:
        if not args.schema:
            drop(schema)


if __name__ == "__main__":
    main()
