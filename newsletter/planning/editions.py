"""Plan an edition: rank each subscriber's new papers and write the outbox rows.

Planning is one transaction owned by the caller, and idempotent: a subscriber who
already has a delivery for the edition is left alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path

import numpy as np
from scipy import sparse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.models import (
    Delivery,
    DeliveryItem,
    DeliveryStatus,
    Edition,
    Frequency,
    Paper,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.planning.corpus import EditionModel, model_for_edition
from newsletter.planning.dense_inputs import DenseInputs, edition_inputs
from newsletter.planning.profile_vectors import build_subscriber_profiles, load_ratings
from newsletter.progress import ProgressHook
from newsletter.settings import Settings
from recommender import (
    FeedbackWeights,
    RankResult,
    diversify,
    explain,
    rank,
)
from recommender.hybrid import HybridWeights, rank_hybrid

# An issue covers the listing days since the subscriber's previous issue: at least
# WINDOW_DAYS (a first issue, or a changed frequency), at most MAX_WINDOW_DAYS (one
# catch-up issue after a long downtime does not reach back for ever).
WINDOW_DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7}
MAX_WINDOW_DAYS = {Frequency.DAILY: 7, Frequency.WEEKLY: 14}
# Deliveries in these states hold papers that are (or will be) in someone's inbox.
_HOLDING = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.SENT)


# MMR chooses among this many times k candidates per subscriber.
_MMR_POOL = 3


@dataclass(frozen=True)
class PlanOptions:
    max_papers: int = 10
    min_score: float = 0.02
    corpus_limit: int = 50_000
    # MMR trade-off between relevance and novelty; 1.0 ranks by relevance alone.
    diversity: float = 0.8
    feedback: FeedbackWeights = field(default_factory=FeedbackWeights)
    # Where the fitted model is kept between editions (None: fit for every edition).
    model_dir: Path | None = None
    refit_growth: float = 0.2
    # Hybrid TF-IDF + sentence-embedding ranking (the optional semantic extra); None: when it is
    # installed and the candidates were embedded at ingest. False: TF-IDF alone.
    semantic: bool | None = None
    hybrid: HybridWeights = field(default_factory=HybridWeights)
    # The minimum score when the hybrid ranks (min_score is TF-IDF's): its dense half
    # is rarely near 0 even for unrelated papers. Calibrated by
    # benchmarks/calibrate_min_score.py to keep as many relevant papers as 0.02 keeps
    # with TF-IDF alone (benchmarks/README.md).
    min_score_semantic: float = 0.06

    @classmethod
    def from_settings(cls, settings: Settings) -> PlanOptions:
        """The options every planner uses (newsletter plan, the scheduler, test sends)."""
        return cls(
            max_papers=settings.max_papers,
            min_score=settings.min_score,
            min_score_semantic=settings.min_score_semantic,
            corpus_limit=settings.corpus_limit,
            diversity=settings.diversity,
            model_dir=settings.model_dir,
            refit_growth=settings.refit_growth,
            semantic=settings.semantic,
            feedback=FeedbackWeights(
                liked=settings.feedback_liked,
                disliked=settings.feedback_disliked,
                half_life_days=settings.feedback_half_life_days,
            ),
        )


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
    """The listing dates (inclusive) an issue of ``frequency`` covers at least."""
    return edition - timedelta(days=WINDOW_DAYS[frequency] - 1), edition


def window_start(edition: date, frequency: Frequency, previous: date | None) -> date:
    """The first listing date an issue of ``edition`` covers for a subscriber whose
    previous issue (sent or planned) was the edition ``previous`` (before the first
    issue: the day before they subscribed): the day after it, never later than the
    nominal window's start, never earlier than the cap's. None: the nominal window."""
    nominal = edition - timedelta(days=WINDOW_DAYS[frequency] - 1)
    if previous is None:
        return nominal
    earliest = edition - timedelta(days=MAX_WINDOW_DAYS[frequency] - 1)
    return max(earliest, min(previous + timedelta(days=1), nominal))


def previous_issues(session: Session, day: date) -> dict[int, date]:
    """Each subscriber's newest edition before ``day`` with an issue sent or on its way.

    One grouped query over the editions the longest window can reach back to (an
    older issue changes nothing: the window is capped), not one per subscriber.
    """
    reach = day - timedelta(days=max(MAX_WINDOW_DAYS.values()))
    rows = session.execute(
        select(Delivery.subscriber_id, func.max(Edition.date))
        .join(Edition, Edition.id == Delivery.edition_id)
        .where(
            Edition.date < day,
            Edition.date >= reach,
            Delivery.status.in_((*_HOLDING, DeliveryStatus.RETRY)),
        )
        .group_by(Delivery.subscriber_id)
    )
    return {subscriber_id: last for subscriber_id, last in rows}


def _since(subscriber: Subscriber, previous: Mapping[int, date]) -> date | None:
    """The listing date an issue for ``subscriber`` follows on from: their previous
    issue's edition, or (none within reach) the day before they subscribed. None for
    a profile not stored (a test send): the nominal window."""
    last = previous.get(subscriber.id)
    if last is not None:
        return last
    joined = subscriber.confirmed_at or subscriber.created_at
    if joined is None:
        return None
    return joined.astimezone(UTC).date() - timedelta(days=1)


def _get_or_create_edition(session: Session, day: date) -> Edition:
    edition = session.scalars(select(Edition).where(Edition.date == day)).one_or_none()
    if edition is None:
        edition = Edition(date=day)
        session.add(edition)
        session.flush()
    return edition


def _already_sent(
    session: Session, subscriber_ids: list[int], paper_ids: list[int], edition_id: int
) -> set[tuple[int, int]]:
    """(subscriber, paper) pairs already in another issue of theirs."""
    wanted = set(subscriber_ids)
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
        pairs.update((s, p) for s, p in rows if s in wanted)
    return pairs


def candidate_papers(session: Session, day: date, *, earliest: date | None = None) -> list[Paper]:
    """Every paper an issue of the edition of ``day`` may pick: listed from ``earliest``
    (default: the start of the widest nominal window) up to ``day``."""
    if earliest is None:
        earliest = min(window(day, f)[0] for f in Frequency)
    return list(
        session.scalars(
            select(Paper)
            .where(Paper.listed_on >= earliest, Paper.listed_on <= day)
            .order_by(Paper.listed_on, Paper.external_id)
        )
    )


@dataclass(frozen=True)
class RankedIssue:
    """One subscriber's picks: (paper, score, matched terms), best first."""

    subscriber: Subscriber
    picks: list[tuple[Paper, float, list[str]]]


def rank_issues(
    session: Session,
    day: date,
    subscribers: list[Subscriber],
    papers: list[Paper],
    *,
    edition_id: int | None,
    options: PlanOptions,
    fitted: EditionModel | None = None,
    previous: Mapping[int, date] | None = None,
) -> tuple[list[RankedIssue], int]:
    """Rank ``papers`` for ``subscribers`` in memory, writing nothing.

    Returns the issues of subscribers with picks (in planning order) and how many
    subscribers had nothing new. ``fitted``: the model to rank with (default: the
    edition's, see ``model_for_edition``). ``edition_id``: deliveries of this edition
    do not count as already sent. ``previous``: each subscriber's previous issue (see
    ``previous_issues``, queried when not given); a subscriber's issue covers the
    papers listed since it (see ``window_start``).
    """
    if previous is None:
        previous = previous_issues(session, day)
    if fitted is None:
        fitted = _edition_model(session, day, papers, options)
    ratings = load_ratings(session, subscribers)
    # The dense half of the hybrid score (the semantic extra), or None: TF-IDF alone.
    dense = edition_inputs(
        session,
        subscribers,
        papers,
        ratings=ratings,
        today=day,
        weights=options.feedback,
        setting=options.semantic,
    )
    profiles = build_subscriber_profiles(
        session,
        fitted.model,
        subscribers,
        ratings=ratings,
        today=day,
        weights=options.feedback,
        text_cache=fitted.texts,
    )
    subscriber_ids = [s.id for s in subscribers]
    # Papers already in an issue of theirs, or already rated, are never offered again.
    excluded = _already_sent(
        session, subscriber_ids, [p.id for p in papers], -1 if edition_id is None else edition_id
    )
    excluded |= ratings.rated_pairs(subscriber_ids)
    ranking = _Ranking(day, subscribers, papers, profiles, fitted, excluded, dense, options)
    issues: list[RankedIssue] = []
    nothing_new = 0
    for start, rows in _window_groups(day, subscribers, previous).items():
        group_issues, group_nothing_new = ranking.group(start, rows)
        issues += group_issues
        nothing_new += group_nothing_new
    return issues, nothing_new


def _edition_model(
    session: Session, day: date, papers: list[Paper], options: PlanOptions
) -> EditionModel:
    """The edition's model (see ``model_for_edition``), over the widest window there is."""
    nominal = min(window(day, f)[0] for f in Frequency)
    return model_for_edition(
        session,
        papers,
        earliest=min([nominal, *(p.listed_on for p in papers)]),
        corpus_limit=options.corpus_limit,
        model_dir=options.model_dir,
        refit_growth=options.refit_growth,
    )


def _window_groups(
    day: date, subscribers: list[Subscriber], previous: Mapping[int, date]
) -> dict[date, list[int]]:
    """The subscribers' rows by the start of their issue's window. One ranking per
    window start: on a regular schedule that is one per frequency; catch-up issues
    after a downtime reach further back, up to the cap."""
    groups: dict[date, list[int]] = defaultdict(list)
    for row, subscriber in enumerate(subscribers):
        start = window_start(day, subscriber.frequency, _since(subscriber, previous))
        groups[start].append(row)
    return groups


@dataclass(frozen=True, eq=False)
class _Ranking:
    """What every window group of one ``rank_issues`` shares: rows of ``profiles`` (and
    of the dense inputs) are ``subscribers``, rows of the fitted vectors ``papers``."""

    day: date
    subscribers: list[Subscriber]
    papers: list[Paper]
    profiles: sparse.csr_matrix
    fitted: EditionModel
    # (subscriber id, paper id) pairs never to offer.
    excluded: set[tuple[int, int]]
    dense: DenseInputs | None
    options: PlanOptions

    def group(self, start: date, rows: list[int]) -> tuple[list[RankedIssue], int]:
        """The issues of the subscribers in ``rows``, over the papers listed from
        ``start`` to the edition's day, and how many of them had nothing new."""
        papers, subscribers = self.papers, self.subscribers
        columns = [i for i, p in enumerate(papers) if start <= p.listed_on <= self.day]
        if not columns:
            return [], len(rows)
        group_profiles = self.profiles[rows]
        group_papers = self.fitted.vectors[columns]
        dense = self.dense
        picks = _pick(
            group_profiles,
            group_papers,
            subscribers=[subscribers[r] for r in rows],
            exclude=_exclusion_matrix(
                self.excluded,
                [subscribers[r].id for r in rows],
                [papers[c].id for c in columns],
            ),
            options=self.options,
            dense=None if dense is None else (dense.profiles[rows], dense.papers[columns]),
        )
        reasons = explain(
            group_profiles, group_papers, picks, feature_names=self.fitted.model.feature_names
        )
        issues: list[RankedIssue] = []
        for i, row in enumerate(rows):
            chosen = picks.picks(i)
            if chosen:
                issues.append(
                    RankedIssue(
                        subscribers[row],
                        [
                            (papers[columns[column]], float(score), list(reasons[i][position]))
                            for position, (column, score) in enumerate(chosen)
                        ],
                    )
                )
        return issues, len(rows) - len(issues)


def plan_edition(
    session: Session,
    day: date,
    *,
    options: PlanOptions,
    only: Collection[int] | None = None,
    progress: ProgressHook | None = None,
) -> PlanSummary:
    """Write one ranked delivery per active, unsuppressed subscriber with new papers.

    ``only``: plan just these subscriber ids (the scheduler plans those whose send
    time is near); everyone else is left for a later run. ``progress`` counts the
    subscribers settled (planned, or with nothing new) out of those to plan.
    """
    summary = PlanSummary(edition=day)
    edition = _get_or_create_edition(session, day)
    planned_ids = set(
        session.scalars(select(Delivery.subscriber_id).where(Delivery.edition_id == edition.id))
    )
    summary.already_planned = len(planned_ids)
    suppressed = select(Suppression.email)
    wanted = None if only is None else set(only)
    subscribers = [
        s
        for s in session.scalars(
            select(Subscriber)
            .where(
                Subscriber.status == SubscriberStatus.ACTIVE,
                Subscriber.paused_at.is_(None),  # paused from the preferences page
                Subscriber.email.not_in(suppressed),
            )
            .options(selectinload(Subscriber.interests))
            .order_by(Subscriber.id)
        )
        if s.id not in planned_ids and (wanted is None or s.id in wanted)
    ]
    previous = previous_issues(session, day)
    earliest = min(
        (window_start(day, s.frequency, _since(s, previous)) for s in subscribers), default=day
    )
    papers = candidate_papers(
        session, day, earliest=min(earliest, window(day, Frequency.WEEKLY)[0])
    )
    summary.candidates = len(papers)
    if progress is not None:
        progress(0, len(subscribers))
    if not subscribers or not papers:
        summary.nothing_new = len(subscribers)
        if progress is not None:
            progress(len(subscribers), len(subscribers))
        return summary

    issues, summary.nothing_new = rank_issues(
        session,
        day,
        subscribers,
        papers,
        edition_id=edition.id,
        options=options,
        previous=previous,
    )
    for issue in issues:
        delivery = Delivery(edition_id=edition.id, subscriber_id=issue.subscriber.id)
        delivery.items = [
            DeliveryItem(rank=position, paper_id=paper.id, score=round(score, 6), terms=terms)
            for position, (paper, score, terms) in enumerate(issue.picks)
        ]
        session.add(delivery)
        summary.planned += 1
        top_paper, top_score, _ = issue.picks[0]
        summary.top_picks.append((issue.subscriber.email, top_paper.title, top_score))
        if progress is not None:
            progress(1, len(subscribers))
    if progress is not None and summary.nothing_new:
        progress(summary.nothing_new, len(subscribers))
    session.flush()
    return summary


def _exclusion_matrix(
    pairs: set[tuple[int, int]], subscriber_ids: list[int], paper_ids: list[int]
) -> sparse.csr_matrix:
    row_of = {s: i for i, s in enumerate(subscriber_ids)}
    col_of = {p: j for j, p in enumerate(paper_ids)}
    hits = [(row_of[s], col_of[p]) for s, p in pairs if s in row_of and p in col_of]
    return sparse.csr_matrix(
        (np.ones(len(hits), dtype=np.int8), ([h[0] for h in hits], [h[1] for h in hits])),
        shape=(len(subscriber_ids), len(paper_ids)),
    )


def _pick(
    profiles: sparse.csr_matrix,
    papers: sparse.csr_matrix,
    *,
    subscribers: list[Subscriber],
    exclude: sparse.csr_matrix,
    options: PlanOptions,
    dense: tuple[np.ndarray, np.ndarray] | None = None,
) -> RankResult:
    """Each subscriber's picks: top-k above the minimum score, diversified by MMR.

    A subscriber who chose "always send" gets the best papers there are even when
    none reaches the minimum score; everyone else then gets nothing. The minimum is
    ``options.min_score_semantic`` when the hybrid ranks (``dense`` given), else
    ``options.min_score``.
    """
    limits = np.array([s.max_papers or options.max_papers for s in subscribers])
    k = int(limits.max())
    always = np.array([s.always_send for s in subscribers])
    width = k * _MMR_POOL if options.diversity < 1.0 else k
    if dense is None:
        result = rank(profiles, papers, k=width, exclude=exclude, min_score=0.0)
        min_score = options.min_score
    else:
        result = rank_hybrid(
            profiles, papers, *dense, k=width, weights=options.hybrid, exclude=exclude
        )
        min_score = options.min_score_semantic
    # Below the minimum score a pick is dropped, unless the row would be left
    # empty and its subscriber asked to always get an issue.
    weak = (result.scores <= min_score) & (result.indices >= 0)
    keep_weak = always & ~((result.scores > min_score) & (result.indices >= 0)).any(axis=1)
    drop = weak & ~keep_weak[:, None]
    indices = np.where(drop, -1, result.indices)
    scores = np.where(drop, np.float32(0.0), result.scores)
    # Dropped picks are always the tail of a row (scores are sorted), so rows stay packed.
    result = RankResult(indices=indices, scores=scores)
    if options.diversity < 1.0:
        result = diversify(result, papers, k=k, trade_off=options.diversity)
    # Each subscriber's own limit, at most k.
    positions = np.arange(result.indices.shape[1])
    over = positions[None, :] >= limits[:, None]
    return RankResult(
        indices=np.where(over, -1, result.indices),
        scores=np.where(over, np.float32(0.0), result.scores),
    )
