"""The service's long-lived parts, built once at the edge from one ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from newsletter.db import SessionFactory, make_engine, make_session_factory
from newsletter.mail.render import Renderer
from newsletter.migrations import require_current
from newsletter.papers.catalogue import CatalogueTopic, load_catalogue, sync_topics
from newsletter.papers.ingest import IngestSummary, ingest_file
from newsletter.progress import ProgressHook
from newsletter.settings import Settings

if TYPE_CHECKING:
    from newsletter.delivery.outcomes import DeliverySummary
    from newsletter.planning.options import PlanSummary


@dataclass
class Service:
    """Settings, database and catalogue, with the operations the CLI and demo share."""

    settings: Settings
    engine: Engine
    sessions: SessionFactory
    renderer: Renderer = field(default_factory=Renderer)
    _catalogue: dict[str, CatalogueTopic] | None = None

    @classmethod
    def open(cls, settings: Settings, *, check_schema: bool = True) -> Service:
        """Connect (and, unless told not to, insist on a migrated schema)."""
        engine = make_engine(settings.database_url)
        if check_schema:
            try:
                require_current(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            renderer=Renderer(settings.templates_dir),
        )

    def close(self) -> None:
        self.engine.dispose()

    @property
    def catalogue(self) -> dict[str, CatalogueTopic]:
        if self._catalogue is None:
            self._catalogue = load_catalogue(self.settings.topics_file)
        return self._catalogue

    @property
    def semantic(self) -> bool:
        """Whether papers are embedded at ingest and ranked by the hybrid (the semantic extra)."""
        from newsletter.papers.embeddings import semantic_enabled

        return semantic_enabled(self.settings.semantic)

    def sync_topics(self) -> None:
        """Mirror the catalogue into the database (interests refer to topic rows)."""
        with self.sessions.begin() as session:
            sync_topics(session, self.catalogue)

    def ingest(
        self,
        path: Path,
        *,
        today: date,
        progress: ProgressHook | None = None,
        embed_progress: ProgressHook | None = None,
    ) -> IngestSummary:
        """Ingest one file in one transaction (with the papers' embeddings when semantic
        ranking is on; ``embed_progress`` counts those)."""
        with self.sessions.begin() as session:
            return ingest_file(
                session,
                path,
                today=today,
                progress=progress,
                embed=self.semantic,
                embed_progress=embed_progress,
            )

    def plan(
        self, day: date, *, workers: int = 1, progress: ProgressHook | None = None
    ) -> PlanSummary:
        """Plan the edition of ``day``, one committed batch at a time, with ``workers``
        processes (PostgreSQL; SQLite plans in this one)."""
        # Imported here, as in send(): scikit-learn and the SMTP stack take about a
        # second to import, which every other command would pay at start-up.
        from newsletter.planning.options import PlanOptions
        from newsletter.planning.workers import plan_with_workers

        options = PlanOptions.from_settings(self.settings)
        self.sync_topics()
        return plan_with_workers(
            self.settings, self.sessions, day, options=options, workers=workers, progress=progress
        )

    def refit(self, *, progress: ProgressHook | None = None) -> str:
        """Fit the model on the newest papers now and store it; return its version."""
        from newsletter.errors import ConfigError
        from newsletter.planning.corpus import refit

        if self.settings.model_dir is None:
            raise ConfigError(
                "invalid setting model_dir (NEWSLETTER_MODEL_DIR): not set, so there is no "
                "stored model to refit (every edition fits its own)"
            )
        with self.sessions() as session:
            stored = refit(
                session,
                self.settings.model_dir,
                corpus_limit=self.settings.corpus_limit,
                progress=progress,
            )
        return f"model {stored.version}: {stored.n_papers} papers, {stored.model.n_features} terms"

    def deliver(
        self,
        day: date | None,
        *,
        workers: int | None = None,
        concurrency: int | None = None,
        wait: bool = False,
        progress: ProgressHook | None = None,
    ) -> DeliverySummary:
        """Run delivery workers over the due deliveries (of one edition, or all)."""
        from newsletter.delivery.run import deliver

        return deliver(
            self.sessions,
            settings=self.settings,
            edition=day,
            workers=workers,
            concurrency=concurrency,
            wait=wait,
            renderer=self.renderer,
            progress=progress,
        )

    def send(self, day: date, *, progress: ProgressHook | None = None) -> DeliverySummary:
        """Send the due deliveries of the edition of ``day`` in this process."""
        return self.deliver(day, workers=1, progress=progress)
