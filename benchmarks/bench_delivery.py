"""Delivery engine throughput: end to end against the machine's ceiling and the raw client.

    python benchmarks/bench_delivery.py [--deliveries 100000] [--workers 1,2] [--markdown [PATH]]

Needs Postfix's C test tools ``smtp-sink`` and ``smtp-source`` (Debian/Ubuntu:
``sudo apt-get install postfix``; then ``sudo postfix stop`` if you do not want the
mail server itself running). This script installs nothing; without ``smtp-sink`` it
falls back to an aiosmtpd sink (Python, much slower: a much lower ceiling) and says so,
and without ``smtp-source`` it skips the ceiling.

Measured in one run, into one sink (started here on a free port, counting messages):

1. ceiling: ``smtp-source -s 8 -d`` (C load generator, 8 reused sessions) sending a
   real issue (~50 KB) N times;
2. raw client: aiosmtplib alone, 8 reused connections, the same prebuilt message;
3. end to end with the project's engine (``newsletter.delivery.run.deliver``: claim,
   load, render, MIME, SMTP, mark sent) on SQLite (a file in a temp dir) and on
   PostgreSQL (a private schema, dropped at the end), ``--deliveries`` pending
   10-paper issues each, with ``--workers`` processes on PostgreSQL; each run in a
   fresh process so its peak RSS (VmHWM) is its own; once more with a fifth of the pending
   deliveries to show that memory does not grow with the queue;
4. stage costs per message, timing the engine's stage functions directly on
   ``--sample`` deliveries in this process: claim+load, render, MIME, SMTP, record.

The deliveries are written fast with SQLAlchemy Core executemany (not the planner):
the real arXiv listings of ../shared/data/arxiv-daily are ingested, then synthetic
subscribers (one or two interests each) get one delivery each of ten real papers
from the last week's listings, with descending scores and a few matched terms.
Every figure is also given as a ratio against the baselines of the same run, since
absolute rates drift on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
from sqlalchemy import Engine, func, insert, select, text, update

from newsletter.db import make_engine, make_session_factory
from newsletter.migrations import upgrade
from newsletter.models import (
    Bounce,
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Frequency,
    Interest,
    Paper,
    SendRate,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.papers.catalogue import load_catalogue, sync_topics
from newsletter.papers.ingest import ingest_file
from newsletter.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
DAILY = REPO.parent / "shared" / "data" / "arxiv-daily"
SECRET = "benchmark-secret-0123456789-abcdefghijklmnop"
POSTGRES_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INSTALL_HINT = "sudo apt-get install postfix  (then: sudo postfix stop)"
SENDER = "newsletter@example.org"
CHUNK = 20_000  # rows per executemany


# --------------------------------------------------------------------------- sink


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postfix_tool(name: str) -> str | None:
    """Postfix's test programs live in /usr/sbin, often not on a user's PATH."""
    found = shutil.which(name)
    if found:
        return found
    path = Path("/usr/sbin") / name
    return str(path) if path.exists() else None


# An aiosmtpd server that counts messages and prints "mesg=N" like smtp-sink -c does.
_AIOSMTPD_SINK = """
import asyncio, sys
from aiosmtpd.smtp import SMTP

class Counter:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Counter.n += 1
        sys.stdout.write(f"mesg={Counter.n}\\r")
        sys.stdout.flush()
        return "250 2.0.0 Ok"

async def main(port):
    loop = asyncio.get_running_loop()
    handler = Counter()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=0, enable_SMTPUTF8=True), "127.0.0.1", port
    )
    async with server:
        await server.serve_forever()

asyncio.run(main(int(sys.argv[1])))
"""

_COUNTER = re.compile(rb"mesg=(\d+)")


class Sink:
    """A server that discards mail in its own process and counts what it accepted."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log_path = directory / "sink.out"
        smtp_sink = postfix_tool("smtp-sink")
        if smtp_sink:
            # -c: running counters on stdout; 256: listen backlog; -u: required as root.
            command = [smtp_sink, "-c"]
            if os.geteuid() == 0:
                command += ["-u", "nobody"]
            command += [f"127.0.0.1:{self.port}", "256"]
            self.name = "Postfix smtp-sink (C)"
        else:
            command = [sys.executable, "-c", _AIOSMTPD_SINK, str(self.port)]
            self.name = "aiosmtpd sink (Python; smtp-sink not installed)"
        self.kind = "smtp-sink" if smtp_sink else "aiosmtpd"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise SystemExit(f"the sink did not start: {self.log_path.read_text(errors='replace')}")

    def count(self) -> int:
        """Messages accepted so far (the last counter the sink printed)."""
        with self.log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 4096))
            found = _COUNTER.findall(log.read())
        return int(found[-1]) if found else 0

    def settled_count(self, expected: int, timeout: float = 5.0) -> int:
        """The count once it reaches ``expected`` or stops moving (output may lag)."""
        deadline = time.monotonic() + timeout
        last = self.count()
        while last < expected and time.monotonic() < deadline:
            time.sleep(0.05)
            last = self.count()
        return last

    def cpu_seconds(self) -> float:
        """CPU time the sink process has used (from /proc), or NaN."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# --------------------------------------------------------------------------- baselines


@dataclass
class Rate:
    messages: int
    seconds: float
    counted: int  # messages the sink counted for this step
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else float("nan")


def bench_ceiling(sink: Sink, message: bytes, n: int, sessions: int, directory: Path) -> Rate | str:
    """``smtp-source -s 8 -d -m N -F message`` into the sink."""
    smtp_source = postfix_tool("smtp-source")
    if smtp_source is None:
        return f"smtp-source not installed ({INSTALL_HINT})"
    # smtp-source sends the file line by line and appends CRLF itself.
    path = directory / "message.eml"
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    before = sink.count()
    command = [
        smtp_source,
        "-s",
        str(sessions),
        "-d",
        "-m",
        str(n),
        "-F",
        str(path),
        "-f",
        SENDER,
        "-t",
        "reader@example.org",
        f"127.0.0.1:{sink.port}",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        return f"smtp-source failed: {done.stderr.strip()[:200]}"
    counted = sink.settled_count(before + n) - before
    return Rate(n, elapsed, counted)


async def _raw_client(port: int, message: bytes, n: int, connections: int) -> float:
    clients = [
        aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) for _ in range(connections)
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    numbers = iter(range(n))

    async def pump(client: aiosmtplib.SMTP) -> None:
        for i in numbers:
            await client.sendmail(SENDER, [f"reader{i}@example.org"], message)

    start = time.perf_counter()
    await asyncio.gather(*(pump(client) for client in clients))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(client.quit() for client in clients))
    return elapsed


async def _engine_client(port: int, message: bytes, n: int, connections: int) -> float:
    from newsletter.delivery.smtp import SmtpConfig, SmtpPool

    config = SmtpConfig(
        host="127.0.0.1",
        port=port,
        tls="none",
        username=None,
        password=None,
        timeout=60,
        connections=connections,
    )
    numbers = iter(range(n))
    async with SmtpPool(config) as pool:

        async def pump() -> None:
            for i in numbers:
                result = await pool.send(
                    sender=SENDER, recipients=[f"reader{i}@example.org"], message=message, crlf=True
                )
                if result.status != "sent":
                    raise SystemExit(f"engine client: {result}")

        start = time.perf_counter()
        await asyncio.gather(*(pump() for _ in range(connections)))
        return time.perf_counter() - start


def bench_engine_client(sink: Sink, message: bytes, n: int, connections: int) -> Rate:
    """The engine's own SMTP client (SmtpPool: aiosmtplib opens the sessions, the
    transactions are pipelined) alone, ``connections`` sessions, one prebuilt message."""
    before = sink.count()
    elapsed = asyncio.run(_engine_client(sink.port, message, n, connections))
    counted = sink.settled_count(before + n) - before
    return Rate(n, elapsed, counted)


def bench_raw_client(sink: Sink, message: bytes, n: int, connections: int) -> Rate:
    """aiosmtplib alone: ``connections`` reused sessions, one prebuilt message N times."""
    before = sink.count()
    elapsed = asyncio.run(_raw_client(sink.port, message, n, connections))
    counted = sink.settled_count(before + n) - before
    return Rate(n, elapsed, counted)


# --------------------------------------------------------------------------- databases


@dataclass
class Database:
    name: str  # "SQLite" | "PostgreSQL"
    url: str
    engine: Engine
    edition: date = date(2026, 5, 29)
    n_deliveries: int = 0
    setup_seconds: float = 0.0
    papers: int = 0


@contextmanager
def sqlite_database(directory: Path) -> Iterator[Database]:
    url = f"sqlite:///{directory / 'bench.db'}"
    engine = make_engine(url)
    try:
        yield Database("SQLite", url, engine)
    finally:
        engine.dispose()


@contextmanager
def postgres_database(base_url: str) -> Iterator[Database]:
    """A private schema (as tests/conftest.py makes), dropped at the end."""
    schema = f"nl_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options=-csearch_path%3D{schema}"
    engine = None
    try:
        engine = make_engine(url)
        yield Database("PostgreSQL", url, engine)
    finally:
        if engine is not None:
            engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _vacuum(db: Database) -> None:
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as connection:
            connection.execute(text("ANALYZE"))


def _fix_sequences(db: Database) -> None:
    """Explicit ids were inserted; move PostgreSQL's sequences past them."""
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.begin() as connection:
        for table in ("subscribers", "interests", "editions", "deliveries"):  # fixed names
            sql = f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: E501, S608
            connection.execute(text(sql))


def populate(db: Database, n: int, seed: int = 0) -> None:
    """Migrate, ingest the real listings, then write ``n`` pending 10-paper deliveries."""
    import numpy as np  # here, so that the worker processes' RSS does not include it

    start = time.perf_counter()
    upgrade(db.engine)
    sessions = make_session_factory(db.engine)
    catalogue = load_catalogue()
    files = sorted(DAILY.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no listings in {DAILY}")
    with sessions.begin() as session:
        sync_topics(session, catalogue)
    for path in files:
        with sessions.begin() as session:
            ingest_file(session, path, today=date.fromisoformat(path.stem))
    rng = np.random.default_rng(seed)
    with db.engine.connect() as connection:
        latest = connection.scalar(select(func.max(Paper.listed_on)))
        db.edition = latest
        week = connection.execute(
            select(Paper.id, Paper.title)
            .where(Paper.listed_on > latest - timedelta(days=7))
            .order_by(Paper.id)
        ).all()
        db.papers = connection.scalar(select(func.count(Paper.id))) or 0
    paper_ids = np.array([row.id for row in week])
    vocabulary = sorted({w for row in week for w in re.findall(r"[a-z]{6,}", row.title.lower())})
    topics = sorted(catalogue)
    now = datetime.now(UTC)
    with db.engine.begin() as connection:
        edition_id = connection.execute(
            insert(Edition).values(
                id=1, date=db.edition, status=EditionStatus.PLANNED, created_at=now
            )
        ).inserted_primary_key[0]
    interest_id = 0
    for first in range(1, n + 1, CHUNK):
        ids = range(first, min(first + CHUNK, n + 1))
        subscribers = [
            {
                "id": i,
                "email": f"reader{i}@example.org",
                "name": f"Reader {i}",
                "status": SubscriberStatus.ACTIVE,
                "timezone": "UTC",
                "send_hour": 7,
                "frequency": Frequency.DAILY,
                "max_papers": None,
                "always_send": False,
                "token_version": 1,
                "created_at": now,
                "confirmed_at": now,
            }
            for i in ids
        ]
        interests = []
        n_interests = rng.integers(1, 3, size=len(ids))
        picks = rng.integers(0, len(topics), size=(len(ids), 2))
        keyworded = rng.random(len(ids)) < 0.3
        for row, i in enumerate(ids):
            for k in range(int(n_interests[row])):
                interest_id += 1
                as_keywords = k == 1 and keyworded[row]
                interests.append(
                    {
                        "id": interest_id,
                        "subscriber_id": i,
                        "weight": 1.0,
                        "topic_id": None if as_keywords else topics[picks[row, k]],
                        "keywords": (
                            " ".join(rng.choice(vocabulary, size=2)) if as_keywords else None
                        ),
                    }
                )
        deliveries = [
            {
                "id": i,
                "edition_id": edition_id,
                "subscriber_id": i,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "created_at": now,
            }
            for i in ids
        ]
        # Ten distinct papers per delivery: a random start plus increasing offsets.
        offsets = np.cumsum(rng.integers(1, 30, size=(len(ids), 10)), axis=1)
        chosen = paper_ids[
            (rng.integers(0, len(paper_ids), size=(len(ids), 1)) + offsets) % len(paper_ids)
        ]
        scores = -np.sort(-rng.uniform(0.05, 0.6, size=(len(ids), 10)), axis=1)
        n_terms = rng.integers(1, 4, size=(len(ids), 10))
        term_picks = rng.integers(0, len(vocabulary), size=(len(ids), 10, 3))
        items = [
            {
                "delivery_id": i,
                "rank": r + 1,
                "paper_id": int(chosen[row, r]),
                "score": round(float(scores[row, r]), 4),
                "terms": [vocabulary[t] for t in term_picks[row, r, : n_terms[row, r]]],
            }
            for row, i in enumerate(ids)
            for r in range(10)
        ]
        with db.engine.begin() as connection:
            connection.execute(insert(Subscriber), subscribers)
            connection.execute(insert(Interest), interests)
            connection.execute(insert(Delivery), deliveries)
            for at in range(0, len(items), CHUNK):
                connection.execute(insert(DeliveryItem), items[at : at + CHUNK])
        del subscribers, interests, deliveries, items
    _fix_sequences(db)
    _vacuum(db)
    db.n_deliveries = n
    db.setup_seconds = time.perf_counter() - start


_RESET_TO_NONE = (
    "next_attempt_at",
    "lease_owner",
    "lease_until",
    "message_id",
    "last_smtp_code",
    "last_smtp_reply",
    "sent_at",
)


def reset(db: Database, pending: int) -> None:
    """Make exactly the first ``pending`` deliveries pending again, the rest already sent."""
    columns = Delivery.__table__.c
    cleared: dict[str, Any] = {name: None for name in _RESET_TO_NONE if name in columns}
    with db.engine.begin() as connection:
        connection.execute(
            update(Delivery)
            .where(Delivery.id <= pending)
            .values(status=DeliveryStatus.PENDING, attempts=0, **cleared)
        )
        connection.execute(
            update(Delivery)
            .where(Delivery.id > pending)
            .values(status=DeliveryStatus.SENT, attempts=1, **cleared)
        )
        connection.execute(update(Edition).values(status=EditionStatus.PLANNED))
        for model in (Bounce, Suppression, SendRate):
            connection.execute(model.__table__.delete())
        connection.execute(update(Subscriber).values(status=SubscriberStatus.ACTIVE))
    _vacuum(db)


def counts_by_status(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status)
        ).all()
    return {str(status.value if hasattr(status, "value") else status): n for status, n in rows}


def bench_settings(db: Database, port: int, *, connections: int, batch: int) -> Settings:
    return load_settings(
        overrides={
            "database_url": db.url,
            "secret_key": SECRET,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_tls": "none",
            "smtp_connections": connections,
            "send_batch_size": batch,
            "sender": f"Paper Newsletter <{SENDER}>",
            "public_url": "https://papers.example.org",
        }
    )


# --------------------------------------------------------------------------- end to end


@dataclass
class EndToEnd:
    database: str
    workers: int
    pending: int
    seconds: float
    summary: dict[str, int]
    counted: int
    rss_self_mb: float
    rss_children_mb: float
    statuses: dict[str, int] = field(default_factory=dict)
    done_seconds: float | None = None  # from the call until nothing was left open
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.summary.get("sent", 0) / self.seconds if self.seconds > 0 else float("nan")

    @property
    def worker_rss_mb(self) -> float:
        """The largest worker: the process itself with one worker, else its largest child."""
        return self.rss_self_mb if self.workers == 1 else self.rss_children_mb


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a live process (VmHWM), in MB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class _Watch:
    """In the child: notes when the last delivery is marked sent (nothing open is left)
    and samples the peak RSS of the worker processes while they live."""

    def __init__(self, url: str, start: float, result_path: Path) -> None:
        self.engine = make_engine(url)
        self.start = start
        self.result_path = result_path
        self.done_seconds: float | None = None
        self.children_peak_mb = 0.0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self) -> bool:
        open_states = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.RETRY)
        with self.engine.connect() as connection:
            return (
                connection.scalar(
                    select(Delivery.id).where(Delivery.status.in_(open_states)).limit(1)
                )
                is not None
            )

    def _run(self) -> None:
        while not self.stop:
            for pid in _descendants(os.getpid()):
                self.children_peak_mb = max(self.children_peak_mb, _vm_hwm_mb(pid))
            if self.done_seconds is None and not self._open():
                self.done_seconds = time.perf_counter() - self.start
                # Written now, in case deliver() does not return (see run_end_to_end).
                self.result_path.write_text(json.dumps(self.figures(None, None)))
            time.sleep(0.1)

    def figures(self, summary: Any, seconds: float | None) -> dict[str, Any]:
        # VmHWM, not getrusage(): Linux carries ru_maxrss across fork + exec, so a
        # process started by this 200+ MB benchmark would report at least that much.
        return {
            "seconds": seconds,
            "done_seconds": self.done_seconds,
            "summary": None
            if summary is None
            else {
                name: int(getattr(summary, name, 0) or 0)
                for name in ("sent", "retried", "bounced", "failed", "suppressed")
            },
            "rss_self_mb": _vm_hwm_mb(os.getpid()),
            "rss_children_mb": self.children_peak_mb,
        }

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.engine.dispose()


def _child_deliver(arguments: dict[str, Any], result_path: Path) -> None:
    """Run in a fresh process: one ``deliver(...)`` call, timed, with its peak RSS."""
    from newsletter.delivery.run import deliver

    settings = load_settings(overrides=arguments["settings"])
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    gc.collect()
    start = time.perf_counter()
    watch = _Watch(settings.database_url, start, result_path)
    summary = deliver(
        sessions,
        settings=settings,
        edition=None,
        workers=arguments["workers"],
        concurrency=arguments["concurrency"],
        wait=False,
    )
    elapsed = time.perf_counter() - start
    watch.close()
    engine.dispose()
    result_path.write_text(json.dumps(watch.figures(summary, elapsed)))


def run_end_to_end(
    db: Database,
    sink: Sink,
    *,
    pending: int,
    workers: int,
    concurrency: int,
    batch: int,
    directory: Path,
    grace: float = 15.0,
) -> EndToEnd:
    """One ``deliver()`` call in a fresh process.

    The rate is sent messages over the time of the call. Should the call not return
    within ``grace`` seconds after the last delivery was marked sent, the process is
    killed and the rate is taken up to that last mark instead (said in the report).
    """
    reset(db, pending)
    settings = bench_settings(db, sink.port, connections=concurrency, batch=batch)
    arguments = {
        "settings": {
            key: (value.get_secret_value() if hasattr(value, "get_secret_value") else value)
            for key, value in settings.model_dump(
                include={
                    "database_url",
                    "secret_key",
                    "smtp_host",
                    "smtp_port",
                    "smtp_tls",
                    "smtp_connections",
                    "send_batch_size",
                    "public_url",
                }
            ).items()
        }
        | {"sender": settings.sender},
        "workers": workers,
        "concurrency": concurrency,
    }
    result_path = directory / f"result-{uuid.uuid4().hex[:8]}.json"
    before = sink.count()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(arguments), str(result_path)],
        start_new_session=True,  # so a hung run can be ended with all its workers
    )
    note = ""
    done_at: float | None = None
    while child.poll() is None:
        time.sleep(0.2)
        if done_at is None and result_path.exists():
            done_at = time.monotonic()
        if done_at is not None and time.monotonic() - done_at > grace:
            os.killpg(child.pid, 9)
            child.wait()
            note = (
                f"deliver() did not return within {grace:.0f} s after the last delivery was "
                "marked sent; killed; rate up to the last mark"
            )
            break
    if not result_path.exists() or (child.returncode != 0 and not note):
        raise SystemExit(f"deliver() failed on {db.name} (exit {child.returncode})")
    result = json.loads(result_path.read_text())
    statuses = counts_by_status(db)
    if result["summary"] is None:  # killed: count from the database
        sent_now = statuses.get("sent", 0) - (db.n_deliveries - pending)
        result["summary"] = {"sent": sent_now}
        result["seconds"] = result["done_seconds"]
    sent = result["summary"]["sent"]
    counted = sink.settled_count(before + sent) - before
    return EndToEnd(
        database=db.name,
        workers=workers,
        pending=pending,
        seconds=result["seconds"],
        summary=result["summary"],
        counted=counted,
        rss_self_mb=result["rss_self_mb"],
        rss_children_mb=result["rss_children_mb"],
        statuses=statuses,
        done_seconds=result["done_seconds"],
        note=note,
    )


# --------------------------------------------------------------------------- stages


@dataclass
class Stages:
    """Seconds per message of each stage, measured on a sample in this process."""

    sample: int
    per_message: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    message: bytes | None = None
    mean_bytes: float = 0.0
    compose: float = 0.0  # Composer.compose() per message: render + MIME in one call
    smtp_regex: float | None = None  # aiosmtplib's own pass over the message bytes
    notes: list[str] = field(default_factory=list)
    profile: list[str] = field(default_factory=list)  # cProfile breakdown, when asked


# Where a function's own time goes, by the file it lives in (first match wins).
AREAS = (
    (
        "render: view, why, tokens",
        (
            "mail/view.py",
            "mail/readers.py",
            "explanations.py",
            "tokens.py",
            "itsdangerous",
            "hmac.py",
            "i18n.py",
            "babel",
            "latex.py",
            "json",
        ),
    ),
    (
        "render: skeletons, Jinja, cards",
        (
            "jinja2",
            "markupsafe",
            "mail/render.py",
            "mail/cards.py",
            "mail/skeleton.py",
            "mail/markers.py",
            "<template>",
            "dataclasses.py",
        ),
    ),
    (
        "MIME: headers, encodings, DKIM",
        (
            "mail/message.py",
            "binascii",
            "numpy",
            "dkim",
            "email/",
            "mail/addresses.py",
            "mail/verp.py",
        ),
    ),
    (
        "SMTP client + event loop",
        ("delivery/smtp", "aiosmtplib", "asyncio", "selectors.py", "socket", "ssl.py"),
    ),
    (
        "claim, load, record (SQLAlchemy, driver)",
        (
            "sqlalchemy",
            "psycopg",
            "sqlite3",
            "delivery/outbox.py",
            "delivery/compose.py",
            "delivery/outcomes.py",
            "models.py",
        ),
    ),
)


def profile_breakdown(stats: Any, messages: int, top: int = 18) -> list[str]:
    """cProfile's own times grouped by area, then the costliest functions, per message."""
    per = 1e6 / max(messages, 1)
    areas: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        where = f"{filename}:{name}"
        area = next(
            (label for label, needles in AREAS if any(n in where for n in needles)), "other"
        )
        areas[area] = areas.get(area, 0.0) + own
        rows.append((own, f"{Path(filename).name}:{line}({name})", area))
    total = sum(areas.values())
    lines = [f"cProfile of the stage run, own time per message ({messages:,} messages):"]
    for area, own in sorted(areas.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {own * per:8.1f} µs  {own / total:5.1%}  {area}")
    lines.append(f"  {total * per:8.1f} µs  total (profiled; cProfile adds overhead)")
    lines.append("costliest functions (own time per message):")
    for own, where, area in sorted(rows, reverse=True)[:top]:
        lines.append(f"  {own * per:8.1f} µs  {where}  [{area}]")
    return lines


# "render" is the view and the issue (filled into skeletons, or Jinja for the first issues
# of each shape and paper); since the skeletons also encode both MIME bodies, part of
# what was "MIME assembly" is counted in it.
STAGES = ("claim+load", "render", "MIME assembly", "SMTP send", "record (mark sent)")


def _engine_api() -> tuple[dict[str, Any], list[str]]:
    """The engine's stage functions, by name; and what could not be imported."""
    found: dict[str, Any] = {}
    missing: list[str] = []
    wanted = {
        "newsletter.delivery.outbox": ("claim_batch",),
        "newsletter.delivery.compose": ("Composer",),
        "newsletter.delivery.outcomes": ("record", "DeliverySummary"),
        "newsletter.mail.render": ("Renderer",),
        "newsletter.delivery.smtp": ("SmtpPool", "smtp_config"),
        "newsletter.tokens": ("Tokens",),
    }
    for module_name, names in wanted.items():
        try:
            module = __import__(module_name, fromlist=list(names))
        except ImportError as exc:
            missing += [f"{module_name}.{n} ({exc})" for n in names]
            continue
        for name in names:
            if hasattr(module, name):
                found[name] = getattr(module, name)
            else:
                missing.append(f"{module_name}.{name}")
    return found, missing


def bench_stages(
    db: Database,
    sink: Sink,
    *,
    sample: int,
    batch: int,
    connections: int,
    profile: bool = False,
) -> Stages:
    """Each stage of the engine timed on its own, batch by batch, on ``sample`` deliveries.

    The steps are those of ``Worker._claim`` and ``Composer.compose``, called one by
    one: claim a batch and load it (one transaction), ``Composer.render`` (view and
    templates), ``Composer.assemble`` (Message-ID, bytes, envelope), send them over the
    engine's pool with ``connections`` sessions (wall time per message, the sends
    overlapping as in a worker), and record the outcomes (one transaction).
    """
    stages = Stages(sample=sample)
    api, stages.missing = _engine_api()
    if stages.missing:
        return stages
    reset(db, sample)
    settings = bench_settings(db, sink.port, connections=connections, batch=batch)
    sessions = make_session_factory(db.engine)
    renderer = api["Renderer"](settings.templates_dir)
    renderer.check()  # compile the templates before timing, as deliver() does
    tokens = api["Tokens"](settings.secret_key.get_secret_value())
    composer = api["Composer"](settings, renderer, tokens)
    summary = api["DeliverySummary"]()
    totals = dict.fromkeys(STAGES, 0.0)
    sizes: list[int] = []
    owner = "bench-stages"
    lease = timedelta(minutes=10)
    compose_total = [0.0]

    async def send_all(pool: Any, outgoing: list[Any]) -> list[tuple[Any, Any]]:
        queue = iter(outgoing)
        outcomes: list[tuple[Any, Any]] = []

        async def pump() -> None:
            for message in queue:
                result = await pool.send(
                    sender=message.envelope_from or settings.sender_address,
                    recipients=[message.recipient],
                    message=message.message,
                    crlf=True,  # as the worker sends composed messages
                )
                outcomes.append((message, result))

        await asyncio.gather(*(pump() for _ in range(connections)))
        return outcomes

    async def main() -> None:
        async with api["SmtpPool"](api["smtp_config"](settings, connections)) as pool:
            while True:
                start = time.perf_counter()
                with sessions.begin() as session:
                    ids = api["claim_batch"](
                        session,
                        edition_id=None,
                        owner=owner,
                        now=datetime.now(UTC),
                        lease=lease,
                        limit=batch,
                    )
                    jobs, _blocked = composer.load(session, ids) if ids else ([], [])
                totals["claim+load"] += time.perf_counter() - start
                if not ids:
                    return
                now = datetime.now(UTC)
                outgoing = []
                for job in jobs:
                    start = time.perf_counter()
                    view, rendered = composer.render(job)
                    middle = time.perf_counter()
                    message = composer.assemble(job, view, rendered, now=now)
                    end = time.perf_counter()
                    totals["render"] += middle - start
                    totals["MIME assembly"] += end - middle
                    outgoing.append(message)
                    sizes.append(len(message.message))
                    # Cross-check: the engine's own compose() of the same job (both stages).
                    start = time.perf_counter()
                    composer.compose(job, now=now)
                    compose_total[0] += time.perf_counter() - start
                if stages.message is None and outgoing:
                    stages.message = outgoing[0].message
                start = time.perf_counter()
                outcomes = await send_all(pool, outgoing)
                totals["SMTP send"] += time.perf_counter() - start
                start = time.perf_counter()
                with sessions.begin() as session:
                    api["record"](
                        session,
                        outcomes,
                        owner=owner,
                        now=datetime.now(UTC),
                        settings=settings,
                        summary=summary,
                    )
                totals["record (mark sent)"] += time.perf_counter() - start

    before = sink.count()
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(main())
        profiler.disable()
        stages.profile = profile_breakdown(pstats.Stats(profiler), summary.sent)
    else:
        asyncio.run(main())
    counted = sink.settled_count(before + summary.sent) - before
    if summary.sent != sample or counted != sample:
        stages.notes.append(
            f"stage sample on {db.name}: {summary.sent} recorded sent, sink counted {counted}, "
            f"expected {sample}"
        )
    stages.per_message = {name: seconds / max(summary.sent, 1) for name, seconds in totals.items()}
    stages.compose = compose_total[0] / max(len(sizes), 1)
    if stages.message is not None:
        stages.smtp_regex = aiosmtplib_data_cost(stages.message)
    stages.mean_bytes = sum(sizes) / len(sizes) if sizes else 0.0
    return stages


def aiosmtplib_data_cost(message: bytes, repeat: int = 200) -> float | None:
    """Seconds per message of what the engine's SMTP client does to every message
    before DATA (leading dots doubled, the final dot; a composed message is known to
    have CRLF line ends only, so they are not normalised): ``smtp_session.wire_data``."""
    try:
        from newsletter.delivery.smtp_session import wire_data
    except ImportError:
        return None
    start = time.perf_counter()
    for _ in range(repeat):
        wire_data(message, crlf=True)
    return (time.perf_counter() - start) / repeat


def synthetic_message(size: int = 50_000) -> bytes:
    """A stand-in ~50 KB multipart message when the engine cannot build a real one."""
    lines = [
        f"From: Paper Newsletter <{SENDER}>",
        "To: Reader <reader@example.org>",
        "Subject: 10 new papers for you",
        "Message-ID: <synthetic@example.org>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/alternative; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; charset=utf-8",
        "",
    ]
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. "
    while sum(len(line) + 2 for line in lines) < size - 40:
        lines.append(body.strip())
    lines += ["--b--", ""]
    return "\r\n".join(lines).encode()


# --------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=100_000, help="pending deliveries")
    parser.add_argument("--workers", default="1,2", help="worker processes on PostgreSQL")
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP connections per worker")
    parser.add_argument("--batch", type=int, default=500, help="send_batch_size")
    parser.add_argument("--sample", type=int, default=3000, help="deliveries for stage costs")
    parser.add_argument(
        "--baseline-messages",
        type=int,
        default=0,
        help="messages for the ceiling and raw client (default: --deliveries, at most 20,000)",
    )
    parser.add_argument(
        "--flat-check",
        type=int,
        default=None,
        help="smaller pending count for the RSS comparison (default: a fifth)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the stage sample under cProfile and print where the time goes",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument(
        "--markdown",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write the figures as Markdown (to PATH, or stdout)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_deliver(json.loads(args.child[0]), Path(args.child[1]))
        return
    run(args)


@dataclass
class Report:
    deliveries: int
    sink: str
    message_bytes: int
    message_source: str
    ceiling: list[Rate | str] = field(default_factory=list)
    raw: list[Rate] = field(default_factory=list)
    engine_client: list[Rate] = field(default_factory=list)
    small: list[Rate | str] = field(default_factory=list)  # ceiling, raw with a 1 KB message
    runs: list[EndToEnd] = field(default_factory=list)
    stages: dict[str, Stages] = field(default_factory=dict)
    setup: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def mean_rate(self, rates: list[Any]) -> float:
        values = [r.per_second for r in rates if isinstance(r, Rate)]
        return sum(values) / len(values) if values else float("nan")


def run(args: argparse.Namespace) -> None:
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    flat = args.flat_check if args.flat_check is not None else max(args.deliveries // 5, 1)
    baseline_n = args.baseline_messages or min(args.deliveries, 20_000)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        sink = Sink(directory)
        stack.callback(sink.close)
        print(f"sink: {sink.name} on 127.0.0.1:{sink.port}", flush=True)
        if sink.kind != "smtp-sink":
            print(f"note: install Postfix for the C sink and load generator: {INSTALL_HINT}")
        databases: list[Database] = []
        if not args.skip_sqlite:
            databases.append(stack.enter_context(sqlite_database(directory)))
        if not args.skip_postgres:
            try:
                databases.append(stack.enter_context(postgres_database(args.postgres_url)))
            except Exception as exc:  # no server: say so, measure the rest
                print(f"PostgreSQL skipped: {exc}")
        for db in databases:
            print(f"{db.name}: writing {args.deliveries:,} pending deliveries ...", flush=True)
            populate(db, args.deliveries)
            print(f"  {db.setup_seconds:.1f} s ({db.papers:,} papers ingested)", flush=True)

        stages: dict[str, Stages] = {}
        for db in databases:
            print(f"{db.name}: stage costs on {args.sample:,} deliveries ...", flush=True)
            stages[db.name] = bench_stages(
                db,
                sink,
                sample=min(args.sample, args.deliveries),
                batch=args.batch,
                connections=args.concurrency,
            )
            if args.profile:
                print(f"{db.name}: the same under cProfile ...", flush=True)
                profiled = bench_stages(
                    db,
                    sink,
                    sample=min(args.sample, args.deliveries),
                    batch=args.batch,
                    connections=args.concurrency,
                    profile=True,
                )
                stages[db.name].profile = profiled.profile
        message = next((s.message for s in stages.values() if s.message), None)
        report = Report(
            deliveries=args.deliveries,
            sink=sink.name,
            message_bytes=len(message) if message else 0,
            message_source="a real issue built by the engine" if message else "synthetic",
            stages=stages,
            setup={db.name: db.setup_seconds for db in databases},
        )
        if message is None:
            message = synthetic_message()
            report.message_bytes = len(message)
            report.notes.append(
                "the engine's stage functions were not importable: the "
                "baselines send a synthetic message of the same size"
            )
        for stage in stages.values():
            report.notes += stage.notes

        def baselines(when: str) -> None:
            print(f"baselines ({when}): {baseline_n:,} messages each ...", flush=True)
            report.ceiling.append(bench_ceiling(sink, message, baseline_n, 8, directory))
            report.raw.append(bench_raw_client(sink, message, baseline_n, 8))
            report.engine_client.append(bench_engine_client(sink, message, baseline_n, 8))

        baselines("before")
        small = synthetic_message(1_000)
        report.small.append(bench_ceiling(sink, small, baseline_n, 8, directory))
        report.small.append(bench_raw_client(sink, small, baseline_n, 8))
        for db in databases:
            plan = [1] if db.engine.dialect.name == "sqlite" else workers
            for n_workers in plan:
                print(
                    f"{db.name}: deliver() with {n_workers} worker(s), "
                    f"{args.deliveries:,} pending ...",
                    flush=True,
                )
                report.runs.append(
                    run_end_to_end(
                        db,
                        sink,
                        pending=args.deliveries,
                        workers=n_workers,
                        concurrency=args.concurrency,
                        batch=args.batch,
                        directory=directory,
                    )
                )
                print(f"  {report.runs[-1].per_second:,.0f} msg/s", flush=True)
            if db.engine.dialect.name == "postgresql" and flat != args.deliveries:
                print(
                    f"{db.name}: deliver() with 1 worker, {flat:,} pending (RSS check) ...",
                    flush=True,
                )
                report.runs.append(
                    run_end_to_end(
                        db,
                        sink,
                        pending=flat,
                        workers=1,
                        concurrency=args.concurrency,
                        batch=args.batch,
                        directory=directory,
                    )
                )
        baselines("after")
        text_report, markdown = render_report(report, args)
        print()
        print(text_report)
        if args.markdown == "-":
            print()
            print(markdown)
        elif args.markdown:
            Path(args.markdown).write_text(markdown + "\n")
            print(f"\nMarkdown written to {args.markdown}")


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def render_report(report: Report, args: argparse.Namespace) -> tuple[str, str]:
    """The plain-text tables and the same figures as Markdown."""
    ceiling = report.mean_rate(report.ceiling)
    raw = report.mean_rate(report.raw)
    size = f"{report.message_bytes / 1024:.0f} KB"

    def ratio(value: float, base: float) -> str:
        return f"{value / base:.2f}" if base == base and base > 0 else "-"

    def both(rates: list[Any]) -> str:
        parts = [f"{r.per_second:,.0f}" if isinstance(r, Rate) else str(r) for r in rates]
        return " / ".join(parts)

    def counted(rates: list[Any]) -> str:
        return " / ".join(f"{r.counted:,}" for r in rates if isinstance(r, Rate))

    # Rows: step, rate, / ceiling, / raw client, worker peak RSS, check.
    rows: list[tuple[str, ...]] = [
        (
            "ceiling: `smtp-source -s 8 -d` (C), same message, before / after",
            f"{both(report.ceiling)} msg/s",
            "1",
            ratio(ceiling, raw),
            "",
            f"{counted(report.ceiling)} counted",
        ),
        (
            "raw client: aiosmtplib alone, 8 reused connections, before / after",
            f"{both(report.raw)} msg/s",
            ratio(raw, ceiling),
            "1",
            "",
            f"{counted(report.raw)} counted",
        ),
    ]
    if report.engine_client:
        client = report.mean_rate(report.engine_client)
        rows.append(
            (
                "engine's SMTP client alone (SmtpPool, pipelined), 8 sessions, before / after",
                f"{both(report.engine_client)} msg/s",
                ratio(client, ceiling),
                ratio(client, raw),
                "",
                f"{counted(report.engine_client)} counted",
            )
        )
    if report.small:
        rows.append(
            (
                "for reference, 1 KB message: ceiling / raw client",
                f"{both(report.small)} msg/s",
                "",
                "",
                "",
                f"{counted(report.small)} counted",
            )
        )
    for r in report.runs:
        sent = r.summary.get("sent", 0)
        rows.append(
            (
                f"end to end: {r.database}, {r.workers} worker{'s' if r.workers > 1 else ''}, "
                f"{r.pending:,} pending",
                f"{r.per_second:,.0f} msg/s ({r.seconds:.1f} s)",
                ratio(r.per_second, ceiling),
                ratio(r.per_second, raw),
                _mb(r.worker_rss_mb)
                + (f" each (parent {_mb(r.rss_self_mb)})" if r.workers > 1 else ""),
                f"{sent:,} sent, {r.counted:,} counted"
                + ("" if sent == r.pending else " (NOT ALL SENT)")
                + (" *" if r.note else ""),
            )
        )
        if r.note:
            report.notes.append(
                f"* {r.database}, {r.workers} worker(s), {r.pending:,} pending: {r.note}"
            )

    names = list(report.stages)
    stage_rows: list[tuple[str, ...]] = []
    measured = [n for n in names if report.stages[n].per_message]
    for stage in STAGES:
        cells = []
        for name in measured:
            per = report.stages[name].per_message
            cost, total = per[stage], sum(per.values())
            cells.append(f"{cost * 1e6:,.0f} µs ({cost / total:.0%})")
        stage_rows.append((stage, *cells))
        if stage == "SMTP send":
            stage_rows.append(
                (
                    "  of which preparing DATA (dot-stuffing, final dot)",
                    *[
                        f"{report.stages[n].smtp_regex * 1e6:,.0f} µs"
                        if report.stages[n].smtp_regex
                        else "-"
                        for n in measured
                    ],
                )
            )
    if measured:
        totals = [sum(report.stages[n].per_message.values()) for n in measured]
        stage_rows.append(
            ("sum = one core's rate", *[f"{t * 1e6:,.0f} µs = {1 / t:,.0f} msg/s" for t in totals])
        )
        stage_rows.append(
            (
                "check: `Composer.compose` (render + MIME)",
                *[f"{report.stages[n].compose * 1e6:,.0f} µs" for n in measured],
            )
        )
    slowest = {
        n: max(report.stages[n].per_message, key=report.stages[n].per_message.__getitem__)
        for n in measured
    }
    missing = sorted({m for st in report.stages.values() for m in st.missing})
    intro = (
        f"{report.deliveries:,} pending 10-paper deliveries; messages {size} "
        f"({report.message_source}); sink: {report.sink}; {args.concurrency} SMTP "
        f"connections per worker; batches of {args.batch}. Ratios use the mean of the "
        f"baselines measured before and after the end-to-end runs."
    )
    stage_intro = (
        f"Stage costs per message: the engine's stage functions called one by one in one "
        f"process on {min(args.sample, report.deliveries):,} deliveries (SMTP: wall time with "
        f"{args.concurrency} overlapping sends through the engine's pool)."
    )

    # --- plain text
    heads = ("step", "rate", "/ ceiling", "/ raw", "worker peak RSS", "check")
    table = [heads, *[tuple(c.replace("`", "") for c in row) for row in rows]]
    widths = [max(len(row[i]) for row in table) + 2 for i in range(len(heads))]
    lines = [intro, ""]
    lines += ["".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    if measured:
        stable = [("stage", *measured), *[tuple(c.replace("`", "") for c in r) for r in stage_rows]]
        swidths = [max(len(row[i]) for row in stable) + 2 for i in range(len(stable[0]))]
        lines += ["", stage_intro, ""]
        lines += ["".join(c.ljust(w) for c, w in zip(row, swidths, strict=True)) for row in stable]
        lines += [f"slowest stage on {n}: {stage}" for n, stage in slowest.items()]
    if missing:
        lines.append("stage costs not measured, not importable: " + ", ".join(missing))
    lines += [
        f"setup {n}: {sec:.0f} s to ingest and write the deliveries"
        for n, sec in report.setup.items()
    ]
    lines += [f"note: {n}" for n in report.notes]
    for db_name, measured_stages in report.stages.items():
        if measured_stages.profile:
            profile = measured_stages.profile
            lines += ["", f"{db_name}: " + profile[0], *profile[1:]]

    # --- Markdown
    md = [intro, "", "| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    if measured:
        md += [
            "",
            stage_intro,
            "",
            "| stage | " + " | ".join(measured) + " |",
            "|---" * (len(measured) + 1) + "|",
        ]
        md += [
            "| " + " | ".join(row).replace("  of which", "of which") + " |" for row in stage_rows
        ]
    if missing:
        md += ["", "Stage costs not measured, not importable: " + ", ".join(missing)]
    md += ["", *[f"{n}  " for n in report.notes]] if report.notes else []
    for db_name, measured_stages in report.stages.items():
        if measured_stages.profile:
            profile = measured_stages.profile
            md += ["", f"{db_name}: {profile[0]}", "", "```", *profile[1:], "```"]
    return "\n".join(lines), "\n".join(md).rstrip()


if __name__ == "__main__":
    main()
