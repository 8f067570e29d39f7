"""What a planner is told (``PlanOptions``) and what it reports (``PlanSummary``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from newsletter.settings import Settings
from recommender import FeedbackWeights
from recommender.hybrid import HybridWeights

# A summary keeps this many (email, title, score) examples of what was planned: enough
# for the demo and a glance at --json, not a list as long as the subscriber base.
TOP_PICKS_KEPT = 100


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
    # The first TOP_PICKS_KEPT issues planned: (email, top paper's title, its score).
    top_picks: list[tuple[str, str, float]] = field(default_factory=list)
    # Batches of subscribers another planner still held when this one ran out of work.
    held_elsewhere: int = 0
    # A run for some subscribers (``only``): those of them this planner looked at and
    # planned nothing for (nothing new). Who sat in a range another planner held is not
    # here: nobody looked at them yet.
    passed_over: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        said = (
            f"edition {self.edition}: {self.planned} deliveries planned, "
            f"{self.already_planned} already planned, {self.nothing_new} subscribers with "
            f"nothing new, {self.candidates} candidate papers"
        )
        if self.held_elsewhere:
            said += (
                f"; {self.held_elsewhere} batches still held by another planner (if none is "
                "running, one died: run plan again in 2 minutes, when its lease is out)"
            )
        return said

    def add(self, other: PlanSummary) -> None:
        """Count a batch's (or another worker's) results in."""
        self.planned += other.planned
        self.nothing_new += other.nothing_new
        self.candidates = max(self.candidates, other.candidates)
        self.passed_over += other.passed_over
        room = TOP_PICKS_KEPT - len(self.top_picks)
        if room > 0:
            self.top_picks += other.top_picks[:room]
