"""Running delivery workers: ``deliver`` (what ``newsletter send`` and ``newsletter
deliver`` and the scheduler call), worker processes, and the signals that stop them.

One worker runs in this process; several (PostgreSQL only) run as spawned processes
that report their summaries back. SIGTERM/SIGINT stop claiming: in-flight messages
finish, the rest goes back to the outbox. Editions are marked sending when a run
starts and sent once all their deliveries are settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.db import SessionFactory, make_engine, make_session_factory, retry_stale
from newsletter.delivery.outbox import claimable_now
from newsletter.delivery.outcomes import DeliverySummary
from newsletter.delivery.relay_errors import note_unreachable
from newsletter.delivery.worker import Worker, WorkerOptions
from newsletter.errors import ConfigError, EditionError, NewsletterError, SmtpUnavailable
from newsletter.mail.render import Renderer
from newsletter.models import OPEN, Delivery, Edition, EditionStatus, utcnow
from newsletter.progress import ProgressHook
from newsletter.settings import Settings

log = logging.getLogger(__name__)

BUG_PREFIX = "bug: "

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Set in a worker process by a stop signal that came while no worker loop was
# running (while it started up, or after its loop ended): the loop, once it runs,
# stops at once, and the process still reports to its parent instead of dying.
_stop_requested = threading.Event()


def _note_stop(_signum: int, _frame: object) -> None:
    _stop_requested.set()


@contextlib.contextmanager
def _signals_blocked() -> Any:
    """Stop signals held back (pending, not lost) while handlers change hands, so
    none arrives in between to the default action, which kills the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class DeliveryError(NewsletterError):
    """A delivery worker failed for a reason other than the relay (a bug, a broken
    template): what it had sent is recorded, the rest is given back."""


def find_edition(session: Session, day: date) -> Edition:
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        raise EditionError(
            f"edition {day} has not been planned; run: newsletter plan --edition {day}"
        )
    return edition


def _install_stop_handlers(loop: asyncio.AbstractEventLoop, worker: Worker) -> list[signal.Signals]:
    """SIGTERM/SIGINT stop claiming; in-flight messages finish, the rest goes back."""
    if threading.current_thread() is not threading.main_thread():
        return []
    installed = []
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, worker.stop.set)
            installed.append(sig)
    if _stop_requested.is_set():
        worker.stop.set()
    return installed


def _remove_stop_handlers(
    loop: asyncio.AbstractEventLoop, installed: list[signal.Signals], previous: dict[Any, Any]
) -> None:
    """Give the signals back to the handlers they had before the loop took them.
    (asyncio would leave SIGTERM at the default action, which kills the process: a
    stop forwarded to a worker that had just finished lost its report.)"""
    with _signals_blocked():
        for sig in installed:
            loop.remove_signal_handler(sig)
            if previous.get(sig) is not None:
                signal.signal(sig, previous[sig])


def _run_worker(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    options: WorkerOptions,
    renderer: Renderer,
    clock: Callable[[], datetime],
    progress: ProgressHook | None = None,
) -> DeliverySummary:
    async def main() -> DeliverySummary:
        worker = Worker(
            session_factory,
            settings=settings,
            options=options,
            renderer=renderer,
            clock=clock,
            progress=progress,
        )
        loop = asyncio.get_running_loop()
        previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
        installed = _install_stop_handlers(loop, worker)
        try:
            return await worker.run()
        finally:
            _remove_stop_handlers(loop, installed, previous)

    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main())


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (not on Windows), else asyncio's own
    (None). A worker's loop runs every SMTP session, the handoffs to the database
    threads and the timeouts: on libuv that takes about 5% less CPU per message
    (benchmarks/README.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _child_main(
    settings: Settings,
    options: WorkerOptions,
    results: multiprocessing.queues.Queue[dict[str, Any]],
) -> None:
    """Entry point of a worker process (spawned: nothing inherited but the arguments
    and the signal mask: the parent starts it with the stop signals blocked, so one
    that comes while it starts up waits for this handler)."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, _note_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    # No pre-ping: a worker commits hundreds of times a second, and each unit of its
    # work runs again on a new connection if its pooled one died (``retry_stale``).
    engine = make_engine(settings.database_url, pre_ping=False)
    error = ""
    summary = DeliverySummary()
    try:
        summary = _run_worker(
            make_session_factory(engine),
            settings=settings,
            options=options,
            renderer=Renderer(settings.templates_dir),
            clock=utcnow,
        )
    except SmtpUnavailable as exc:
        error = str(exc)
    except Exception as exc:  # reported to the parent, which fails the run
        log.exception("delivery worker failed")
        error = f"{BUG_PREFIX}{type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
        results.put({**summary.as_dict(), "error": error})


def deliver(
    session_factory: SessionFactory,
    *,
    settings: Settings,
    edition: date | None = None,
    workers: int | None = None,
    concurrency: int | None = None,
    wait: bool = False,
    renderer: Renderer | None = None,
    clock: Callable[[], datetime] = utcnow,
    progress: ProgressHook | None = None,
) -> DeliverySummary:
    """Send every due delivery (of ``edition``, or of all editions).

    ``workers`` processes (PostgreSQL; SQLite runs one) with ``concurrency`` SMTP
    sessions each. ``wait``: stay until nothing is open, sleeping until retries are
    due. Raises ``SmtpUnavailable`` when the relay cannot be reached, after recording
    every known outcome and giving back the rest. ``progress`` is told the number
    due at the start, then each batch of outcomes (with several worker processes,
    each worker's total when it ends).
    """
    renderer = renderer or Renderer(settings.templates_dir)
    renderer.check()  # a broken template fails here, before anything is claimed
    workers = workers or settings.deliver_workers
    concurrency = concurrency or settings.smtp_connections
    if concurrency < 1 or workers < 1:
        raise ConfigError("workers and concurrency must be at least 1")
    dialect = session_factory.kw["bind"].dialect.name
    if dialect != "postgresql" and workers > 1:
        log.warning("SQLite has a single writer: running 1 delivery worker, not %d", workers)
        workers = 1
    edition_id = _start_edition(session_factory, edition)
    options = WorkerOptions(
        edition_id=edition_id, concurrency=concurrency, wait=wait, workers=workers
    )
    summary = DeliverySummary(edition=edition)
    if progress is not None:
        with session_factory() as session:
            due = (
                select(func.count()).select_from(Delivery).where(claimable_now(clock(), edition_id))
            )
            progress(0, session.scalar(due) or 0)
    if workers == 1:
        try:
            summary.add(
                _run_worker(
                    session_factory,
                    settings=settings,
                    options=options,
                    renderer=renderer,
                    clock=clock,
                    progress=progress,
                )
            )
        except SmtpUnavailable as exc:
            note_unreachable(session_factory, str(exc))
            raise
        finally:
            _finish_editions(session_factory, edition_id)
        return summary
    errors = _run_processes(settings, options, workers, summary, progress)
    _finish_editions(session_factory, edition_id)
    bugs = [e for e in errors if e.startswith(BUG_PREFIX)]
    if bugs:
        raise DeliveryError(f"a delivery worker failed: {bugs[0].removeprefix(BUG_PREFIX)}")
    if errors:
        note_unreachable(session_factory, errors[0])
        raise SmtpUnavailable(errors[0])
    return summary


def _run_processes(
    settings: Settings,
    options: WorkerOptions,
    workers: int,
    summary: DeliverySummary,
    progress: ProgressHook | None = None,
) -> list[str]:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.queues.Queue[dict[str, Any]] = context.Queue()
    processes = [
        context.Process(target=_child_main, args=(settings, options, results), daemon=False)
        for _ in range(workers)
    ]

    stopping = False

    def forward(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    previous: dict[signal.Signals, Any] = {}
    # The handler comes first: a signal may land on any thread of this process, and
    # one landing on another thread while the default action was in place killed the
    # run (exit -15).
    if threading.current_thread() is threading.main_thread():
        for sig in _STOP_SIGNALS:
            previous[sig] = signal.signal(sig, forward)
    errors: list[str] = []
    try:
        # The children inherit the blocked mask: a stop that comes before a child has
        # its handler waits for it instead of killing the child without a report.
        with _signals_blocked():
            for process in processes:
                process.start()
        if stopping:  # the stop came while some were not started yet: they get it too
            forward(signal.SIGTERM, None)
        for _ in processes:
            while True:
                try:
                    result = results.get(timeout=0.5)
                    break
                except Exception:  # queue.Empty: check that someone is still alive
                    if not any(p.is_alive() for p in processes) and results.empty():
                        result = None
                        break
            if result is None:
                if not (stopping and _all_stopped_by_signal(processes)):
                    errors.append(f"{BUG_PREFIX}a delivery worker process died without a report")
                break
            done = DeliverySummary.from_dict(result)
            summary.add(done)
            if progress is not None:
                settled = done.sent + done.retried + done.bounced + done.failed
                progress(settled + done.suppressed, None)
            if result["error"]:
                errors.append(str(result["error"]))
        for process in processes:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return errors


def _all_stopped_by_signal(processes: list[Any]) -> bool:
    """Whether every worker that did not report was ended by the stop sent to it. A
    worker dies of it only where its loop is not running (the instant its handlers
    change hands), so it held no claim: what it did is in the database, only its
    summary is missing."""
    for process in processes:
        process.join()
    return all(p.exitcode in (0, -signal.SIGTERM) for p in processes)


# A run (re)starts these editions when they have deliveries to send: planned ones, and
# sent ones that readers who joined later were planned into.
_RESTARTABLE = (EditionStatus.PLANNED, EditionStatus.SENT)


def _start_edition(session_factory: SessionFactory, day: date | None) -> int | None:
    if day is None:
        with session_factory.begin() as session:
            session.execute(
                update(Edition)
                .where(
                    Edition.status.in_(_RESTARTABLE),
                    Edition.id.in_(select(Delivery.edition_id).where(Delivery.status.in_(OPEN))),
                )
                .values(status=EditionStatus.SENDING)
            )
        return None
    with session_factory.begin() as session:
        edition = find_edition(session, day)
        if edition.status == EditionStatus.PLANNED or (
            edition.status == EditionStatus.SENT
            and session.scalar(
                select(Delivery.id)
                .where(Delivery.edition_id == edition.id, Delivery.status.in_(OPEN))
                .limit(1)
            )
            is not None
        ):
            edition.status = EditionStatus.SENDING
        return edition.id


def _finish_editions(session_factory: SessionFactory, edition_id: int | None) -> None:
    """An edition whose deliveries are all settled is sent. Run once more on a new
    connection if the pooled one died while the workers ran (an engine without
    pre-ping; the update is the same when run twice)."""
    retry_stale(lambda: _mark_sent(session_factory, edition_id))


def _mark_sent(session_factory: SessionFactory, edition_id: int | None) -> None:
    with session_factory.begin() as session:
        open_editions = select(Delivery.edition_id).where(Delivery.status.in_(OPEN))
        statement = update(Edition).where(
            Edition.status.in_((EditionStatus.PLANNED, EditionStatus.SENDING)),
            Edition.id.not_in(open_editions),
        )
        if edition_id is not None:
            statement = statement.where(Edition.id == edition_id)
        else:
            statement = statement.where(Edition.status == EditionStatus.SENDING)
        session.execute(statement.values(status=EditionStatus.SENT))
