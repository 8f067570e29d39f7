"""Subscriber import throughput: the batched loader against the old row-by-row path.

    python benchmarks/bench_import.py [--rows 20000,100000] [--old-rows 2000] [--sqlite]

Each import runs ``newsletter.subscribers.roster.import_csv`` in a fresh process (so its
peak RSS, VmHWM, is its own) on a fresh database (PostgreSQL: a private schema, dropped
at the end; ``--sqlite``: a file in a temp dir as well), timed from opening the file
to the commit. The file: synthetic subscribers (1-3 catalogue topics, 0-2 keywords,
1 in 5 weekly), 1 row in 200 bad (an invalid address, an unknown topic, a bad hour),
1 in 500 repeating an earlier address. Measured in one run:

1. the old path (``row_by_row=True``: an ORM upsert and a savepoint per row) and the
   batched path on the same ``--old-rows`` file, so their ratio is a same-run figure;
2. the batched path on each ``--rows`` file into an empty database (all created),
   the same file again (all unchanged) and a file with every other row changed
   (updated: another hour, another topic);
3. validation alone (reading and checking every row, no database), the floor the
   batched path cannot go below.

Besides wall time and rows/s, each line gives rows per CPU-second of the importing
process and its PostgreSQL backend together (both on this machine; the import waits
for the server, so on an idle machine wall time is about their sum): a figure that a
busy shared machine disturbs far less than wall time.

``time_import(url, path)`` is the function to call from another benchmark: it runs one
import in a child process and returns its seconds, peak RSS and summary.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from newsletter.db import make_engine, make_session_factory
from newsletter.errors import NewsletterError
from newsletter.migrations import upgrade
from newsletter.papers.catalogue import load_catalogue, sync_topics

POSTGRES_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
HEADER = ("email", "name", "topics", "keywords", "timezone", "frequency", "weekday", "send_hour")
KEYWORDS = (
    "diffusion models", "retrieval augmented generation", "graph neural networks",
    "program repair", "chain of thought", "robot grasping", "quantum error correction",
    "sparse attention", "federated learning", "protein folding",
)  # fmt: skip
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata")


def write_csv(path: Path, n: int, *, seed: int = 0, changed: bool = False) -> int:
    """N synthetic rows with a sprinkle of bad ones; ``changed``: every other good row
    asks for another hour and one more topic. Returns the number of bad rows."""
    rng = random.Random(seed)
    topics = sorted(load_catalogue())
    bad = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for i in range(n):
            weekly = rng.random() < 0.2
            chosen = rng.sample(topics, rng.randint(1, 3))
            hour = str(rng.randint(5, 9))
            if changed and i % 2:
                hour = "20"
                chosen.append(next(t for t in topics if t not in chosen))
            row = [
                f"reader{i}@example{i % 50}.org",
                f"Reader {i}",
                "; ".join(chosen),
                "; ".join(rng.sample(KEYWORDS, rng.randint(0, 2))),
                rng.choice(ZONES),
                "weekly" if weekly else "daily",
                "friday" if weekly else "",
                hour,
            ]
            if i % 200 == 199:
                row[(0, 2, 7)[i // 200 % 3]] = ("not-an-address", "cs.XX", "25")[i // 200 % 3]
                bad += 1
            elif i % 500 == 499:
                row[0] = f"reader{i - 1}@example{(i - 1) % 50}.org"
                bad += 1
            writer.writerow(row)
    return bad


@contextmanager
def fresh_database(use_sqlite: bool, directory: Path) -> Iterator[str]:
    """A migrated, empty database with the topic catalogue; removed at the end."""
    if use_sqlite:
        path = directory / f"import-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite:///{path}"
        _prepare(url)
        try:
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"bench_import_{uuid.uuid4().hex[:8]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        url = f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        _prepare(url)
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _prepare(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade(engine)
        with make_session_factory(engine).begin() as session:
            sync_topics(session, load_catalogue())
    finally:
        engine.dispose()


@dataclass
class Timing:
    what: str
    rows: int
    seconds: float
    peak_mb: float
    summary: str
    cpu: float  # seconds of CPU, the import's process and its PostgreSQL backend together
    server_cpu: float  # of which its PostgreSQL backend's

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        per_cpu = self.rows / self.cpu if self.cpu > 0 else float("nan")
        return (
            f"  {self.what:<34} {self.rows:>7,} rows {self.seconds:7.2f} s "
            f"{self.rate:7,.0f} rows/s  {per_cpu:7,.0f} rows/CPU-s  "
            f"(server {self.server_cpu / self.cpu:4.0%})  peak {self.peak_mb:4,.0f} MB  "
            f"{self.summary}"
        )


def time_import(url: str, path: Path, *, mode: str = "batched") -> dict[str, Any]:
    """One import of ``path`` into ``url`` in a child process (``mode``: batched,
    row-by-row, or validate: read and check only); its seconds, peak MB,
    summary and CPU seconds (client_cpu, and server_cpu: its PostgreSQL backend's)."""
    command = [sys.executable, __file__, "--child", mode, url, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"import failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(mode: str, url: str, path: Path) -> None:
    from newsletter.subscribers.roster import import_csv, row_input

    catalogue = load_catalogue()
    server_pid = 0
    server_cpu = 0.0
    start = time.perf_counter()
    client_cpu = time.process_time()
    if mode == "validate":
        good = 0
        with path.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                with contextlib.suppress(NewsletterError):  # counting, not reporting
                    row_input(catalogue, raw)
                    good += 1
        summary = f"{good} valid"
    else:
        engine = make_engine(url)
        with make_session_factory(engine).begin() as session:
            if engine.dialect.name == "postgresql":  # the server on this machine: its CPU too
                server_pid = int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
                server_cpu = _cpu_seconds(server_pid)
            result = import_csv(session, path, catalogue, row_by_row=mode == "row-by-row")
        summary = str(result)
        if server_pid:
            server_cpu = _cpu_seconds(server_pid) - server_cpu
        engine.dispose()
    seconds = time.perf_counter() - start
    client_cpu = time.process_time() - client_cpu
    peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak,
                "summary": summary,
                "client_cpu": client_cpu,
                "server_cpu": server_cpu,
            }
        )
    )


def run(what: str, url: str, path: Path, rows: int, *, mode: str = "batched") -> Timing:
    found = time_import(url, path, mode=mode)
    cpu = float(found["client_cpu"]) + float(found["server_cpu"])
    timing = Timing(
        what, rows, float(found["seconds"]), float(found["peak_mb"]), str(found["summary"]), cpu,
        float(found["server_cpu"]),
    )  # fmt: skip
    print(timing.line(), flush=True)
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="20000,100000", help="file sizes, comma-separated")
    parser.add_argument("--old-rows", type=int, default=2000, help="size for the old path")
    parser.add_argument("--sqlite", action="store_true", help="SQLite as well")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], Path(args.child[2]))
        return
    sizes = [int(n) for n in args.rows.split(",") if n]
    backends = [False, True] if args.sqlite else [False]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        old = directory / "old.csv"
        write_csv(old, args.old_rows)
        for use_sqlite in backends:
            print("SQLite" if use_sqlite else "PostgreSQL", flush=True)
            with fresh_database(use_sqlite, directory) as url:
                before = run("row by row (old)", url, old, args.old_rows, mode="row-by-row")
            with fresh_database(use_sqlite, directory) as url:
                after = run("batched (new)", url, old, args.old_rows)
            ratio = before.seconds / after.seconds
            print(f"  same file, same run: batched is {ratio:.1f}x the row-by-row speed")
            for n in sizes:
                path, changed = directory / f"{n}.csv", directory / f"{n}-changed.csv"
                write_csv(path, n)
                write_csv(changed, n, changed=True)
                with fresh_database(use_sqlite, directory) as url:
                    run("batched, empty database", url, path, n)
                    run("batched, same file again", url, path, n)
                    run("batched, every other row changed", url, changed, n)
                if not use_sqlite:
                    run("validation alone (no database)", "", path, n, mode="validate")


if __name__ == "__main__":
    main()
