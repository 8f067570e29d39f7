"""A whole edition at scale, run as an operator runs it: import, plan, deliver.

    python benchmarks/bench_edition.py --subscribers 20000 [--workers 2] [--concurrency 8]
    python benchmarks/bench_edition.py --subscribers 1000000 --workers 2 --overlap

Each step is the real ``newsletter`` command in a process of its own, against a fresh
PostgreSQL schema (or ``--sqlite``), with the peak resident memory of its whole process
tree sampled from /proc:

1. ``newsletter subscribers import`` of an N-row CSV of synthetic subscribers (1-3
   catalogue topics, 0-2 keywords, daily or weekly): rows/s. This also seeds the
   subscribers the next steps use.
2. ``newsletter plan --edition 2026-05-29 [--workers W]`` over seven days of real arXiv
   listings (2026-05-23..29, ~2,300 candidate papers): subscribers/s.
3. ``newsletter deliver --workers W --concurrency C`` into Postfix's ``smtp-sink``: msg/s,
   with the ceilings measured in the same run into the same sink: the raw aiosmtplib
   client sending one prebuilt message of the same size over C*W connections, and
   Postfix's ``smtp-source`` (C code) likewise.

With ``--overlap`` the plan and delivery run at the same time (delivery workers start
as soon as the plan's first batch is committed), as the daily edition runs: the figure
is first plan batch to last message.

Ratios, not absolute times, are what to compare across machines (they drift); the
figures in benchmarks/README.md were taken on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_delivery import (
    Sink,
    _descendants,
    _vm_hwm_mb,
    bench_ceiling,
    bench_raw_client,
    postfix_tool,
)

from newsletter.db import make_engine
from newsletter.papers.catalogue import load_catalogue

REPO = Path(__file__).resolve().parents[1]
DAILY = REPO.parent / "shared" / "data" / "arxiv-daily"
DAYS = [f"2026-05-{day:02d}" for day in range(23, 30) if day != 24]
EDITION = "2026-05-29"
SECRET = "benchmark-secret-0123456789-abcdefghijklmnop"
SENDER = "papers@example.org"
POSTGRES_URL = os.environ.get(
    "NEWSLETTER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Phrases researchers type as keywords (taken from the listings' own vocabulary).
KEYWORDS = (
    "diffusion", "reinforcement learning", "graph neural network", "retrieval-augmented generation",
    "transformer", "large language model", "contrastive learning", "federated learning",
    "quantum error correction", "robotics", "image segmentation", "speech recognition",
    "causal inference", "optimal transport", "bayesian optimisation", "protein structure",
    "knowledge distillation", "mixture of experts", "in-context learning", "adversarial robustness",
    "time series", "point cloud", "neural radiance fields", "code generation",
)  # fmt: skip
CSV_HEADER = (
    "email",
    "name",
    "topics",
    "keywords",
    "timezone",
    "frequency",
    "weekday",
    "send_hour",
)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Asia/Kolkata")


# --------------------------------------------------------------------------- processes


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class TreeMemory:
    """Samples a process tree: the largest single process's peak (VmHWM), the peak of
    the tree's summed resident memory (what the machine must hold at once), and the CPU
    time of the tree and of the PostgreSQL backends its connections were tagged for
    (``application_name`` = ``backends``): on a shared machine, CPU per unit is the
    figure other work does not inflate much, where wall time is."""

    def __init__(self, pid: int, *, backends: str | None = None, url: str | None = None) -> None:
        self.pid = pid
        self.peak_process_mb = 0.0
        self.peak_total_mb = 0.0
        self._cpu: dict[int, float] = {}  # last seen, per process of the tree
        self._backend_cpu: dict[int, float] = {}
        self._monitor = None
        if backends is not None and url is not None and url.startswith("postgresql"):
            import psycopg

            plain = url.replace("postgresql+psycopg://", "postgresql://").split("?")[0]
            self._monitor = psycopg.connect(plain, autocommit=True)
        self._backends = backends
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    @property
    def backend_cpu_seconds(self) -> float:
        return sum(self._backend_cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.2)
        self._sample()

    def _sample(self) -> None:
        pids = [self.pid, *_descendants(self.pid)]
        total = 0
        for pid in pids:
            self.peak_process_mb = max(self.peak_process_mb, _vm_hwm_mb(pid))
            total += _status_kb(pid, "VmRSS:")
            seconds = _cpu_seconds(pid)
            if seconds is not None:
                self._cpu[pid] = seconds
        self.peak_total_mb = max(self.peak_total_mb, total / 1024)
        if self._monitor is not None:
            query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
            for (backend,) in self._monitor.execute(query, (self._backends,)).fetchall():
                seconds = _cpu_seconds(backend)  # the server runs on this machine
                if seconds is not None:
                    self._backend_cpu[backend] = seconds

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._monitor is not None:
            self._monitor.close()


@dataclass
class Step:
    name: str
    seconds: float
    units: int
    unit: str
    peak_process_mb: float
    peak_total_mb: float
    returncode: int
    output: str = ""
    cpu_seconds: float = 0.0  # the step's process tree
    backend_cpu_seconds: float = 0.0  # its PostgreSQL backends

    @property
    def cpu_ms_per_unit(self) -> float:
        return (self.cpu_seconds + self.backend_cpu_seconds) * 1000 / max(self.units, 1)

    @property
    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else float("nan")


def run_step(name: str, command: list[str], env: dict[str, str], *, unit: str, units: int) -> Step:
    print(f"  {name}: {' '.join(command[1:])}", flush=True)
    tag = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    env = env | {"PGAPPNAME": tag}  # libpq names the step's connections after it
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    memory = TreeMemory(process.pid, backends=tag, url=env.get("NEWSLETTER_DATABASE_URL"))
    output, _ = process.communicate()
    elapsed = time.perf_counter() - start
    memory.stop()
    step = Step(
        name, elapsed, units, unit, memory.peak_process_mb, memory.peak_total_mb,
        process.returncode, output[-2000:], memory.cpu_seconds, memory.backend_cpu_seconds,
    )  # fmt: skip
    print(
        f"    {elapsed:8.1f} s  {step.rate:10,.0f} {unit}/s  peak {step.peak_total_mb:,.0f} MB"
        f" (largest process {step.peak_process_mb:,.0f} MB)  exit {process.returncode}\n"
        f"    CPU {step.cpu_seconds:,.1f} s + PostgreSQL backends"
        f" {step.backend_cpu_seconds:,.1f} s = {step.cpu_ms_per_unit:.3f} ms per {unit}"
        f" (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    shown = output[-1500:] if process.returncode != 0 else "\n".join(output.splitlines()[-4:])
    if shown.strip():
        print("    " + shown.replace("\n", "\n    "), flush=True)
    return step


# --------------------------------------------------------------------------- data


def write_subscribers_csv(path: Path, n: int, seed: int = 0) -> None:
    """N synthetic subscribers: 1-3 catalogue topics, 0-2 keywords, 1 in 5 weekly."""
    rng = random.Random(seed)
    topics = sorted(load_catalogue())
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_HEADER)
        for i in range(n):
            weekly = rng.random() < 0.2
            writer.writerow(
                (
                    f"reader{i}@example.org",
                    f"Reader {i}",
                    "; ".join(rng.sample(topics, rng.randint(1, 3))),
                    "; ".join(rng.sample(KEYWORDS, rng.randint(0, 2))),
                    rng.choice(ZONES),
                    "weekly" if weekly else "daily",
                    "friday" if weekly else "",
                    str(rng.randint(5, 9)),
                )
            )


@contextmanager
def database(use_sqlite: bool, directory: Path) -> Iterator[str]:
    if use_sqlite:
        yield f"sqlite:///{directory / 'edition.db'}"
        return
    schema = f"bench_edition_{uuid.uuid4().hex[:8]}"
    admin = make_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM deliveries GROUP BY status")
            ).all()
            subscribers = connection.scalar(text("SELECT count(*) FROM subscribers"))
            items = connection.scalar(text("SELECT count(*) FROM delivery_items"))
    finally:
        engine.dispose()
    found = {str(status): int(number) for status, number in rows}
    found["subscribers"] = int(subscribers or 0)
    found["items"] = int(items or 0)
    return found


def sample_message(env: dict[str, str], cli: str) -> bytes:
    """A message the size and shape of this edition's issues, for the ceilings: the HTML
    of a real issue (``newsletter preview`` of the command being timed, whose templates
    set the size) with a text part, as MIME."""
    from email.message import EmailMessage

    done = subprocess.run(
        [cli, "preview",
         "--as", "reader1@example.org", "--edition", EDITION],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    html = done.stdout if done.returncode == 0 and done.stdout else "<p>paper</p>" * 3000
    message = EmailMessage()
    message["From"] = f"Paper Newsletter <{SENDER}>"
    message["To"] = "reader@example.org"
    message["Subject"] = "Your papers"
    message.set_content("A paper newsletter issue.\n" * 200)
    message.add_alternative(html, subtype="html")
    return message.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2, help="plan and deliver processes")
    parser.add_argument("--concurrency", type=int, default=8, help="SMTP connections per worker")
    parser.add_argument("--batch", type=int, default=1000, help="send_batch_size")
    parser.add_argument("--ceiling-messages", type=int, default=20_000)
    parser.add_argument("--overlap", action="store_true", help="plan and deliver at once")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--skip-deliver", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--cli",
        type=Path,
        help="the newsletter command to time (default: the one beside this Python); "
        "a wrapper running an older checkout measures before and after in one session",
    )
    args = parser.parse_args()

    if postfix_tool("smtp-sink") is None:
        print("note: Postfix's smtp-sink is not installed (apt install postfix); using aiosmtpd")
    cli = str(args.cli or Path(sys.executable).with_name("newsletter"))
    n = args.subscribers
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="bench-edition-") as tmp:
        directory = Path(tmp)
        sink = Sink(directory)
        try:
            with database(args.sqlite, directory) as url:
                env = dict(os.environ)
                env.update(
                    NEWSLETTER_DATABASE_URL=url,
                    NEWSLETTER_SECRET_KEY=SECRET,
                    NEWSLETTER_SMTP_HOST="127.0.0.1",
                    NEWSLETTER_SMTP_PORT=str(sink.port),
                    NEWSLETTER_SMTP_TLS="none",
                    NEWSLETTER_SMTP_CONNECTIONS=str(args.concurrency),
                    NEWSLETTER_SEND_BATCH_SIZE=str(args.batch),
                    NEWSLETTER_FROM=f"Paper Newsletter <{SENDER}>",
                    NEWSLETTER_PUBLIC_URL="https://papers.example.org",
                    NEWSLETTER_SEMANTIC="false",
                    NEWSLETTER_MODEL_DIR=str(directory / "model"),
                )
                print(f"database: {'SQLite' if args.sqlite else 'PostgreSQL'}; sink: {sink.name}")
                subprocess.run([cli, "db", "upgrade"], env=env, check=True, capture_output=True)
                listings = [str(p) for day in DAYS for p in DAILY.glob(f"{day}.jsonl*")]
                subprocess.run([cli, "ingest", *listings], env=env, check=True, capture_output=True)
                people = directory / "subscribers.csv"
                write_subscribers_csv(people, n)
                print(f"{n:,} subscribers, {len(listings)} listing days, edition {EDITION}")

                steps.append(
                    run_step("import", [cli, "subscribers", "import", str(people)], env,
                             unit="rows", units=n)
                )  # fmt: skip
                plan = [cli, "plan", "--edition", EDITION, "--workers", str(args.workers)]
                deliver = [
                    cli, "deliver", "--edition", EDITION, "--workers", str(args.workers),
                    "--concurrency", str(args.concurrency), "--quiet",
                ]  # fmt: skip
                if args.overlap and not args.skip_deliver:
                    steps.extend(run_overlap(plan, deliver, env, url, n, directory))
                else:
                    steps.append(run_step("plan", plan, env, unit="subscribers", units=n))
                    planned = counts(url)
                    print(f"    planned: {planned}")
                    if not args.skip_deliver:
                        pending = sum(
                            v for k, v in planned.items() if k not in ("subscribers", "items")
                        )
                        steps.append(run_step("deliver", deliver, env, unit="msg", units=pending))
                final = counts(url)
                print(f"  final: {final}")
                ceilings: dict[str, float] = {}
                if not args.skip_deliver:
                    message = sample_message(env, cli)
                    m = min(args.ceiling_messages, max(n, 1000))
                    connections = args.concurrency * args.workers
                    raw = bench_raw_client(sink, message, m, connections)
                    ceilings["raw aiosmtplib client"] = raw.per_second
                    source = bench_ceiling(sink, message, m, connections, directory)
                    if not isinstance(source, str):
                        ceilings["smtp-source"] = source.per_second
                    for name, rate in ceilings.items():
                        print(f"  ceiling {name}: {rate:,.0f} msg/s ({len(message):,} B message)")
        finally:
            sink.close()
    report(steps, ceilings if not args.skip_deliver else {}, args)


def run_overlap(
    plan: list[str], deliver: list[str], env: dict[str, str], url: str, n: int, directory: Path
) -> list[Step]:
    """Plan and deliver together; delivery reruns while the plan still writes batches."""
    print("  plan + deliver at once", flush=True)
    start = time.perf_counter()
    # The planner's output goes to a file: a pipe nobody reads would fill and stop it.
    plan_log = (directory / "plan.log").open("w+")
    planner = subprocess.Popen(plan, env=env, stdout=plan_log, stderr=subprocess.STDOUT)
    plan_memory = TreeMemory(planner.pid)
    plan_done: list[float] = []
    waiter = threading.Thread(
        target=lambda: (planner.wait(), plan_done.append(time.perf_counter() - start)),
        daemon=True,
    )
    waiter.start()
    deliver_peak = 0.0
    deliver_total = 0.0
    runs = 0
    while not plan_done and counts(url)["items"] == 0:
        time.sleep(0.2)
    first_batch = time.perf_counter() - start
    last = ""
    while True:
        planning = not plan_done
        sender = subprocess.Popen(
            deliver, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        memory = TreeMemory(sender.pid)
        out, _ = sender.communicate()
        memory.stop()
        runs += 1
        last = out.strip().splitlines()[-1] if out.strip() else ""
        deliver_peak = max(deliver_peak, memory.peak_process_mb)
        deliver_total = max(deliver_total, memory.peak_total_mb)
        if not planning:
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - start
    waiter.join()
    plan_memory.stop()
    plan_log.seek(0)
    output = plan_log.read()
    plan_log.close()
    sent = counts(url).get("sent", 0)
    plan_seconds = plan_done[0]
    print(
        f"    first batch after {first_batch:.1f} s; plan done after {plan_seconds:.1f} s"
        f" (exit {planner.returncode}); {runs} deliver runs, the last said: {last}\n"
        f"    {sent:,} sent; plan start to last message {elapsed:.1f} s",
        flush=True,
    )
    return [
        Step("plan (while delivering)", plan_seconds, n, "subscribers",
             plan_memory.peak_process_mb, plan_memory.peak_total_mb, planner.returncode,
             output[-2000:]),
        Step("edition: first plan batch to last message", elapsed - first_batch, sent, "msg",
             deliver_peak, deliver_total, 0),
    ]  # fmt: skip


def report(steps: list[Step], ceilings: dict[str, float], args: argparse.Namespace) -> None:
    print()
    print(
        f"| step ({args.subscribers:,} subscribers, {args.workers} workers) | wall | rate"
        " | CPU per unit (with PostgreSQL's) | peak RSS (tree) | largest process |"
    )
    print("|---|---|---|---|---|---|")
    for step in steps:
        cpu = f"{step.cpu_ms_per_unit:.3f} ms" if step.cpu_seconds else ""
        print(
            f"| {step.name} | {step.seconds:,.1f} s | {step.rate:,.0f} {step.unit}/s | {cpu} |"
            f" {step.peak_total_mb:,.0f} MB | {step.peak_process_mb:,.0f} MB |"
        )
    for step in steps:
        if step.unit == "msg":
            for name, rate in ceilings.items():
                print(f"| {step.name} / {name} | | {step.rate / rate:.2f} | | | |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "subscribers": args.subscribers,
                    "workers": args.workers,
                    "steps": [
                        step.__dict__ | {"rate": step.rate, "cpu_ms_per_unit": step.cpu_ms_per_unit}
                        for step in steps
                    ],
                    "ceilings": ceilings,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
