"""Plan an edition: rank each subscriber's new papers and write the outbox rows.

Planning is one transaction owned by the caller, and idempotent: a subscriber who
already has a delivery for the edition is left alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from scipy import sparse
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    Frequency,
    Interest,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
    Topic,
)
from recommender import Document, build_profiles, explain, fit_transform, rank

WINDOW_DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7}
# Deliveries in these states hold papers that are (or will be) in someone's inbox.
_HOLDING = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.SENT)


@dataclass(frozen=True)
class PlanOptions:
    max_papers: int = 10
    min_score: float = 0.02
    corpus_limit: int = 50_000


@dataclass
class PlanSummary:
    edition: date
    planned: int = 0
    already_planned: int = 0
    nothing_new: int = 0
    candidates: int = 0
    top_picks: list[tuple[str, str, float]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"edition {self.edition}: {self.planned} deliveries planned, "
            f"{self.already_planned} already planned, {self.nothing_new} subscribers with "
            f"nothing new, {self.candidates} candidate papers"
        )


def window(edition: date, frequency: Frequency) -> tuple[date, date]:
    """The listing dates (inclusive) an issue of ``frequency`` covers."""
    return edition - timedelta(days=WINDOW_DAYS[frequency] - 1), edition


def _get_or_create_edition(session: Session, day: date) -> Edition:
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        edition = Edition(date=day)
        session.add(edition)
        session.flush()
    return edition


def _interest_text(interest: Interest, topics: dict[str, Topic]) -> str:
    if interest.topic_id is not None:
        return topics[interest.topic_id].description
    return interest.keywords or ""


def _already_sent(
    session: Session, subscriber_ids: list[int], paper_ids: list[int], edition_id: int
) -> set[tuple[int, int]]:
    """(subscriber, paper) pairs already in another issue of theirs."""
    pairs: set[tuple[int, int]] = set()
    for start in range(0, len(paper_ids), 500):
        chunk = paper_ids[start : start + 500]
        rows = session.execute(
            select(Delivery.subscriber_id, DeliveryItem.paper_id)
            .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
            .where(
                DeliveryItem.paper_id.in_(chunk),
                Delivery.status.in_(_HOLDING),
                Delivery.edition_id != edition_id,
            )
        )
        wanted = set(subscriber_ids)
        pairs.update((s, p) for s, p in rows if s in wanted)
    return pairs


def plan_edition(session: Session, day: date, *, options: PlanOptions) -> PlanSummary:
    """Write one ranked delivery per active, unsuppressed subscriber with new papers."""
    summary = PlanSummary(edition=day)
    edition = _get_or_create_edition(session, day)
    planned_ids = set(
        session.scalars(select(Delivery.subscriber_id).where(Delivery.edition_id == edition.id))
    )
    summary.already_planned = len(planned_ids)
    suppressed = select(Suppression.email)
    subscribers = [
        s
        for s in session.scalars(
            select(Subscriber)
            .where(
                Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.email.not_in(suppressed)
            )
            .options(selectinload(Subscriber.interests))
            .order_by(Subscriber.id)
        )
        if s.id not in planned_ids
    ]
    earliest = min(window(day, f)[0] for f in Frequency)
    papers = list(
        session.scalars(
            select(Paper)
            .where(Paper.listed_on >= earliest, Paper.listed_on <= day)
            .order_by(Paper.listed_on, Paper.external_id)
        )
    )
    summary.candidates = len(papers)
    if not subscribers or not papers:
        summary.nothing_new = len(subscribers)
        return summary

    # The model is fitted on the candidates plus the newest older papers (never on
    # papers listed after the edition, so replanning a past edition gives the same
    # result); the candidates are the first rows of the fitted corpus.
    older = session.scalars(
        select(Paper)
        .where(Paper.listed_on < earliest)
        .order_by(Paper.listed_on.desc(), Paper.id.desc())
        .limit(max(options.corpus_limit - len(papers), 0))
    ).all()
    corpus = [Document(p.title, p.abstract) for p in [*papers, *older]]
    model, corpus_vectors = fit_transform(corpus)
    paper_vectors = corpus_vectors[: len(papers)]

    topics = {t.id: t for t in session.scalars(select(Topic))}
    text_index: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    weights: list[float] = []
    for row, subscriber in enumerate(subscribers):
        for interest in subscriber.interests:
            text = _interest_text(interest, topics)
            rows.append(row)
            cols.append(text_index.setdefault(text, len(text_index)))
            weights.append(interest.weight)
    profiles = build_profiles(
        model,
        texts=list(text_index),
        rows=rows,
        cols=cols,
        weights=weights,
        n_profiles=len(subscribers),
    )

    sent = _already_sent(session, [s.id for s in subscribers], [p.id for p in papers], edition.id)
    groups: dict[Frequency, list[int]] = defaultdict(list)
    for row, subscriber in enumerate(subscribers):
        groups[subscriber.frequency].append(row)

    for frequency, group_rows in groups.items():
        start, end = window(day, frequency)
        paper_cols = [i for i, p in enumerate(papers) if start <= p.listed_on <= end]
        if not paper_cols:
            summary.nothing_new += len(group_rows)
            continue
        group_profiles = profiles[group_rows]
        group_papers = paper_vectors[paper_cols]
        col_of = {papers[c].id: j for j, c in enumerate(paper_cols)}
        row_of = {subscribers[r].id: i for i, r in enumerate(group_rows)}
        excluded = [(row_of[s], col_of[p]) for s, p in sent if s in row_of and p in col_of]
        exclude = sparse.csr_matrix(
            (
                np.ones(len(excluded), dtype=np.int8),
                ([e[0] for e in excluded], [e[1] for e in excluded]),
            ),
            shape=(len(group_rows), len(paper_cols)),
        )
        k = max((subscribers[r].max_papers or options.max_papers) for r in group_rows)
        result = rank(
            group_profiles, group_papers, k=k, exclude=exclude, min_score=options.min_score
        )
        reasons = explain(group_profiles, group_papers, result, feature_names=model.feature_names)
        for i, row in enumerate(group_rows):
            subscriber = subscribers[row]
            limit = subscriber.max_papers or options.max_papers
            picks = result.picks(i)[:limit]
            if not picks:
                summary.nothing_new += 1
                continue
            delivery = Delivery(edition_id=edition.id, subscriber_id=subscriber.id)
            delivery.items = [
                DeliveryItem(
                    rank=position,
                    paper_id=papers[paper_cols[column]].id,
                    score=round(float(score), 6),
                    terms=list(reasons[i][position]),
                )
                for position, (column, score) in enumerate(picks)
            ]
            session.add(delivery)
            summary.planned += 1
            top_column, top_score = picks[0]
            summary.top_picks.append(
                (subscriber.email, papers[paper_cols[top_column]].title, float(top_score))
            )
    session.flush()
    return summary
