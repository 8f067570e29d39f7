"""The topics catalogue page: every topic, who follows it, how much arrives for it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from newsletter.models import utcnow
from newsletter.papers.catalogue import CatalogueTopic
from newsletter.web.admin import stats
from newsletter.web.admin.auth import CurrentOperator
from newsletter.web.admin.page import render
from newsletter.web.guards import State

router = APIRouter(prefix="/admin")

RECENT = timedelta(days=7)
# An arXiv category code ("cs.CL", "stat.ML", "hep-th"); other ids are the operator's own
# cross-cutting topics, matched by their text only.
ARXIV_CODE = re.compile(
    r"[a-z][a-z-]*\.[A-Za-z][A-Za-z-]*"
    r"|astro-ph|cond-mat|gr-qc|hep-(?:ex|lat|ph|th)|math-ph|nlin|nucl-(?:ex|th)|quant-ph"
)


@dataclass(frozen=True)
class TopicRow:
    code: str
    name: str
    description: str
    keywords: tuple[str, ...]
    category: str | None
    followers: int
    papers: int


SORTS: dict[str, Callable[[TopicRow], tuple[str | int, ...]]] = {
    "code": lambda row: (row.code.casefold(),),
    "name": lambda row: (row.name.casefold(), row.code),
    "followers": lambda row: (-row.followers, row.code.casefold()),
    "papers": lambda row: (-row.papers, row.code.casefold()),
}


def arxiv_category(topic: CatalogueTopic) -> str | None:
    """The arXiv category a topic stands for (its id), if its id is one."""
    return topic.id if ARXIV_CODE.fullmatch(topic.id) else None


@router.get("/topics")
def topics_page(
    request: Request,
    state: State,
    operator: CurrentOperator,
    sort: Annotated[str, Query(max_length=20)] = "code",
) -> Response:
    order = sort if sort in SORTS else "code"
    categories = {
        topic.id: code for topic in state.catalogue.values() if (code := arxiv_category(topic))
    }
    with state.sessions() as session:
        followers = stats.topic_followers(session)
        papers = stats.recent_papers_per_category(
            session, set(categories.values()), since=utcnow() - RECENT
        )
    rows = [
        TopicRow(
            code=topic.id,
            name=topic.name,
            description=topic.description,
            keywords=topic.keywords,
            category=categories.get(topic.id),
            followers=followers.get(topic.id, 0),
            papers=papers.get(categories.get(topic.id, ""), 0),
        )
        for topic in state.catalogue.values()
    ]
    rows.sort(key=SORTS[order])
    return render(
        request,
        state,
        "topics.html",
        operator,
        {
            "rows": rows,
            "sort": order,
            "followed": sum(1 for row in rows if row.followers),
            "days": RECENT.days,
        },
    )
