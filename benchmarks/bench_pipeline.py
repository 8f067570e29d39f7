"""Figures for the foundation's hot paths, each as a ratio against a baseline run here.

    python benchmarks/bench_pipeline.py [--subscribers 20000] [--messages 400]

- rank: all subscribers at once (chunked sparse products, argpartition) against the
  obvious loop, one subscriber at a time with a full sort (measured on a sample, scaled).
- render: the cached MJML-compiled template filled by Jinja, against compiling the
  MJML for every issue.
- MIME: assembling one message with the email package, against rendering it.
- send: claim, render, assemble, send and record, end to end into an aiosmtpd sink
  running in another process, with 4 pooled connections against 1.

Inputs are the real arXiv days shipped as the demo feed; subscribers are synthetic
(random mixes of catalogue topics), which the note in benchmarks/README.md says.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np
from mjml import mjml2html

from newsletter.delivery.compose import select_renderable
from newsletter.delivery.run import deliver
from newsletter.mail.message import MessageHeaders, build_message
from newsletter.mail.render import Renderer
from newsletter.mail.view import issue_view
from newsletter.migrations import upgrade
from newsletter.models import Interest, Subscriber, SubscriberStatus
from newsletter.papers.catalogue import load_catalogue
from newsletter.papers.sources.jsonl import read_jsonl
from newsletter.resources import demo_feed_dir, resource_path
from newsletter.service import Service
from newsletter.settings import load_settings
from newsletter.tokens import Tokens
from recommender import Document, build_profiles, fit_transform, rank

SECRET = "benchmark-secret-0123456789-abcdefghijklmnop"
EDITION = date(2026, 5, 29)


def best_of(repeat: int, func: Callable[[], object]) -> float:
    """Best wall time of ``repeat`` runs (the least disturbed by a noisy machine)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_rank(n_subscribers: int) -> dict[str, float]:
    records = read_jsonl(demo_feed_dir() / "2026-05-29.jsonl.gz", today=EDITION).records
    docs = [Document(r.title, r.abstract) for r in {r.external_id: r for r in records}.values()]
    model, papers = fit_transform(docs)
    catalogue = list(load_catalogue().values())
    rng = np.random.default_rng(0)
    per = rng.integers(1, 4, size=n_subscribers)
    rows = np.repeat(np.arange(n_subscribers), per)
    cols = rng.integers(0, len(catalogue), size=len(rows))
    texts = [t.interest_text for t in catalogue]
    profiles = build_profiles(
        model,
        texts=texts,
        rows=rows,
        cols=cols,
        weights=np.ones(len(rows)),
        n_profiles=n_subscribers,
    )
    fast = best_of(3, lambda: rank(profiles, papers, k=10))
    sample = min(n_subscribers, 2000)
    dense_papers = papers.T.tocsc()

    def loop() -> None:
        for r in range(sample):
            scores = (profiles[r] @ dense_papers).toarray().ravel()
            np.argsort(-scores, kind="stable")[:10]

    slow = best_of(1, loop) * n_subscribers / sample
    return {"papers": papers.shape[0], "fast_s": fast, "loop_s": slow}


def bench_render_and_mime(service: Service) -> dict[str, float]:
    renderer = Renderer()
    tokens = Tokens(SECRET)
    with service.sessions() as session:
        delivery = session.scalars(select_renderable().limit(1)).one()
        view = issue_view(delivery, settings=service.settings, tokens=tokens)
    renderer.render_issue(view)
    n = 300
    cached = best_of(3, lambda: [renderer.render_issue(view) for _ in range(n)]) / n
    source = (resource_path("templates") / "email" / "issue.mjml").read_text()
    compiling = best_of(3, lambda: [mjml2html(source) for _ in range(n // 10)]) / (n // 10)
    rendered = renderer.render_issue(view)
    headers = MessageHeaders(
        sender=service.settings.sender,
        to_address="ada@example.org",
        to_name="Ada Lovelace",
        message_id="<issue-20260529-1@example.org>",
        list_id="papers.example.org",
        list_name="Paper Newsletter",
        unsubscribe_url=view.unsubscribe_url,
        date=delivery.created_at,
    )
    mime = best_of(3, lambda: [build_message(rendered, headers) for _ in range(n)]) / n
    size = len(build_message(rendered, headers))
    return {"render_s": cached, "compile_s": cached + compiling, "mime_s": mime, "bytes": size}


def prepared_service(directory: Path, n_messages: int) -> Service:
    directory.mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        overrides={"database_url": f"sqlite:///{directory / 'b.db'}", "secret_key": SECRET}
    )
    service = Service.open(settings, check_schema=False)
    upgrade(service.engine)
    service.sync_topics()
    for path in sorted(demo_feed_dir().glob("*.jsonl.gz")):
        service.ingest(path, today=EDITION)
    topics = list(service.catalogue)
    rng = np.random.default_rng(1)
    with service.sessions.begin() as session:
        for i in range(n_messages):
            chosen = rng.choice(topics, size=2, replace=False)
            session.add(
                Subscriber(
                    email=f"reader{i}@example.org",
                    name=f"Reader {i}",
                    status=SubscriberStatus.ACTIVE,
                    interests=[Interest(topic_id=str(t), weight=1.0) for t in chosen],
                )
            )
    service.plan(EDITION)
    return service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sink_command(port: int) -> list[str]:
    """Postfix's smtp-sink (C, ``apt-get install postfix``) if present, else aiosmtpd's Sink."""
    smtp_sink = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if smtp_sink:
        return [smtp_sink, "-u", "nobody", f"127.0.0.1:{port}", "256"]
    command = [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink"]
    return [*command, "-l", f"127.0.0.1:{port}"]


@contextmanager
def sink_process() -> Iterator[int]:
    """A server that discards mail, in its own process (it must not share our GIL)."""
    port = free_port()
    process = subprocess.Popen(sink_command(port))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def bench_send(directory: Path, n_messages: int) -> dict[str, float]:
    rates = {}
    with sink_process() as port:
        for connections in (1, 4):
            service = prepared_service(directory / f"c{connections}", n_messages)
            settings = service.settings.model_copy(
                update={
                    "smtp_host": "127.0.0.1",
                    "smtp_port": port,
                    "smtp_connections": connections,
                }
            )
            start = time.perf_counter()
            summary = deliver(service.sessions, settings=settings, edition=EDITION, workers=1)
            elapsed = time.perf_counter() - start
            service.close()
            if summary.sent != n_messages:
                raise SystemExit(f"expected {n_messages} sent, got {summary}")
            rates[f"send_{connections}"] = n_messages / elapsed
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ranked = bench_rank(args.subscribers)
        print(
            f"rank {args.subscribers:,} subscribers x {ranked['papers']} papers, top-10: "
            f"{ranked['fast_s']:.3f} s batched vs {ranked['loop_s']:.2f} s per-subscriber loop "
            f"= {ranked['loop_s'] / ranked['fast_s']:.0f}x faster"
        )
        sent = bench_send(Path(tmp), args.messages)
        service = prepared_service(Path(tmp) / "render", 5)
        rendered = bench_render_and_mime(service)
        service.close()
        print(
            f"render one issue: {rendered['render_s'] * 1e3:.3f} ms cached vs "
            f"{rendered['compile_s'] * 1e3:.3f} ms compiling MJML each time "
            f"= {rendered['compile_s'] / rendered['render_s']:.1f}x faster"
        )
        print(
            f"MIME assembly ({rendered['bytes'] / 1024:.0f} KB message): "
            f"{rendered['mime_s'] * 1e3:.3f} ms = {rendered['mime_s'] / rendered['render_s']:.1f}x "
            f"the render time"
        )
        print(
            f"send end to end ({args.messages} messages into "
            f"{Path(sink_command(0)[0]).name}): "
            f"{sent['send_4']:.0f} msg/s with 4 connections vs {sent['send_1']:.0f} msg/s with 1 "
            f"= {sent['send_4'] / sent['send_1']:.2f}x"
        )


if __name__ == "__main__":
    main()
