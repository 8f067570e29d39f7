"""The topic catalogue: read from TOML, mirrored into the ``topics`` table."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.errors import ConfigError, UnknownTopic
from newsletter.models import Topic
from newsletter.resources import resource_path

OTHER_FIELD = "Other topics"
ARCHIVES = {
    "cs": "Computer science",
    "eess": "Electrical engineering and systems science",
    "math": "Mathematics",
    "physics": "Physics",
    "q-bio": "Quantitative biology",
    "q-fin": "Quantitative finance",
    "stat": "Statistics",
    "econ": "Economics",
}


@dataclass(frozen=True)
class CatalogueTopic:
    id: str
    name: str
    description: str
    keywords: tuple[str, ...]
    # The group the sign-up and preferences pages list it under (``field`` in the TOML).
    field: str = ""

    @property
    def group(self) -> str:
        """Its field, or its arXiv archive's name ("cs" → Computer science) without one."""
        if self.field:
            return self.field
        archive = self.id.split(".", 1)[0] if "." in self.id else ""
        return ARCHIVES.get(archive, OTHER_FIELD)

    @property
    def interest_text(self) -> str:
        """What the recommender matches papers against for this topic."""
        return " ".join([self.name, self.description, *self.keywords])


def default_topics_file() -> Path:
    return resource_path("config") / "topics.toml"


def load_catalogue(path: Path | None = None) -> dict[str, CatalogueTopic]:
    """Read and validate a topics TOML file (``[[topics]]`` tables)."""
    path = path or default_topics_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read topic catalogue {path}: {exc}") from None
    topics: dict[str, CatalogueTopic] = {}
    for number, raw in enumerate(data.get("topics", []), start=1):
        where = f"{path}: topic #{number}"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a [[topics]] table")
        topic_id, name, description = raw.get("id"), raw.get("name"), raw.get("description")
        keywords = raw.get("keywords", [])
        field = raw.get("field", "")
        if not (isinstance(topic_id, str) and topic_id.strip()):
            raise ConfigError(f"{where}: 'id' must be a non-empty string")
        if not (isinstance(name, str) and name.strip()):
            raise ConfigError(f"{where} ({topic_id}): 'name' must be a non-empty string")
        if not (isinstance(description, str) and description.strip()):
            raise ConfigError(f"{where} ({topic_id}): 'description' must be a non-empty string")
        if not (isinstance(keywords, list) and all(isinstance(k, str) for k in keywords)):
            raise ConfigError(f"{where} ({topic_id}): 'keywords' must be a list of strings")
        if not isinstance(field, str):
            raise ConfigError(f"{where} ({topic_id}): 'field' must be a string")
        if topic_id in topics:
            raise ConfigError(f"{where}: duplicate topic id {topic_id!r}")
        topics[topic_id] = CatalogueTopic(
            id=topic_id.strip(),
            name=name.strip(),
            description=description.strip(),
            keywords=tuple(k.strip() for k in keywords if k.strip()),
            field=field.strip(),
        )
    if not topics:
        raise ConfigError(f"topic catalogue {path} defines no topics")
    return topics


def topic_groups(
    catalogue: dict[str, CatalogueTopic],
) -> list[tuple[str, list[CatalogueTopic]]]:
    """The topics by field, for a picker: fields in the catalogue's order (the first
    topic of each decides), topics by name within a field, "Other topics" last."""
    groups: dict[str, list[CatalogueTopic]] = {}
    for topic in catalogue.values():
        groups.setdefault(topic.group, []).append(topic)
    order = sorted(groups, key=lambda name: name == OTHER_FIELD)  # stable: keeps the rest
    return [(name, sorted(groups[name], key=lambda t: t.name.casefold())) for name in order]


def sync_topics(session: Session, catalogue: dict[str, CatalogueTopic]) -> None:
    """Make the ``topics`` table match the catalogue (rows are kept: interests use them)."""
    existing = {t.id: t for t in session.scalars(select(Topic))}
    for item in catalogue.values():
        row = existing.get(item.id)
        if row is None:
            session.add(Topic(id=item.id, name=item.name, description=item.interest_text))
        else:
            row.name = item.name
            row.description = item.interest_text


def resolve_topic(catalogue: dict[str, CatalogueTopic], topic_id: str) -> CatalogueTopic:
    """The catalogue entry for ``topic_id`` (case-insensitive), or a clear error."""
    if topic_id in catalogue:
        return catalogue[topic_id]
    folded = {key.casefold(): value for key, value in catalogue.items()}
    if topic_id.casefold() in folded:
        return folded[topic_id.casefold()]
    known = ", ".join(sorted(catalogue))
    raise UnknownTopic(f"unknown topic {topic_id!r}; known topics: {known}")
