"""``/metrics`` (Prometheus) and ``/healthz``: read from the database at request time.

The figures live in the database, which every worker and the scheduler share, so a
scrape asks it directly (a few grouped counts) rather than keeping counters in one
process that the others would not see. Each app has its own registry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from newsletter.db import SessionFactory
from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Paper,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from newsletter.web.state import WebState, web_state

log = logging.getLogger(__name__)

router = APIRouter()
State = Annotated[WebState, Depends(web_state)]


def _timestamp(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else 0.0


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
            "Deliveries due to be sent now (pending, or retry whose time has come).",
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
        up = GaugeMetricFamily("newsletter_database_up", "1 if the database answered the scrape.")
        try:
            with self._sessions() as session:
                by_status = dict.fromkeys((s.value for s in DeliveryStatus), 0)
                for delivery_status, count in session.execute(
                    select(Delivery.status, func.count()).group_by(Delivery.status)
                ):
                    by_status[delivery_status.value] = count
                people = dict.fromkeys((s.value for s in SubscriberStatus), 0)
                for subscriber_status, count in session.execute(
                    select(Subscriber.status, func.count()).group_by(Subscriber.status)
                ):
                    people[subscriber_status.value] = count
                due = session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        or_(
                            Delivery.status == DeliveryStatus.PENDING,
                            (Delivery.status == DeliveryStatus.RETRY)
                            & (Delivery.next_attempt_at <= utcnow()),
                        )
                    )
                )
                last_ingest = session.scalar(select(func.max(Paper.updated_at)))
                last_plan = session.scalar(select(func.max(Edition.created_at)))
                last_sent = session.scalar(select(func.max(Delivery.sent_at)))
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
        ingest.add_metric([], _timestamp(last_ingest))
        plan.add_metric([], _timestamp(last_plan))
        sent.add_metric([], _timestamp(last_sent))
        up.add_metric([], 1.0)
        yield from (deliveries, subscribers, queue, ingest, plan, sent, up)


def install(app: FastAPI, sessions: SessionFactory) -> None:
    """Add ``/metrics`` and ``/healthz`` to the app, with a registry of its own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(sessions))
    app.state.metrics_registry = registry
    app.include_router(router)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
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


# Structured logs: one line per event, JSON when asked for (for a log shipper).

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    ``extra=`` fields of the call, and the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str, ensure_ascii=False)


def configure_logging(*, json_lines: bool = False, level: int = logging.INFO) -> None:
    """Log to stderr, one line per event: plain text, or JSON (``json_lines``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
