"""``newsletter plan --workers N``: N planner processes share an edition.

Each process opens its own engine and runs the claiming planner (``planner``); the
ranges they claim never overlap, so they add up to what one planner would write.
SQLite has a single writer: it plans in this process whatever N says. A worker that
dies without a report (killed) is an error of the run; what it had done stays done,
and the next run (once its lease is out) plans the rest. The scheduler plans its due
subscribers the same way (setting ``plan_workers``), its ``after_batch`` (the send
times) run by each process in each batch's transaction.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Collection
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.errors import NewsletterError
from newsletter.models import utcnow
from newsletter.planning.editions import BATCH_SIZE
from newsletter.planning.issues import edition_context
from newsletter.planning.options import PlanOptions, PlanSummary
from newsletter.planning.planner import (
    AfterBatch,
    PlannerRun,
    finished,
    plan_claimed,
    plan_in_batches,
    prepare,
)
from newsletter.progress import ProgressHook
from newsletter.settings import Settings


class PlanningError(NewsletterError):
    """A planner process failed or died; what was committed stays, run it again."""


def plan_with_workers(
    settings: Settings,
    session_factory: SessionFactory,
    day: date,
    *,
    options: PlanOptions,
    workers: int = 1,
    only: Collection[int] | None = None,
    progress: ProgressHook | None = None,
    batch_size: int = BATCH_SIZE,
    after_batch: AfterBatch | None = None,
) -> PlanSummary:
    """Plan the edition of ``day`` with ``workers`` processes (1, or SQLite: here).
    ``after_batch`` runs in every batch's transaction (see ``plan_claimed``); with
    several processes it is sent to each, so it must pickle (a module-level function,
    or a ``functools.partial`` of one)."""
    bind = session_factory.kw.get("bind")
    dialect = getattr(bind, "dialect", None)
    if workers <= 1 or dialect is None or dialect.name != "postgresql":
        return plan_in_batches(
            session_factory,
            day,
            options=options,
            only=only,
            progress=progress,
            batch_size=batch_size,
            after_batch=after_batch,
        )
    since = utcnow()
    run = PlannerRun(day, options, only, batch_size)
    edition_id, summary, total = prepare(session_factory, run)
    if progress is not None:
        progress(0, total)
    if options.model_dir is not None:
        # Fit (and store) a stale model once here, so the workers all load it rather
        # than each fitting and storing its own at once.
        with session_factory() as session:
            edition_context(session, day, options)
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=_child,
            args=(settings.database_url, run, edition_id, since, results, after_batch),
            daemon=False,
        )
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    errors: list[str] = []
    reported = 0
    while reported < len(processes):
        try:
            kind, payload = results.get(timeout=0.5)
        except queue.Empty:
            if not any(p.is_alive() for p in processes) and results.empty():
                errors.append("a planner process died without a report")
                break
            continue
        if kind == "progress":
            if progress is not None:
                progress(payload, total)
            continue
        reported += 1
        if kind == "error":
            errors.append(str(payload))
        else:
            summary.add(PlanSummary(**payload))
    for process in processes:
        process.join()
    if errors:
        raise PlanningError(f"planning edition {day} failed: {errors[0]} (run it again)")
    return finished(session_factory, run, summary, edition_id=edition_id, since=since)


def _child(
    url: str,
    run: PlannerRun,
    edition_id: int,
    since: datetime,
    results: Any,
    after_batch: AfterBatch | None,
) -> None:
    engine = make_engine(url)
    try:
        summary = plan_claimed(
            make_session_factory(engine),
            run,
            edition_id=edition_id,
            since=since,
            progress=lambda done, _total: results.put(("progress", done)),
            after_batch=after_batch,
        )
        results.put(("done", asdict(summary)))
    except Exception as exc:  # reported to the parent, which fails the run
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        engine.dispose()
