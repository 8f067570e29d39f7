"""Rank one batch of subscribers' issues against an edition's candidates, in memory.

What every batch of an edition shares (the candidate papers, the fitted model, their
dense vectors) is built once, as an ``EditionContext``; ``rank_issues`` then ranks a
batch of subscribers (plain rows or stored ``Subscriber`` objects alike) and writes
nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
from scipy import sparse
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.models import Delivery, DeliveryItem, Edition, Frequency, Paper
from newsletter.planning.corpus import EditionModel, model_for_edition
from newsletter.planning.dense_inputs import DenseInputs, DensePapers, dense_papers, dense_profiles
from newsletter.planning.follows import FollowMatch, followed_matches, merge_followed
from newsletter.planning.options import PlanOptions
from newsletter.planning.profile_vectors import build_subscriber_profiles, load_ratings
from newsletter.planning.readers import Reader
from newsletter.planning.windows import (
    HOLDING,
    earliest_reach,
    previous_issues,
    since,
    window,
    window_start,
)
from recommender import RankResult, diversify, explain, rank
from recommender.evidence import pick_evidence
from recommender.hybrid import rank_hybrid

# MMR chooses among this many times k candidates per subscriber.
_MMR_POOL = 3


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


def edition_model(
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


@dataclass(frozen=True, eq=False)
class EditionContext:
    """What every batch of one edition ranks against, built once per edition (per
    process): the candidates (every paper any issue of it can reach), their vectors in
    the fitted model, and their dense vectors when the hybrid ranks."""

    day: date
    papers: list[Paper]
    fitted: EditionModel
    dense: DensePapers | None
    options: PlanOptions


def edition_context(session: Session, day: date, options: PlanOptions) -> EditionContext | None:
    """The edition's context, or None when no paper is listed in its reach."""
    papers = candidate_papers(session, day, earliest=earliest_reach(day))
    if not papers:
        return None
    return EditionContext(
        day=day,
        papers=papers,
        fitted=edition_model(session, day, papers, options),
        dense=dense_papers(session, papers, setting=options.semantic),
        options=options,
    )


@dataclass(frozen=True)
class RankedIssue:
    """One subscriber's picks: (paper, score, matched terms), best first."""

    subscriber: Reader
    picks: list[tuple[Paper, float, list[str]]]


@dataclass(frozen=True)
class RankedBatch:
    """A batch's issues (subscribers with picks, in planning order), how many of its
    subscribers had nothing new, and the earliest listing day any of them reached."""

    issues: list[RankedIssue]
    nothing_new: int
    earliest: date | None


def rank_issues(
    session: Session,
    day: date,
    subscribers: Sequence[Reader],
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
    context = EditionContext(
        day=day,
        papers=papers,
        fitted=fitted if fitted is not None else edition_model(session, day, papers, options),
        dense=dense_papers(session, papers, setting=options.semantic),
        options=options,
    )
    if previous is None:
        previous = previous_issues(session, day)
    ranked = rank_batch(session, context, subscribers, edition_id=edition_id, previous=previous)
    return ranked.issues, ranked.nothing_new


def rank_batch(
    session: Session,
    context: EditionContext,
    subscribers: Sequence[Reader],
    *,
    edition_id: int | None,
    previous: Mapping[int, date],
) -> RankedBatch:
    """Rank one batch of subscribers against the edition's candidates (see
    ``rank_issues``); ``previous`` must hold the batch's previous issues."""
    day, options = context.day, context.options
    groups = _window_groups(day, subscribers, previous)
    earliest = min(groups, default=None)
    if earliest is None:
        return RankedBatch([], 0, None)
    ratings = load_ratings(session, subscribers)
    dense = (
        None
        if context.dense is None
        else dense_profiles(
            session,
            subscribers,
            context.dense,
            ratings=ratings,
            today=day,
            weights=options.feedback,
        )
    )
    profiles = build_subscriber_profiles(
        session,
        context.fitted.model,
        subscribers,
        ratings=ratings,
        today=day,
        weights=options.feedback,
        text_cache=context.fitted.texts,
    )
    subscriber_ids = [s.id for s in subscribers]
    # Papers already in an issue of theirs, or already rated, are never offered again.
    excluded = already_sent(
        session,
        subscriber_ids,
        earliest=earliest,
        day=day,
        edition_id=-1 if edition_id is None else edition_id,
    )
    excluded |= ratings.rated_pairs(subscriber_ids)
    # Papers by authors they follow are always in the issue (issue 16).
    follows = followed_matches(session, subscriber_ids, context.papers)
    ranking = _Ranking(context, subscribers, profiles, excluded, dense, follows)
    issues: list[RankedIssue] = []
    nothing_new = 0
    for start, rows in groups.items():
        group_issues, group_nothing_new = ranking.group(start, rows)
        issues += group_issues
        nothing_new += group_nothing_new
    return RankedBatch(issues, nothing_new, earliest)


def already_sent(
    session: Session, subscriber_ids: list[int], *, earliest: date, day: date, edition_id: int
) -> set[tuple[int, int]]:
    """(subscriber, paper) pairs among ``subscriber_ids`` and the papers listed from
    ``earliest`` to ``day`` that are already in another issue of theirs.

    Only the editions from ``earliest`` on can hold such a paper (a paper's listing
    date is its first one, never later than any edition it was in), so a batch reads
    the few issues its subscribers got within the window, not their whole history.
    """
    ids = [i for i in subscriber_ids if i is not None]
    if not ids:
        return set()
    wanted = set(ids)
    rows = session.execute(
        select(Delivery.subscriber_id, DeliveryItem.paper_id)
        .join(DeliveryItem, DeliveryItem.delivery_id == Delivery.id)
        .join(Edition, Edition.id == Delivery.edition_id)
        .join(Paper, Paper.id == DeliveryItem.paper_id)
        .where(
            Delivery.subscriber_id.between(min(ids), max(ids)),
            Delivery.status.in_(HOLDING),
            Delivery.edition_id != edition_id,
            Edition.date >= earliest,
            Paper.listed_on >= earliest,
            Paper.listed_on <= day,
        )
    )
    return {(s, p) for s, p in rows if s in wanted}


def _window_groups(
    day: date, subscribers: Sequence[Reader], previous: Mapping[int, date]
) -> dict[date, list[int]]:
    """The subscribers' rows by the start of their issue's window. One ranking per
    window start: on a regular schedule that is one per frequency; catch-up issues
    after a downtime reach further back, up to the cap."""
    groups: dict[date, list[int]] = defaultdict(list)
    for row, subscriber in enumerate(subscribers):
        start = window_start(day, subscriber.frequency, since(subscriber, previous))
        groups[start].append(row)
    return groups


@dataclass(frozen=True, eq=False)
class _Ranking:
    """What every window group of one batch shares: rows of ``profiles`` (and of the
    dense inputs) are ``subscribers``, rows of the fitted vectors the candidates."""

    context: EditionContext
    subscribers: Sequence[Reader]
    profiles: sparse.csr_matrix
    # (subscriber id, paper id) pairs never to offer.
    excluded: set[tuple[int, int]]
    dense: DenseInputs | None
    # Subscriber id -> candidates by an author they follow (planning/follows.py).
    follows: Mapping[int, list[FollowMatch]]

    def group(self, start: date, rows: list[int]) -> tuple[list[RankedIssue], int]:
        """The issues of the subscribers in ``rows``, over the papers listed from
        ``start`` to the edition's day, and how many of them had nothing new."""
        context, subscribers = self.context, self.subscribers
        papers = context.papers
        columns = [i for i, p in enumerate(papers) if start <= p.listed_on <= context.day]
        if not columns:
            return [], len(rows)
        group_profiles = self.profiles[rows]
        group_papers = context.fitted.vectors[columns]
        dense = self.dense
        group = [subscribers[r] for r in rows]
        picks = pick(
            group_profiles,
            group_papers,
            subscribers=group,
            exclude=_exclusion_matrix(
                self.excluded, [s.id for s in group], [papers[c].id for c in columns]
            ),
            options=context.options,
            dense=None if dense is None else (dense.profiles[rows], dense.papers[columns]),
            raw=None if dense is None else (dense.raw_profiles[rows], dense.raw_papers[columns]),
        )
        reasons = explain(
            group_profiles, group_papers, picks, feature_names=context.fitted.model.feature_names
        )
        # Plain lists: indexing numpy rows one subscriber at a time costs more than
        # the ranking itself at a few thousand subscribers per batch.
        chosen_papers = [papers[c] for c in columns]
        indices, scores = picks.indices.tolist(), picks.scores.tolist()
        issues: list[RankedIssue] = []
        for subscriber, row_indices, row_scores, row_reasons in zip(
            group, indices, scores, reasons, strict=True
        ):
            # explain() gave the row's valid picks their terms, in slot order.
            why = iter(row_reasons)
            row_picks = [
                (chosen_papers[column], score, list(next(why)))
                for column, score in zip(row_indices, row_scores, strict=True)
                if column >= 0
            ]
            followed = self._followed(subscriber.id, chosen_papers)
            if followed:
                limit = subscriber.max_papers or context.options.max_papers
                row_picks = merge_followed(row_picks, followed, limit=limit)
            if row_picks:
                issues.append(RankedIssue(subscriber, row_picks))
        return issues, len(rows) - len(issues)

    def _followed(
        self, subscriber_id: int, window: list[Paper]
    ) -> list[tuple[Paper, float, list[str]]]:
        """Picks for the papers of ``window`` by authors the subscriber follows, except
        those already sent to them or rated."""
        matches = self.follows.get(subscriber_id)
        if not matches:
            return []
        in_window = {p.id: p for p in window}
        return [
            (in_window[m.paper_id], 0.0, [])
            for m in matches
            if m.paper_id in in_window and (subscriber_id, m.paper_id) not in self.excluded
        ]


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


def pick(
    profiles: sparse.csr_matrix,
    papers: sparse.csr_matrix,
    *,
    subscribers: Sequence[Reader],
    exclude: sparse.csr_matrix,
    options: PlanOptions,
    dense: tuple[np.ndarray, np.ndarray] | None = None,
    raw: tuple[np.ndarray, np.ndarray] | None = None,
) -> RankResult:
    """Each subscriber's picks: top-k above the minimum score, diversified by MMR.

    A subscriber who chose "always send" gets the best papers there are even when
    none reaches the minimum score; everyone else then gets nothing. The minimum is
    ``options.min_score_semantic`` when the hybrid ranks (``dense`` given), else
    ``options.min_score``. The hybrid's is held against each pick's evidence when the
    raw vectors are given (``raw``: profiles and papers; ``recommender.evidence``),
    since its own scores are whitened and penalised; the picks keep their order.
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
    evidence = result.scores
    if dense is not None and raw is not None:
        evidence = pick_evidence(profiles, papers, *raw, result.indices)
    # Below the minimum score a pick is dropped, unless the row would be left
    # empty and its subscriber asked to always get an issue.
    weak = (evidence <= min_score) & (result.indices >= 0)
    keep_weak = always & ~((evidence > min_score) & (result.indices >= 0)).any(axis=1)
    drop = weak & ~keep_weak[:, None]
    indices = np.where(drop, -1, result.indices)
    scores = np.where(drop, np.float32(0.0), result.scores)
    # Rows stay packed: the kept picks first, in their order (a stable sort of the drop
    # flags; by scores alone the dropped ones would always be the tail, by evidence not).
    order = np.argsort(drop, axis=1, kind="stable")
    result = RankResult(
        indices=np.take_along_axis(indices, order, axis=1),
        scores=np.take_along_axis(scores, order, axis=1),
    )
    if options.diversity < 1.0:
        result = diversify(result, papers, k=k, trade_off=options.diversity)
    # Each subscriber's own limit, at most k.
    positions = np.arange(result.indices.shape[1])
    over = positions[None, :] >= limits[:, None]
    return RankResult(
        indices=np.where(over, -1, result.indices),
        scores=np.where(over, np.float32(0.0), result.scores),
    )
