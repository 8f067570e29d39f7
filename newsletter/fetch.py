"""Fetch papers from a configured source and upsert them: one transaction per run.

Everything is read first (all pages, with the source's courtesy delays and retries),
then upserted in one transaction, and only after that commits is the source's state
(e.g. the OAI-PMH from-date) advanced. A failure anywhere (network, a broken page, a
looping server, the database) commits nothing and leaves the state where it was; the
next run simply starts from the same point again (upserts are idempotent).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

from newsletter.db import SessionFactory
from newsletter.ingest import IngestSummary, upsert_papers
from newsletter.settings import Settings
from newsletter.sources.http import FetchError
from newsletter.sources.registry import make_source

DEFAULT_STATE_FILE = Path("newsletter-sources.json")


class StateStore(Protocol):
    """Where each source's state (a short string, e.g. a from-date) lives between runs."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...


class StateFile:
    """Per-source state (a short string each) kept in a small JSON file, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FetchError(f"cannot read the source state file {self.path}: {exc}") from None
        if not isinstance(data, dict):
            raise FetchError(f"the source state file {self.path} is not a JSON object")
        return {str(k): str(v) for k, v in data.items()}

    def get(self, name: str) -> str | None:
        return self._load().get(name)

    def set(self, name: str, value: str) -> None:
        data = self._load()
        data[name] = value
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".sources-", dir=self.path.parent)
        except OSError as exc:
            raise FetchError(f"cannot write the source state file {self.path}: {exc}") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise FetchError(f"cannot write the source state file {self.path}: {exc}") from None


def state_file(settings: Settings) -> StateFile:
    return StateFile(settings.source_state_file or Path(DEFAULT_STATE_FILE))


@dataclass
class FetchSummary(IngestSummary):
    """An ``IngestSummary`` plus what the source did."""

    source: str = ""
    fetched: int = 0
    requests: int = 0
    state: str | None = None

    def __str__(self) -> str:
        return f"{self.source}: {self.fetched} fetched, {super().__str__()}"


def fetch_source(
    session_factory: SessionFactory,
    settings: Settings,
    name: str,
    *,
    since: date | None = None,
    today: date | None = None,
    state: StateStore | None = None,
) -> FetchSummary:
    """Fetch everything new from source ``name`` and upsert it in one transaction.

    Raises ``ConfigError`` for a source that is not configured, ``FetchError`` when the
    source cannot be read; in both cases nothing is written. ``today`` (default: the UTC
    date) ends the source's window; ``state`` replaces the settings' state file.
    """
    today = today or datetime.now(UTC).date()
    store: StateStore = state or state_file(settings)
    previous = store.get(name)
    source = make_source(name, settings)
    try:
        result = source.fetch(since=since, state=previous, today=today)
    finally:
        source.close()
    with session_factory.begin() as session:
        ingest = upsert_papers(session, result.records)
    summary = FetchSummary(
        new=ingest.new,
        updated=ingest.updated,
        unchanged=ingest.unchanged,
        problems=[*ingest.problems, *result.problems],
        source=name,
        fetched=len(result.records),
        requests=result.requests,
        state=result.state,
    )
    if result.state is not None:
        store.set(name, result.state)
    return summary
