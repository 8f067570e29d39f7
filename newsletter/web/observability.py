"""``/metrics`` (Prometheus) and ``/healthz``: read from the database at request time.

The figures live in the database, which every worker and the scheduler share, so a
scrape asks it directly (a few grouped counts) rather than keeping counters in one
process that the others would not see. Each app has its own registry.

``/metrics`` tells how many people subscribe and how mail flows, so it is not public:
with the setting ``metrics_token`` a scrape must bring ``Authorization: Bearer <token>``
(401 otherwise); without it only a client on this machine that did not come through a
proxy may scrape (403 otherwise).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Float, case, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from newsletter import status as stats
from newsletter.db import SessionFactory
from newsletter.delivery.outbox import due_now_condition
from newsletter.delivery.relay_errors import last_relay_error
from newsletter.delivery.relay_errors import relay_failing as failing
from newsletter.mail.failures import mail_failures_since
from newsletter.models import (
    Delivery,
    utcnow,
)
from newsletter.web.proxies import is_local
from newsletter.web.state import WebState, web_state

log = logging.getLogger(__name__)

router = APIRouter()
State = Annotated[WebState, Depends(web_state)]


# Upper bounds (seconds) of the send latency histogram: from on time to an hour late.
LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
LATENCY_WINDOW = timedelta(hours=24)


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


def _seconds_late(dialect: str) -> ColumnElement[float]:
    """``sent_at - coalesce(due_at, created_at)`` in seconds (never below 0), in SQL."""
    due = func.coalesce(Delivery.due_at, Delivery.created_at)
    if dialect == "postgresql":
        # date_part is a double; extract() is numeric since PostgreSQL 14, which costs
        # more per row (a million a day at 1M subscribers). greatest() skips a NULL,
        # where the CASE below keeps it: only sent rows (sent_at set, created_at never
        # NULL) are ever asked about.
        part = func.date_part("epoch", Delivery.sent_at - due, type_=Float)
        return func.greatest(part, 0.0, type_=Float)
    # SQLite keeps timestamps as ISO text; julianday reads it (days, fractional)
    seconds: ColumnElement[float] = (
        func.julianday(Delivery.sent_at) - func.julianday(due)
    ) * 86400.0
    return case((seconds < 0, 0.0), else_=seconds)


def send_latency(
    session: Session, *, now: datetime, buckets: Iterable[float] = LATENCY_BUCKETS
) -> tuple[list[tuple[float, int]], int, float]:
    """Cumulative (bound, count) pairs, the count and the sum of seconds late of the
    deliveries sent in the last 24 hours: one query, no rows loaded."""
    bounds = list(buckets)
    late = _seconds_late(session.get_bind().dialect.name)
    columns = [func.sum(case((late <= bound, 1), else_=0)) for bound in bounds]
    row = session.execute(
        select(func.count(), func.sum(late), *columns).where(
            Delivery.sent_at.is_not(None), Delivery.sent_at >= now - LATENCY_WINDOW
        )
    ).one()
    count, total, *cumulative = row
    return [(b, int(c or 0)) for b, c in zip(bounds, cumulative, strict=True)], count, total or 0.0


class DatabaseCollector(Collector):
    """Gauges computed from the database on every scrape."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def collect(self) -> Iterable[Metric]:
        deliveries = GaugeMetricFamily(
            "newsletter_deliveries",
            "Deliveries (one subscriber's issue of one edition) by outcome.",
            labels=["status"],
        )
        subscribers = GaugeMetricFamily(
            "newsletter_subscribers", "Subscribers by status.", labels=["status"]
        )
        queue = GaugeMetricFamily(
            "newsletter_queue_depth",
            "Deliveries a worker may claim now (pending or retry whose send time has come).",
        )
        ingest = GaugeMetricFamily(
            "newsletter_last_ingest_timestamp_seconds",
            "When a paper was last added or updated by an ingest (0: never).",
        )
        plan = GaugeMetricFamily(
            "newsletter_last_plan_timestamp_seconds",
            "When the newest edition was planned (0: never).",
        )
        sent = GaugeMetricFamily(
            "newsletter_last_sent_timestamp_seconds",
            "When an issue was last accepted by the SMTP relay (0: never).",
        )
        mail_failures = GaugeMetricFamily(
            "newsletter_account_mail_failures_24h",
            "Account mails (sign-up confirmations, address changes) that could not be sent "
            "in the last 24 hours.",
        )
        relay_error = GaugeMetricFamily(
            "newsletter_last_smtp_error_timestamp_seconds",
            "When the relay last could not be reached, or deferred or refused mail (0: not "
            "in the last 14 days); an alert: newer than newsletter_last_sent_timestamp_seconds.",
        )
        relay_errors = GaugeMetricFamily(
            "newsletter_smtp_errors_24h",
            "Delivery runs or batches that met an unreachable, deferring or refusing relay "
            "in the last 24 hours.",
        )
        relay_failing = GaugeMetricFamily(
            "newsletter_relay_failing",
            "1 when the relay's newest word is an error (nothing accepted since).",
        )
        stuck = GaugeMetricFamily(
            "newsletter_editions_stuck",
            "Editions with deliveries overdue by 30 minutes and none of their issues sent "
            "meanwhile (no worker is delivering them).",
        )
        up = GaugeMetricFamily("newsletter_database_up", "1 if the database answered the scrape.")
        latency = HistogramMetricFamily(
            "newsletter_send_latency_seconds",
            "How late issues were accepted by the relay (sent_at - due_at), over those sent "
            "in the last 24 hours; recomputed per scrape (use histogram_quantile without rate).",
        )
        try:
            with self._sessions() as session:
                now = utcnow()
                by_status = stats.deliveries_by_status(session)
                people = stats.subscribers_by_status(session)
                due = session.scalar(
                    select(func.count()).select_from(Delivery).where(due_now_condition(now))
                )
                last = stats.activity(session)
                late_buckets, late_count, late_sum = send_latency(session, now=now)
                failed_mails = mail_failures_since(session, now - timedelta(days=1))
                last_error = last_relay_error(session, now=now)
                stuck_now = stats.stuck_editions(session, now=now)
        except SQLAlchemyError as exc:
            log.warning("metrics: the database did not answer: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        for name, count in by_status.items():
            deliveries.add_metric([name], float(count))
        for name, count in people.items():
            subscribers.add_metric([name], float(count))
        queue.add_metric([], float(due or 0))
        ingest.add_metric([], _timestamp(last.last_ingest))
        plan.add_metric([], _timestamp(last.last_plan))
        sent.add_metric([], _timestamp(last.last_sent))
        latency.add_metric(
            [],
            [(repr(float(bound)), float(count)) for bound, count in late_buckets]
            + [("+Inf", float(late_count))],
            float(late_sum),
        )
        mail_failures.add_metric([], float(failed_mails))
        relay_error.add_metric([], _timestamp(last_error.at if last_error else None))
        relay_errors.add_metric([], float(last_error.last_24h if last_error else 0))
        relay_failing.add_metric([], 1.0 if failing(last_error, last.last_sent) else 0.0)
        stuck.add_metric([], float(len(stuck_now)))
        up.add_metric([], 1.0)
        yield from (deliveries, subscribers, queue, ingest, plan, sent, latency, mail_failures)
        yield from (relay_error, relay_errors, relay_failing, stuck, up)


def install(app: FastAPI, sessions: SessionFactory) -> None:
    """Add ``/metrics`` and ``/healthz`` to the app, with a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(sessions))
    app.state.metrics_registry = registry
    app.include_router(router)


def bearer_matches(request: Request, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant time)."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, state: State) -> Response:
    """The Prometheus exposition: to the token's bearer, or to local clients if no token."""
    secret = state.settings.metrics_token
    token = secret.get_secret_value() if secret is not None else ""
    if token:
        if not bearer_matches(request, token):
            return PlainTextResponse(
                "A bearer token is needed (the setting metrics_token).\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    elif not is_local(request):
        return PlainTextResponse(
            "Metrics are served without a token only to this machine, when no proxy is in "
            "between (see trusted_proxies); set metrics_token to scrape them from "
            "elsewhere.\n",
            status_code=403,
        )
    registry = request.app.state.metrics_registry
    if not isinstance(registry, CollectorRegistry):
        raise RuntimeError("the app was not built by create_app")
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", include_in_schema=False)
def healthz(state: State) -> Response:
    """200 when the database answers, else 503 (for load balancers and orchestrators)."""
    try:
        with state.sessions() as session:
            session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("healthz: the database did not answer: %s", exc)
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
