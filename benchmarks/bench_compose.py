"""A delivery worker's CPU per message, stage by stage, old path against new in one run.

    python benchmarks/bench_compose.py [--deliveries 3000] [--passes 7]

The same deliveries as ``bench_delivery.py`` (the real listings of ../shared/data, one
ten-paper delivery per synthetic subscriber) in a SQLite file, loaded once by the
worker's ``Composer``; then, for ``--passes`` passes over all of them, the CPU time
(``time.process_time``) of each stage, the best pass kept (CPU time is what a loaded
machine does not distort much; the best of several passes drops the pauses):

- load: ``Composer.load`` of the claimed batches (paper cards already built);
- view: ``build_issue_view`` (the links, the why of every pick);
- render, Jinja: ``Renderer.render_issue`` with the card cache (the path before the
  skeletons, still the reference and the fallback);
- render, skeleton: ``IssueSkeletons.render`` (``newsletter.mail.skeleton``);
- MIME, encoding the HTML: ``build_message`` of Jinja's render (the HTML part encoded
  and CRLF'd per message, as before);
- MIME, 7bit body made: ``build_message`` of the skeleton's render (``html_7bit``).

Old and new alternate within each pass. Every message is also checked: the two paths
must give the same bytes (MIME boundary set aside).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_delivery import SECRET, SENDER, Database, populate

from newsletter.db import make_engine, make_session_factory
from newsletter.delivery.compose import Composer, Job
from newsletter.mail.cards import CardCache
from newsletter.mail.message import MessageHeaders, build_message
from newsletter.mail.render import IssueView, RenderedIssue, Renderer
from newsletter.mail.view import build_issue_view
from newsletter.settings import load_settings
from newsletter.tokens import Tokens

BATCH = 500
NOW = datetime(2026, 5, 29, 6, 0, tzinfo=UTC)


def _cpu(run: Callable[[], object]) -> float:
    start = time.process_time()
    run()
    return time.process_time() - start


def _headers(job: Job, view: IssueView) -> MessageHeaders:
    return MessageHeaders(
        sender=f"Paper Newsletter <{SENDER}>",
        to_address=job.email,
        to_name=job.name,
        message_id=f"<issue-{job.delivery_id}@example.org>",
        list_id="papers.example.org",
        list_name=view.list_name,
        unsubscribe_url=view.unsubscribe_url,
        date=NOW,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database("SQLite", url, make_engine(url))
        populate(db, args.deliveries)
        settings = load_settings(
            overrides={
                "database_url": url,
                "secret_key": SECRET,
                "sender": f"Paper Newsletter <{SENDER}>",
                "public_url": "https://papers.example.org",
            }
        )
        sessions = make_session_factory(db.engine)
        renderer = Renderer()
        renderer.check()
        composer = Composer(settings, renderer, Tokens(SECRET))
        ids = list(range(1, args.deliveries + 1))
        batches = [ids[at : at + BATCH] for at in range(0, len(ids), BATCH)]

        def load() -> list[Job]:
            jobs: list[Job] = []
            with sessions() as session:
                for batch in batches:
                    jobs.extend(composer.load(session, batch)[0])
            return jobs

        jobs = load()  # builds every paper's card once, as a worker does
        n = len(jobs)

        def views() -> list[IssueView]:
            return [
                build_issue_view(
                    settings=settings,
                    tokens=composer.tokens,
                    delivery_id=j.delivery_id,
                    subscriber_id=j.subscriber_id,
                    token_version=j.token_version,
                    email=j.email,
                    edition=j.edition,
                    interests=j.interests,
                    items=j.items,
                    locale=j.locale,
                    reader=j.reader,
                )
                for j in jobs
            ]

        built = views()
        shared = [[item.paper for item in j.items] for j in jobs]
        cards = CardCache()  # the Jinja path's own, as a worker before the skeletons had

        def jinja() -> list[RenderedIssue]:
            return [
                renderer.render_issue(v, cards=cards, shared=s)
                for v, s in zip(built, shared, strict=True)
            ]

        def skeleton() -> list[RenderedIssue]:
            return [composer.skeletons.render(v, s) for v, s in zip(built, shared, strict=True)]

        for _ in range(3):  # the cards cached, the skeletons made and checked
            skeleton()
        old, new = jinja(), skeleton()

        def mime(rendered: list[RenderedIssue]) -> Callable[[], list[bytes]]:
            return lambda: [
                build_message(r, _headers(j, v))
                for r, j, v in zip(rendered, jobs, built, strict=True)
            ]

        stages: dict[str, Callable[[], Any]] = {
            "load (claimed batches)": load,
            "view (links, why)": views,
            "render, Jinja with cached cards": jinja,
            "render, skeleton": skeleton,
            "MIME, HTML encoded per message": mime(old),
            "MIME, 7bit body from the skeleton": mime(new),
        }
        best = dict.fromkeys(stages, float("inf"))
        for _ in range(args.passes):
            for name, run in stages.items():
                best[name] = min(best[name], _cpu(run))
        boundary = re.compile(rb"=_issue_[0-9a-f]+_\d+")
        same = sum(
            boundary.sub(b"B", a) == boundary.sub(b"B", b)
            for a, b in zip(mime(old)(), mime(new)(), strict=True)
        )
        print(f"{n} deliveries, {composer.skeletons.filled} issues filled from skeletons")
        print(f"messages identical (boundary aside): {same} of {n}")
        print(f"CPU per message, best of {args.passes} passes:")
        for name, seconds in best.items():
            print(f"  {name:36s} {seconds / n * 1e6:7.1f} µs")
        old_render, new_render, old_mime, new_mime = (best[name] for name in list(stages)[2:])
        print(
            f"  new/old: render {new_render / old_render:.2f}, MIME {new_mime / old_mime:.2f}, "
            f"both {(new_render + new_mime) / (old_render + old_mime):.2f}"
        )
        db.engine.dispose()


if __name__ == "__main__":
    main()
